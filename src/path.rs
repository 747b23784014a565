//! [`UploadPath`]: a validated, percent-decoded file path.

use std::fmt;

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes escaped when a path is put into a URL: everything but the unreserved
/// characters of RFC 3986 (`A-Z a-z 0-9 - . _ ~`) and the `/` between segments.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A file path that is safe to hand to storage.
///
/// It is the request path without its leading `/`, percent-decoded, valid UTF-8,
/// with no empty, `.` or `..` segment, and no NUL, control character or backslash.
/// Decoded, it is at most [`MAX_LEN`](Self::MAX_LEN) bytes, each segment at most
/// [`MAX_SEGMENT_LEN`](Self::MAX_SEGMENT_LEN): a longer path is refused at the
/// first request (`400 path_invalid`), so no backend is asked to create what a
/// file system would refuse at commit. The layer puts the verified `UploadPath` of every request it passes on into the
/// request's extensions.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadPath(String);

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    Empty,
    Encoding,
    Segment,
    Character,
    TooLong,
}

impl UploadPath {
    /// The longest path accepted, in bytes once decoded: 1024 (a common
    /// `PATH_MAX`-style limit of object stores and file systems, under the
    /// root of the storage).
    pub const MAX_LEN: usize = 1024;

    /// The longest segment (folder or file name) accepted, in bytes once
    /// decoded: 255, the name limit of common file systems.
    pub const MAX_SEGMENT_LEN: usize = 255;

    /// Validates an already decoded path such as `nested/folders/image.png`.
    ///
    /// Returns `None` when the path breaks one of the rules above, its length
    /// limits included.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_signed_upload::UploadPath;
    ///
    /// let path = UploadPath::new("nested/folders/image.png").unwrap();
    /// assert_eq!(path.folder(), "nested/folders");
    /// assert_eq!(path.filename(), "image.png");
    /// assert!(UploadPath::new("a/../b").is_none());
    /// ```
    pub fn new(decoded: &str) -> Option<Self> {
        validate(decoded).ok()?;
        Some(UploadPath(decoded.to_owned()))
    }

    /// Decodes and validates a raw request path (with or without its leading `/`).
    pub(crate) fn from_request_path(raw: &str) -> Result<Self, PathError> {
        let raw = raw.strip_prefix('/').unwrap_or(raw);
        // A decoded byte takes at most three raw ones (`%XX`): a longer raw
        // path is too long decoded, and is not decoded at all.
        if raw.len() > 3 * Self::MAX_LEN {
            return Err(PathError::TooLong);
        }
        if !raw.as_bytes().contains(&b'%') {
            // Nothing to decode (the usual case): the raw path is the path.
            validate(raw)?;
            return Ok(UploadPath(raw.to_owned()));
        }
        if !escapes_are_well_formed(raw.as_bytes()) {
            return Err(PathError::Encoding);
        }
        let decoded = percent_decode(raw.as_bytes())
            .decode_utf8()
            .map_err(|_| PathError::Encoding)?;
        validate(&decoded)?;
        Ok(UploadPath(decoded.into_owned()))
    }

    /// The decoded path, without a leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folders before the file name, joined by `/`; empty at the top level.
    pub fn folder(&self) -> &str {
        self.0
            .rsplit_once('/')
            .map(|(folder, _)| folder)
            .unwrap_or("")
    }

    /// The last segment.
    pub fn filename(&self) -> &str {
        self.0
            .rsplit_once('/')
            .map(|(_, name)| name)
            .unwrap_or(&self.0)
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The path percent-encoded for a URL: every byte but `A-Z a-z 0-9 - . _ ~ /`
    /// is escaped. This is the form the signer signs.
    pub fn encoded(&self) -> String {
        utf8_percent_encode(&self.0, PATH_SEGMENT).to_string()
    }
}

/// Whether every `%` starts a two-hex-digit escape.
fn escapes_are_well_formed(raw: &[u8]) -> bool {
    raw.iter().enumerate().all(|(i, &byte)| {
        byte != b'%'
            || (raw.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && raw.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

fn validate(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.len() > UploadPath::MAX_LEN {
        return Err(PathError::TooLong);
    }
    // Byte-wise, eight at a time where it can: this runs on every request.
    let bytes = path.as_bytes();
    let mut rest = bytes;
    loop {
        let end = memchr::memchr(b'/', rest).unwrap_or(rest.len());
        if matches!(&rest[..end], b"" | b"." | b"..") {
            return Err(PathError::Segment);
        }
        if end > UploadPath::MAX_SEGMENT_LEN {
            return Err(PathError::TooLong);
        }
        if end == rest.len() {
            break;
        }
        rest = &rest[end + 1..];
    }
    // Anything but printable ASCII (a fold, not `any`, so it vectorizes) is looked at closer.
    let unusual = bytes.iter().fold(false, |acc, &b| {
        acc | !(0x20..0x7f).contains(&b) | (b == b'\\')
    });
    if unusual && path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(PathError::Character);
    }
    Ok(())
}

impl fmt::Debug for UploadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for UploadPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UploadPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_keeps_folders() {
        let path = UploadPath::from_request_path("/nested/my%20photos/%C3%A9t%C3%A9.png").unwrap();
        assert_eq!(path.as_str(), "nested/my photos/été.png");
        assert_eq!(path.folder(), "nested/my photos");
        assert_eq!(path.filename(), "été.png");
        assert_eq!(path.encoded(), "nested/my%20photos/%C3%A9t%C3%A9.png");
    }

    #[test]
    fn refuses_unsafe_paths() {
        for raw in [
            "/",
            "/a//b",
            "/a/",
            "/./a",
            "/a/..",
            "/../etc/passwd",
            "/%2e%2e/x",
            "/a/%2E%2e/b",
            "/a%2f..%2fb",
            "/a%00b",
            "/a%0ab",
            "/a%5cb",
            "/a\\b",
            "/%ff",
            "/a%2",
            "/.",
        ] {
            assert!(
                UploadPath::from_request_path(raw).is_err(),
                "{raw} was accepted"
            );
        }
    }

    #[test]
    fn accepts_dotted_names() {
        for raw in ["/.hidden", "/a/...", "/a.b/c..d", "/%E2%9C%93.txt"] {
            assert!(
                UploadPath::from_request_path(raw).is_ok(),
                "{raw} was refused"
            );
        }
    }

    #[test]
    fn top_level_file_has_empty_folder() {
        let path = UploadPath::new("image.png").unwrap();
        assert_eq!(path.folder(), "");
        assert_eq!(path.filename(), "image.png");
    }

    #[test]
    fn length_limits_count_decoded_bytes() {
        let longest_segment = "a".repeat(UploadPath::MAX_SEGMENT_LEN);
        assert!(UploadPath::new(&longest_segment).is_some());
        let over = "a".repeat(UploadPath::MAX_SEGMENT_LEN + 1);
        assert!(UploadPath::new(&over).is_none());
        assert_eq!(
            UploadPath::from_request_path(&format!("/ok/{over}/x")),
            Err(PathError::TooLong)
        );
        // 128 escaped `é` are 256 bytes decoded; 127 of them are 254.
        let escaped = |n: usize| "%C3%A9".repeat(n);
        assert!(UploadPath::from_request_path(&escaped(127)).is_ok());
        assert_eq!(
            UploadPath::from_request_path(&escaped(128)),
            Err(PathError::TooLong)
        );

        // Segments of 255, 255, 255, 254 and 1 bytes and four separators:
        // 1024 bytes; one byte more is refused.
        let a = &longest_segment;
        let b = "b".repeat(UploadPath::MAX_SEGMENT_LEN - 1);
        let longest = format!("{a}/{a}/{a}/{b}/c");
        assert_eq!(longest.len(), UploadPath::MAX_LEN);
        assert!(UploadPath::new(&longest).is_some());
        assert!(UploadPath::from_request_path(&longest).is_ok());
        assert!(UploadPath::new(&format!("{longest}d")).is_none());
        assert_eq!(
            UploadPath::from_request_path(&format!("/{longest}d")),
            Err(PathError::TooLong)
        );
        // A raw path too long to be short enough decoded is not decoded.
        let raw = format!("/{}", "%41".repeat(UploadPath::MAX_LEN + 1));
        assert_eq!(UploadPath::from_request_path(&raw), Err(PathError::TooLong));
    }
}
