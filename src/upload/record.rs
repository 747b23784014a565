//! Ids and the File record: the session id of a signed URL, File ids, the
//! record builder storage calls at commit, and reading a record back.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use sha2::{Digest, Sha256};

use super::Outcome;
use crate::envelope::{self, Meta};
use crate::headers::digest::ReprDigest;
use crate::random::random_hex;
use crate::storage::{CommitInfo, CommitRefused, Completion, MakeRecord, Session};
use crate::upload::inspect::sniffed_type;
use crate::upload::layer::Config;
use crate::{Error, TypeRule, UploadedFile};

/// The session id of a signed URL: SHA-256 of the signed string, in hex.
pub(crate) fn session_id(signed: [&str; 2]) -> String {
    let digest = Sha256::new()
        .chain_update(signed[0])
        .chain_update(b"?")
        .chain_update(signed[1])
        .finalize();
    hex::encode(digest)
}

/// The session id of a tus part: derived from its upload's session id and
/// the part's nonce, so a part belongs to one upload.
pub(crate) fn part_session_id(parent: &str, nonce: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"part:")
        .chain_update(parent)
        .chain_update(b":")
        .chain_update(nonce)
        .finalize();
    hex::encode(digest)
}

/// The File id of a session: `file_` and 24 hex digits derived from the
/// session id, so every retry of one session names the same file.
pub(super) fn file_id_for(session: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"file-id:")
        .chain_update(session)
        .finalize();
    format!("file_{}", hex::encode(&digest[..12]))
}

/// A fresh random File id for a simple upload.
pub(super) fn random_file_id() -> String {
    format!("file_{}", random_hex::<12>())
}

pub(super) fn completed(
    session: &Session,
    completion: Completion,
    meta: &Meta,
) -> Result<Outcome, Error> {
    let file = file_of(session, &completion)?;
    if completion.fresh {
        tracing::info!(session = session.id(), path = %session.path(), size = file.filesize, file = %file.id, "upload committed");
        return Ok(Outcome::Committed {
            file,
            etag: completion.etag,
            headers: Box::default(),
        });
    }
    tracing::debug!(session = session.id(), "completion replayed");
    let mut response = envelope::file(meta, StatusCode::OK, &file);
    completion_headers(response.headers_mut(), &completion.etag, &file.url);
    Ok(Outcome::Respond(response))
}

/// A completion record: the File object, and for a tus final upload the
/// `Upload-Concat` it was made with (read back by [`concat_of`]; the File
/// object read back by [`file_of`] leaves it out).
#[derive(serde::Serialize)]
struct Record {
    #[serde(flatten)]
    file: UploadedFile,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_concat: Option<String>,
}

/// The `Upload-Concat` of a final upload's completion record, if it is one.
pub(crate) fn concat_of(completion: &Completion) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Concat {
        upload_concat: Option<String>,
    }
    serde_json::from_slice::<Concat>(&completion.record)
        .ok()?
        .upload_concat
}

/// The File object a completion record holds.
pub(super) fn file_of(session: &Session, completion: &Completion) -> Result<UploadedFile, Error> {
    serde_json::from_slice(&completion.record).map_err(|error| {
        tracing::error!(session = session.id(), %error, "completion record unreadable");
        Error::StorageError
    })
}

/// The record builder handed to storage: the File object, as JSON. It judges
/// the assembled file once more before commit: its sniffed type against the
/// signed rule, and its digest against the session's `Repr-Digest`; a refusal
/// leaves its reason in `refusal`.
pub(super) fn make_record(
    config: &Config,
    session: &Session,
    types: Option<TypeRule>,
    own_digest: Option<ReprDigest>,
    concat: Option<String>,
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
        if let Some(expected) = info.repr_digest.as_ref().or(own_digest.as_ref()) {
            if info.digests.get(expected.algorithm) != Some(&expected.value[..]) {
                return refuse(Error::DigestMismatch);
            }
        }
        let mut file = UploadedFile::describe(id, &path, info.size, &info.head, &public_base, now);
        file.sha256 = info.digests.sha256.map(hex::encode);
        let record = Record {
            file,
            upload_concat: concat.clone(),
        };
        Ok(Bytes::from(serde_json::to_vec(&record).expect(
            "a File object serializes: plain strings and numbers",
        )))
    })
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
