//! [`UploadedFile`], the File object: type sniffing and image dimensions.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::UploadPath;

/// What kind of media a file holds, from its MIME type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// `image/*`
    Image,
    /// `video/*`
    Video,
    /// `audio/*`
    Audio,
    /// Anything else.
    Other,
}

impl FileKind {
    fn of(mime: &str) -> Self {
        match mime.split('/').next() {
            Some("image") => FileKind::Image,
            Some("video") => FileKind::Video,
            Some("audio") => FileKind::Audio,
            _ => FileKind::Other,
        }
    }
}

/// The File object: what the layer knows of a committed upload.
///
/// The layer puts it into the request extensions before it calls the inner
/// service, so an axum handler takes it as `Extension<UploadedFile>`. It
/// serializes to the wire contract's JSON; fields whose value is unknown are
/// left out.
///
/// ```json
/// {"id":"file_…","object":"source","kind":"image","type":"image/png",
///  "width":3000,"height":2000,"filesize":12345678,"folder":"nested/folders",
///  "filename":"image.png","url":"https://you.example/nested/folders/image.png",
///  "status":"ready","created":"2025-01-01T01:23:45Z","updated":"2025-01-01T01:23:45Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UploadedFile {
    /// `file_` and 24 hex digits; the same for every retry of one upload session.
    pub id: String,
    /// Always `"source"`.
    pub object: String,
    /// The media kind.
    pub kind: FileKind,
    /// The MIME type: sniffed from the first bytes, else from the extension,
    /// else `application/octet-stream`.
    #[serde(rename = "type")]
    pub mime_type: String,
    /// Image width in pixels, when the header tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u64>,
    /// Image height in pixels, when the header tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Size in bytes.
    pub filesize: u64,
    /// The folders of the path (`nested/folders`), empty at the top level.
    pub folder: String,
    /// The last segment of the path.
    pub filename: String,
    /// The unsigned public URL of the file.
    pub url: String,
    /// Always `"ready"` once committed.
    pub status: String,
    /// When the file was committed, RFC 3339 UTC.
    pub created: String,
    /// When the file was last written, RFC 3339 UTC.
    pub updated: String,
    /// Lowercase hex SHA-256 of the whole file, when it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl UploadedFile {
    /// Describes a file of `size` bytes at `path` from its first bytes `head`.
    pub(crate) fn describe(
        id: String,
        path: &UploadPath,
        size: u64,
        head: &[u8],
        public_base: &str,
        now: SystemTime,
    ) -> Self {
        let mime_type = sniff_type(head, path.filename());
        let kind = FileKind::of(&mime_type);
        let (width, height) = match kind {
            FileKind::Image => imagesize::blob_size(head)
                .map(|size| (Some(size.width as u64), Some(size.height as u64)))
                .unwrap_or((None, None)),
            _ => (None, None),
        };
        let time = rfc3339(now);
        UploadedFile {
            id,
            object: "source".to_owned(),
            kind,
            mime_type,
            width,
            height,
            filesize: size,
            folder: path.folder().to_owned(),
            filename: path.filename().to_owned(),
            url: public_url(public_base, path),
            status: "ready".to_owned(),
            created: time.clone(),
            updated: time,
            sha256: None,
        }
    }
}

/// The file's unsigned public URL.
pub(crate) fn public_url(public_base: &str, path: &UploadPath) -> String {
    format!("{public_base}/{}", path.encoded())
}

/// The MIME type from the first bytes, else the extension, else octet-stream.
pub(crate) fn sniff_type(head: &[u8], filename: &str) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    mime_guess::from_path(filename)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// RFC 3339 UTC with whole seconds, such as `2025-01-01T01:23:45Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let time = time.max(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// A 3x2 PNG header (signature + IHDR), enough to sniff and measure.
    const PNG_HEAD: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0,
        0, 3, 0, 0, 0, 2, 8, 6, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn describe(name: &str, head: &[u8]) -> UploadedFile {
        UploadedFile::describe(
            "file_0".into(),
            &UploadPath::new(name).unwrap(),
            head.len() as u64,
            head,
            "https://you.example",
            UNIX_EPOCH + Duration::from_secs(1_735_694_625),
        )
    }

    #[test]
    fn png_is_sniffed_and_measured() {
        let file = describe("nested/folders/image.bin", PNG_HEAD);
        assert_eq!(file.mime_type, "image/png");
        assert_eq!(file.kind, FileKind::Image);
        assert_eq!((file.width, file.height), (Some(3), Some(2)));
        assert_eq!(file.folder, "nested/folders");
        assert_eq!(file.filename, "image.bin");
        assert_eq!(file.url, "https://you.example/nested/folders/image.bin");
        assert_eq!(file.created, "2025-01-01T01:23:45Z");
    }

    #[test]
    fn gif_and_jpeg_dimensions() {
        let gif = b"GIF89a\x0a\x00\x14\x00\x00\x00\x00;";
        let file = describe("a.gif", gif);
        assert_eq!(
            (file.mime_type.as_str(), file.width, file.height),
            ("image/gif", Some(10), Some(20))
        );
        // SOI, then a baseline SOF0 frame of 16x8 pixels.
        let jpeg = [
            0xff, 0xd8, 0xff, 0xc0, 0, 11, 8, 0, 8, 0, 16, 1, 1, 0x11, 0, 0xff, 0xd9,
        ];
        let file = describe("a.jpg", &jpeg);
        assert_eq!(
            (file.mime_type.as_str(), file.width, file.height),
            ("image/jpeg", Some(16), Some(8))
        );
    }

    #[test]
    fn bytes_win_over_the_extension_and_the_extension_over_nothing() {
        assert_eq!(
            describe("archive.png", b"PK\x03\x04rest of a zip").mime_type,
            "application/zip"
        );
        let text = describe("notes.txt", b"hello");
        assert_eq!(
            (text.mime_type.as_str(), text.kind),
            ("text/plain", FileKind::Other)
        );
        assert_eq!(
            describe("blob", b"\x00\x01").mime_type,
            "application/octet-stream"
        );
    }

    #[test]
    fn unknown_fields_are_omitted() {
        let json = serde_json::to_value(describe("a.txt", b"hi")).unwrap();
        let object = json.as_object().unwrap();
        assert!(!object.contains_key("width") && !object.contains_key("sha256"));
        assert_eq!(object["object"], "source");
        assert_eq!(object["type"], "text/plain");
        assert_eq!(object["kind"], "other");
        assert_eq!(object["status"], "ready");
    }
}
