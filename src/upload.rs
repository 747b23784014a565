//! Streaming a verified upload into storage: simple uploads, chunks and status
//! queries. Each step ends in an answer for the client or a committed file for
//! the inner service.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use http::{Response, StatusCode};
use http_body::Body;
use sha2::{Digest, Sha256};

use crate::body::{Expect, UploadStream};
use crate::classify::Checks;
use crate::digest::{self, DigestSet, Expected, FileDigests};
use crate::envelope::{self, Meta};
use crate::inspect::{sniffed_type, Inspect, SNIFF_LEN};
use crate::layer::Config;
use crate::storage::{
    ChunkOptions, ChunkRange, CommitInfo, CommitRefused, CompleteOptions, Completion, MakeRecord,
    Session, SessionStatus, StorageError,
};
use crate::{Error, TypeRule, UploadPath, UploadedFile};

/// How an upload step ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answer the client with this envelope.
    Respond(Response<Bytes>),
    /// This request committed the file: the inner service gets it.
    Committed { file: UploadedFile, etag: String },
}

/// The session id of a signed URL: SHA-256 of the signed string, in hex.
pub(crate) fn session_id(signed: [&str; 2]) -> String {
    let digest = Sha256::new()
        .chain_update(signed[0])
        .chain_update(b"?")
        .chain_update(signed[1])
        .finalize();
    hex(&digest)
}

/// The File id of a session: `file_` and 24 hex digits derived from the
/// session id, so every retry of one session names the same file.
fn file_id_for(session: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"file-id:")
        .chain_update(session)
        .finalize();
    format!("file_{}", hex(&digest[..12]))
}

/// A fresh random File id for a simple upload.
fn random_file_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // Without entropy, the time and a counter still give distinct ids.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&Sha256::digest(nanos.to_le_bytes())[..12]);
    }
    format!("file_{}", hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Maps a storage failure to the client's answer; internals only go to the log.
pub(crate) fn storage_error(error: StorageError) -> Error {
    match error {
        StorageError::NotFound => Error::NotFound,
        StorageError::TotalMismatch => Error::TotalMismatch,
        StorageError::RangeNotSatisfiable => Error::RangeNotSatisfiable,
        StorageError::TooManyRanges => Error::TooManyRanges,
        StorageError::InvalidPath => Error::PathInvalid,
        StorageError::RangeConflict => Error::RangeConflict,
        StorageError::DigestConflict => Error::DigestConflict,
        // The layer's record builder refused; `settle` knows why.
        StorageError::CommitRefused => Error::StorageError,
        StorageError::Full => Error::StorageFull,
        StorageError::Body(body) => body.0,
        StorageError::Unavailable { backend, source } => {
            tracing::warn!(backend, error = %source, "storage unavailable");
            Error::StorageUnavailable
        }
        StorageError::Other { backend, source } => {
            tracing::error!(backend, error = %source, "storage failed");
            Error::StorageError
        }
    }
}

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
    let stream = UploadStream::new(body, Expect::AtMost(max), config.body_timeout).inspect(inspect);
    let (meta, head) = config
        .storage
        .put(&path, Box::pin(stream))
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
    file.sha256 = lock(&digests).sha256.map(|digest| hex(&digest));
    tracing::info!(path = %path, size = meta.size, file = %file.id, "upload committed");
    Ok(Outcome::Committed {
        file,
        etag: meta.etag,
    })
}

/// One chunk of a session: stored, then, if it completed the file, committed.
///
/// The chunk that carries offset 0 is judged against the signed type as its
/// first bytes arrive, when it holds enough of them to judge (8 KiB, or the
/// whole file); a smaller one is judged with the assembled file at commit. A
/// refusal discards the whole session, unless byte 0 was stored already: then
/// the chunk changed stored bytes, and is a range conflict.
pub(crate) async fn chunk<B>(
    config: Arc<Config>,
    session: Session,
    range: ChunkRange,
    body: B,
    meta: Meta,
    checks: Checks,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let judged_now = range.first == 0
        && (range.len() >= SNIFF_LEN as u64 || range.total == Some(range.last + 1));
    let sniff = checks.types.clone().filter(|_| judged_now);
    let inspect = Inspect::new(
        sniff,
        checks.content_digest.clone().into_iter().collect(),
        None,
    );
    let stream =
        UploadStream::new(body, Expect::Exactly(range.len()), config.body_timeout).inspect(inspect);
    let mut options = ChunkOptions::new(config.max_ranges);
    options.repr_digest = checks.repr_digest.as_ref().map(Expected::to_header);
    let written = config
        .storage
        .write_chunk(&session, range, &options, Box::pin(stream))
        .await
        .map_err(storage_error);
    let status = match written {
        Err(Error::TypeNotAllowed) => return Err(refuse_type(&config, &session).await),
        other => other?,
    };
    tracing::debug!(session = session.id(), first = range.first, last = range.last, total = ?range.total, "chunk stored");
    settle(
        &config,
        &session,
        status,
        StatusCode::ACCEPTED,
        &meta,
        &checks,
    )
    .await
}

/// Answers an offset-0 chunk whose type is refused: a range conflict if byte 0
/// is stored already (the chunk changed it), else the session is discarded.
async fn refuse_type(config: &Config, session: &Session) -> Error {
    match config.storage.status(session).await {
        Ok(SessionStatus::InProgress { ranges, .. }) if ranges.prefix_end().is_some() => {
            Error::RangeConflict
        }
        Ok(_) => discard(config, session, Error::TypeNotAllowed).await,
        Err(failure) => storage_error(failure),
    }
}

/// Removes a session refused by its policy, and answers with `error`.
async fn discard(config: &Config, session: &Session, error: Error) -> Error {
    tracing::info!(
        session = session.id(),
        code = error.code(),
        "session discarded"
    );
    match config.storage.discard(session).await {
        Ok(()) => error,
        Err(failure) => storage_error(failure),
    }
}

/// A status query: `308` with what is stored, or `200` once complete. Its
/// body must be empty (a chunked body that carries bytes is `400`).
pub(crate) async fn status<B>(
    config: Arc<Config>,
    session: Session,
    total: Option<u64>,
    body: B,
    meta: Meta,
    checks: Checks,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let mut empty =
        std::pin::pin!(
            UploadStream::new(body, Expect::Exactly(0), config.body_timeout).inspect(Inspect::new(
                None,
                checks.content_digest.clone().into_iter().collect(),
                None
            ))
        );
    if let Some(Err(error)) = futures_util::StreamExt::next(&mut empty).await {
        return Err(error.0);
    }
    let status = config
        .storage
        .status(&session)
        .await
        .map_err(storage_error)?;
    // Every request of a session that sends a Repr-Digest must agree with the kept one.
    if let (
        Some(sent),
        SessionStatus::InProgress {
            repr_digest: Some(kept),
            ..
        },
    ) = (&checks.repr_digest, &status)
    {
        if sent.to_header() != *kept {
            return Err(Error::DigestConflict);
        }
    }
    if let (
        Some(asked),
        SessionStatus::InProgress {
            total: known,
            ranges,
            ..
        },
    ) = (total, &status)
    {
        let disagrees = match known {
            Some(known) => *known != asked,
            None => ranges.end().is_some_and(|end| end >= asked),
        };
        if disagrees {
            return Err(Error::TotalMismatch);
        }
    }
    settle(
        &config,
        &session,
        status,
        StatusCode::PERMANENT_REDIRECT,
        &meta,
        &checks,
    )
    .await
}

/// Turns a session's status into the answer: progress (`202`/`308`), a replay
/// of the completion (`200`), or the commit of a session whose bytes all arrived.
async fn settle(
    config: &Config,
    session: &Session,
    status: SessionStatus,
    progress: StatusCode,
    meta: &Meta,
    checks: &Checks,
) -> Result<Outcome, Error> {
    let status = match status {
        SessionStatus::InProgress {
            total: Some(total),
            ranges,
            ..
        } if ranges.is_complete(total) && total > 0 => {
            let mut digests = DigestSet {
                sha256: config.compute_sha256 || checks.repr_digest.is_some(),
                sha512: false,
            };
            if let Some(repr) = &checks.repr_digest {
                digests = digests.with(repr.algorithm);
            }
            let refusal = Arc::new(Mutex::new(None));
            let record = make_record(
                config,
                session,
                checks.types.clone(),
                checks.repr_digest.clone(),
                Arc::clone(&refusal),
            );
            match config
                .storage
                .complete(session, &CompleteOptions::new(digests), record)
                .await
            {
                Err(StorageError::CommitRefused) => {
                    let error = lock(&refusal).take().unwrap_or(Error::StorageError);
                    tracing::info!(
                        session = session.id(),
                        code = error.code(),
                        "session discarded at commit"
                    );
                    return Err(error);
                }
                other => other.map_err(storage_error)?,
            }
        }
        other => other,
    };
    match status {
        SessionStatus::InProgress { total, ranges, .. } => Ok(Outcome::Respond(envelope::upload(
            meta,
            progress,
            session.path().as_str(),
            total,
            &ranges,
        ))),
        SessionStatus::Completed(completion) => completed(session, completion, meta),
    }
}

fn completed(session: &Session, completion: Completion, meta: &Meta) -> Result<Outcome, Error> {
    let file: UploadedFile = serde_json::from_slice(&completion.record).map_err(|error| {
        tracing::error!(session = session.id(), %error, "completion record unreadable");
        Error::StorageError
    })?;
    if completion.fresh {
        tracing::info!(session = session.id(), path = %session.path(), size = file.filesize, file = %file.id, "upload committed");
        return Ok(Outcome::Committed {
            file,
            etag: completion.etag,
        });
    }
    tracing::debug!(session = session.id(), "completion replayed");
    let mut response = envelope::file(meta, StatusCode::OK, &file);
    completion_headers(response.headers_mut(), &completion.etag, &file.url);
    Ok(Outcome::Respond(response))
}

/// The record builder handed to storage: the File object, as JSON. It judges
/// the assembled file once more before commit: its sniffed type against the
/// signed rule, and its digest against the session's `Repr-Digest`; a refusal
/// leaves its reason in `refusal`.
fn make_record(
    config: &Config,
    session: &Session,
    types: Option<TypeRule>,
    own_digest: Option<Expected>,
    refusal: Arc<Mutex<Option<Error>>>,
) -> MakeRecord {
    let id = file_id_for(session.id());
    let path = session.path().clone();
    let public_base = config.public_base.clone();
    let now = config.clock.now();
    Box::new(move |info: &CommitInfo| {
        let refuse = |error: Error| {
            *lock(&refusal) = Some(error);
            Err(CommitRefused)
        };
        if types.is_some_and(|rule| !rule.allows(sniffed_type(&info.head))) {
            return refuse(Error::TypeNotAllowed);
        }
        // The digest the session kept, else this request's own.
        let expected = match &info.repr_digest {
            Some(kept) => match digest::parse(kept.as_bytes()) {
                Ok(Some(expected)) => Some(expected),
                _ => return refuse(Error::DigestMismatch),
            },
            None => own_digest,
        };
        if let Some(expected) = expected {
            if info.digests.get(expected.algorithm) != Some(&expected.value[..]) {
                return refuse(Error::DigestMismatch);
            }
        }
        let mut file = UploadedFile::describe(id, &path, info.size, &info.head, &public_base, now);
        file.sha256 = info.digests.sha256.map(|digest| hex(&digest));
        Ok(Bytes::from(serde_json::to_vec(&file).expect(
            "a File object serializes: plain strings and numbers",
        )))
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds `ETag` and `Location` to a completing answer unless it has its own.
pub(crate) fn completion_headers(headers: &mut http::HeaderMap, etag: &str, url: &str) {
    if !headers.contains_key(http::header::ETAG) {
        if let Ok(value) = http::HeaderValue::from_str(&format!("\"{etag}\"")) {
            headers.insert(http::header::ETAG, value);
        }
    }
    if !headers.contains_key(http::header::LOCATION) {
        if let Ok(value) = http::HeaderValue::from_str(url) {
            headers.insert(http::header::LOCATION, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_session_and_distinct_across() {
        let a = session_id(["a.png", "expiry=1&method=put"]);
        let b = session_id(["a.png", "expiry=2&method=put"]);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(file_id_for(&a), file_id_for(&a));
        assert_ne!(file_id_for(&a), file_id_for(&b));
        assert_eq!(file_id_for(&a).len(), 5 + 24);
        assert_ne!(random_file_id(), random_file_id());
    }
}
