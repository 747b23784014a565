//! [`RespondCreated`], the default inner service.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_service::Service;

use crate::envelope::{self, Meta};
use crate::file::public_url;
use crate::EnvelopeBody;
use crate::{Error, UploadPath, UploadedFile};

/// The default inner service: answers a committed upload with
/// `201 Created` and the File object in the JSON envelope.
///
/// Requests without an [`UploadedFile`] (downloads) are answered
/// `404 not_found`: put a download service behind the layer to serve them.
///
/// # Example
///
/// ```
/// use tower_layer::Layer;
/// use tower_signed_upload::{services::RespondCreated, storage::MemoryStorage, SignedUploadLayer, SigningKey};
///
/// let service = SignedUploadLayer::new(SigningKey::new("secret")?, MemoryStorage::new()).layer(RespondCreated);
/// # drop(service);
/// # Ok::<(), tower_signed_upload::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RespondCreated;

impl<B> Service<Request<B>> for RespondCreated {
    type Response = Response<EnvelopeBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let file = request.extensions().get::<UploadedFile>();
        let mut meta = Meta::of_request(&request);
        if let (None, Some(path)) = (file, request.extensions().get::<UploadPath>()) {
            meta.link = Some(public_url("", path));
        }
        let response = match file {
            Some(file) => envelope::file(&meta, StatusCode::CREATED, file),
            None => envelope::error(&meta, Error::NotFound),
        };
        ready(Ok(response.map(EnvelopeBody::new)))
    }
}
