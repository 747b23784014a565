//! A simple upload: the whole body streamed into storage, committed at its
//! path, then handed to the inner service.

use std::sync::{Arc, Mutex};

use bytes::Buf;
use http_body::Body;

use super::action::Checks;
use super::inspect::Inspect;
use super::layer::Config;
use super::record::{lock, random_file_id};
use super::stream::{Expect, UploadStream};
use super::Outcome;
use crate::error::storage_error;
use crate::headers::digest::{DigestSet, FileDigests};
use crate::{Error, UploadPath, UploadedFile};

/// A simple upload: the whole body into storage, then the File object.
///
/// The type, `Content-Digest`, `Repr-Digest` and the File's SHA-256 are all
/// judged on the one stream; a refusal fails the stream, so storage keeps nothing.
pub(crate) async fn simple<B>(
    config: Arc<Config>,
    path: UploadPath,
    body: B,
    max: u64,
    checks: Checks,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let digests = Arc::new(Mutex::new(FileDigests::default()));
    // A simple upload's body is the whole file: any digest the client sent of
    // it makes its SHA-256 worth knowing.
    let wanted = DigestSet {
        sha256: config.compute_sha256
            || checks.repr_digest.is_some()
            || checks.content_digest.is_some(),
        sha512: false,
    };
    let inspect = Inspect::new(
        checks.types,
        checks
            .content_digest
            .into_iter()
            .chain(checks.repr_digest)
            .collect(),
        (!wanted.is_empty()).then(|| (wanted, Arc::clone(&digests))),
    );
    // The declared length (`Content-Length`), for a storage quota.
    let length = body.size_hint().exact();
    let stream = UploadStream::new(body, Expect::AtMost(max), config.timers()).inspect(inspect);
    let (meta, head) = config
        .storage
        .put_with_length(&path, length, Box::pin(stream))
        .await
        .map_err(storage_error)?;
    let mut file = UploadedFile::describe(
        random_file_id(),
        &path,
        meta.size,
        &head,
        &config.public_base,
        config.clock.now(),
    );
    file.sha256 = lock(&digests).sha256.map(hex::encode);
    tracing::info!(path = %path, size = meta.size, file = %file.id, "upload committed");
    Ok(Outcome::Committed {
        file,
        etag: meta.etag,
        headers: Box::default(),
    })
}
