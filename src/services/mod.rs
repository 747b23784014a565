//! Ready-made services to put inside or beside the layer.
//!
//! | service | what it does |
//! |---|---|
//! | [`RespondCreated`] | the default inner service: `201 Created` with the File object |
//! | [`FileService`] | signed downloads (`get` URLs): ranges, `ETag`, `If-None-Match` |
//! | [`SignatureEndpoint`] | mints URLs for callers holding the API key (`POST /signatures`) |

mod file_service;
mod respond_created;
mod signature_endpoint;

pub use file_service::{DownloadBody, FileService};
pub use respond_created::RespondCreated;
pub use signature_endpoint::SignatureEndpoint;
