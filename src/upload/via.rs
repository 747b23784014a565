//! [`UploadVia`]: how a completed upload reached the layer.

use http::Method;

/// The wire protocol an upload came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UploadProtocol {
    /// A simple `PUT` of the whole file.
    Simple,
    /// `PUT`s with `Content-Range` chunks (and status queries).
    Chunks,
    /// tus 1.0.0.
    Tus,
    /// The HTTP working group's resumable uploads
    /// (draft-ietf-httpbis-resumable-upload), at this interop version.
    IetfDraft {
        /// The `Upload-Draft-Interop-Version` the client sent (3, 5, 6, 7 or 8).
        interop_version: u8,
    },
}

/// How a completed upload reached the layer: in the extensions of the request
/// the inner service gets, beside the [`UploadedFile`](crate::UploadedFile).
///
/// The inner service sees every completion as a `PUT` of the file's path,
/// whatever the protocol, so one route declared for `PUT` serves them all;
/// this says which protocol it was, and the method of the request that
/// completed it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadVia {
    /// The wire protocol.
    pub protocol: UploadProtocol,
    /// The method of the request that completed the upload (`PUT`, or tus's
    /// and the draft's `POST`, `PATCH`, `HEAD`).
    pub method: Method,
}
