//! The middleware: [`SignedUploadLayer`], the [`SignedUpload`] service and its
//! [`ResponseFuture`], and the upload flows they sequence.
//!
//! A request flows one way: the URL is verified and the request classified
//! (`action`), the body streams into storage (`stream`, checked on the way by
//! `inspect`) through one flow (`simple`, `chunk`, `status`), a session whose
//! bytes all arrived is committed (`complete`, with the File record of
//! `record`), and the inner service is called with the File. The service's
//! `future` is the only place that sequences these steps.

mod action;
mod body;
mod chunk;
mod complete;
mod drain;
mod fields;
mod future;
mod ietf;
mod inspect;
mod layer;
mod pieces;
mod record;
mod service;
mod simple;
mod status;
mod stream;
mod tus;
mod via;

use bytes::Bytes;
use http::Response;

use crate::UploadedFile;

pub use body::{EnvelopeBody, RequestBody, ResponseBody};
pub use future::ResponseFuture;
pub use layer::{
    SignedUploadLayer, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_RANGES,
    DEFAULT_MAX_SIZE,
};
pub use service::SignedUpload;
pub use via::{UploadProtocol, UploadVia};

/// How an upload step ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answer the client with this envelope.
    Respond(Response<Bytes>),
    /// This request committed the file: the inner service gets it.
    Committed {
        file: UploadedFile,
        etag: String,
        /// Headers the protocol adds to the inner service's answer.
        headers: Box<http::HeaderMap>,
    },
}
