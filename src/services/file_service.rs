//! [`FileService`]: serves stored files to `get` URLs and answers committed uploads.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tower_service::Service;

use crate::envelope::{self, Meta};
use crate::error::storage_error;
use crate::file::public_url;
use crate::storage::{BoxStream, FileMeta, Storage, StorageError};
use crate::{Error, SignedUploadLayer, UploadPath, UploadedFile};

/// An inner service for [`SignedUploadLayer`] that makes a complete file service:
/// committed uploads are answered `201 Created` with the File object, and `GET`/
/// `HEAD` with a `get` URL stream the stored file.
///
/// Downloads carry `Content-Type` (from the file name), `Content-Length`,
/// `ETag`, `Last-Modified` and `Accept-Ranges`; a single `Range` is answered
/// `206` (or `416` outside the file), a matching `If-None-Match` `304`. Stored
/// files are served with `X-Content-Type-Options: nosniff` and
/// `Content-Security-Policy: sandbox`, so an uploaded HTML page cannot run
/// scripts on your origin.
///
/// # Example
///
/// ```
/// use tower_layer::Layer;
/// use tower_signed_upload::{services::FileService, storage::MemoryStorage, SignedUploadLayer, SigningKey};
///
/// let layer = SignedUploadLayer::new(SigningKey::new("secret")?, MemoryStorage::new());
/// let service = layer.layer(FileService::for_layer(&layer));
/// # drop(service);
/// # Ok::<(), tower_signed_upload::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct FileService {
    storage: Arc<dyn Storage>,
}

impl FileService {
    /// Serves files from `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        FileService { storage }
    }

    /// Serves files from the layer's storage.
    pub fn for_layer(layer: &SignedUploadLayer) -> Self {
        FileService::new(Arc::clone(layer.storage()))
    }
}

impl fmt::Debug for FileService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileService")
            .field("storage", &self.storage)
            .finish()
    }
}

impl<B> Service<Request<B>> for FileService {
    type Response = Response<DownloadBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<DownloadBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let storage = Arc::clone(&self.storage);
        let extensions = request.extensions();
        let file = extensions.get::<UploadedFile>().cloned();
        let path = extensions.get::<UploadPath>().cloned();
        let meta = Meta::of_request(&request);
        let method = request.method().clone();
        let headers = request.headers().clone();
        Box::pin(async move {
            let response = match (file, path) {
                (Some(file), _) => {
                    envelope::file(&meta, StatusCode::CREATED, &file).map(DownloadBody::full)
                }
                (None, Some(path)) if method == Method::GET || method == Method::HEAD => {
                    download(&*storage, &path, method == Method::HEAD, &headers, &meta).await
                }
                (None, Some(_)) => {
                    envelope::error(&meta, Error::MethodNotAllowed).map(DownloadBody::full)
                }
                (None, None) => envelope::error(&meta, Error::NotFound).map(DownloadBody::full),
            };
            Ok(response)
        })
    }
}

async fn download(
    storage: &dyn Storage,
    path: &UploadPath,
    head_only: bool,
    headers: &HeaderMap,
    meta: &Meta,
) -> Response<DownloadBody> {
    let meta = Meta {
        link: Some(public_url("", path)),
        ..meta.clone()
    };
    let fail = |error: Error| envelope::error(&meta, error).map(DownloadBody::full);
    let file = match storage.head(path).await {
        Ok(file) => file,
        Err(error) => return fail(storage_error(error)),
    };
    let etag = format!("\"{}\"", file.etag);
    let mut response = Response::new(DownloadBody::empty());
    describe(response.headers_mut(), path, &file, &etag);
    if if_none_match(headers, &etag) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().remove(header::CONTENT_TYPE);
        return response;
    }
    let range = match requested_range(headers, file.size) {
        Ok(range) => range,
        Err(()) => {
            let mut response = fail(Error::RangeNotSatisfiable);
            let value = HeaderValue::from_str(&format!("bytes */{}", file.size))
                .expect("digits are a valid header value");
            response.headers_mut().insert(header::CONTENT_RANGE, value);
            return response;
        }
    };
    let length = match &range {
        Some((first, last)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = HeaderValue::from_str(&format!("bytes {first}-{last}/{}", file.size))
                .expect("digits are a valid header value");
            response.headers_mut().insert(header::CONTENT_RANGE, value);
            last - first + 1
        }
        None => file.size,
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if head_only || length == 0 {
        return response;
    }
    match storage
        .read(path, range.map(|(first, last)| first..=last))
        .await
    {
        Ok(read) if read.meta.etag == file.etag => {
            *response.body_mut() = DownloadBody::stream(read.body, length);
            response
        }
        // Replaced between `head` and `read`: the client retries and sees the new file.
        Ok(_) => fail(Error::StorageUnavailable),
        Err(error) => fail(storage_error(error)),
    }
}

fn describe(headers: &mut HeaderMap, path: &UploadPath, file: &FileMeta, etag: &str) {
    let mime = mime_guess::from_path(path.filename())
        .first_raw()
        .unwrap_or("application/octet-stream");
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(file.modified)) {
        headers.insert(header::LAST_MODIFIED, value);
    }
}

/// Whether `If-None-Match` names the current entity tag (weak comparison).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value.to_str().is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
        })
    })
}

/// The one byte range asked for, inclusive. `Ok(None)` serves the whole file
/// (no `Range`, another unit, or several ranges); `Err` is `416`.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let Some(spec) = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or(())?;
    let number = |text: &str| -> Result<u64, ()> {
        crate::headers::number::number(text.as_bytes()).map_err(|_| ())
    };
    let (first, last) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let suffix = number(suffix)?;
            if suffix == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(suffix), size - 1)
        }
        (first, "") => (number(first)?, size.saturating_sub(1)),
        (first, last) => (number(first)?, number(last)?.min(size.saturating_sub(1))),
    };
    if first >= size || first > last {
        return Err(());
    }
    Ok(Some((first, last)))
}

/// The body of a [`FileService`] answer: a stored file streaming from storage,
/// or a JSON envelope.
pub struct DownloadBody {
    kind: DownloadKind,
}

enum DownloadKind {
    Full(Option<Bytes>),
    Stream {
        stream: BoxStream<'static, Result<Bytes, StorageError>>,
        length: u64,
    },
}

impl DownloadBody {
    fn empty() -> Self {
        DownloadBody {
            kind: DownloadKind::Full(None),
        }
    }

    fn full(data: Bytes) -> Self {
        DownloadBody {
            kind: DownloadKind::Full(Some(data)),
        }
    }

    fn stream(stream: BoxStream<'static, Result<Bytes, StorageError>>, length: u64) -> Self {
        DownloadBody {
            kind: DownloadKind::Stream { stream, length },
        }
    }
}

impl fmt::Debug for DownloadBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DownloadKind::Full(data) => f.debug_tuple("DownloadBody::Full").field(data).finish(),
            DownloadKind::Stream { length, .. } => f
                .debug_struct("DownloadBody::Stream")
                .field("remaining", length)
                .finish(),
        }
    }
}

impl Body for DownloadBody {
    type Data = Bytes;
    type Error = StorageError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StorageError>>> {
        match &mut self.get_mut().kind {
            DownloadKind::Full(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            DownloadKind::Stream { stream, length } => match stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    *length = length.saturating_sub(data.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            DownloadKind::Full(data) => data.is_none(),
            DownloadKind::Stream { length, .. } => *length == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            DownloadKind::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            DownloadKind::Stream { length, .. } => SizeHint::with_exact(*length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        requested_range(&headers, size)
    }

    #[test]
    fn single_ranges_are_served_and_others_refused() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-1000", 100), Ok(Some((0, 99))));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=5-4", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        assert_eq!(range("bytes=x-1", 100), Err(()));
        assert_eq!(range("bytes=0-0", 0), Err(()));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&headers, "\"b\""));
        assert!(!if_none_match(&headers, "\"c\""));
    }
}
