//! The completion record: written durably before the data file is renamed into
//! place, and the roll-forward that finishes a commit a crash interrupted.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::error::{is_not_found, other, write_error, FsError};
use super::file::etag_of;
use super::paths::{prepare_destination, sync_dir, DATA, RECORD, RECORD_TMP};
use crate::storage::StorageError;
use crate::UploadPath;

/// The first bytes of a completion record file.
const RECORD_MAGIC: &[u8; 8] = b"tsu-rec1";

#[derive(Debug, Clone)]
pub(super) struct StoredRecord {
    pub(super) etag: String,
    pub(super) path: String,
    pub(super) record: Bytes,
}

fn encode_record(record: &StoredRecord) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(64 + record.etag.len() + record.path.len() + record.record.len());
    out.extend_from_slice(RECORD_MAGIC);
    for field in [
        record.etag.as_bytes(),
        record.path.as_bytes(),
        &record.record,
    ] {
        out.extend_from_slice(&(field.len() as u64).to_le_bytes());
        out.extend_from_slice(field);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

fn decode_record(bytes: &[u8]) -> Option<StoredRecord> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, digest) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let mut rest = body.strip_prefix(RECORD_MAGIC.as_slice())?;
    let mut field = || -> Option<&[u8]> {
        let (len, tail) = rest.split_at_checked(8)?;
        let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
        let (value, tail) = tail.split_at_checked(len)?;
        rest = tail;
        Some(value)
    };
    let etag = String::from_utf8(field()?.to_vec()).ok()?;
    let path = String::from_utf8(field()?.to_vec()).ok()?;
    let record = Bytes::copy_from_slice(field()?);
    Some(StoredRecord { etag, path, record })
}

pub(super) fn read_record(dir: &Path) -> Result<Option<StoredRecord>, StorageError> {
    match fs::read(dir.join(RECORD)) {
        Ok(bytes) => decode_record(&bytes)
            .map(Some)
            .ok_or_else(|| other(FsError::Corrupt("completion record fails its checksum"))),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(write_error(error)),
    }
}

pub(super) fn record_exists(dir: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(dir.join(RECORD)) {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(write_error(error)),
    }
}

/// Writes the record durably: temporary file, `fsync`, rename, `fsync` of the folder.
pub(super) fn write_record(dir: &Path, record: &StoredRecord) -> Result<(), StorageError> {
    let temp = dir.join(RECORD_TMP);
    let mut file = File::create(&temp).map_err(write_error)?;
    file.write_all(&encode_record(record))
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    fs::rename(&temp, dir.join(RECORD)).map_err(write_error)?;
    sync_dir(dir).map_err(write_error)
}

/// Finishes a commit that a crash interrupted between writing the record and
/// renaming the data file: if the session's data file is still there and is the
/// file the record describes, moves it into place.
pub(super) fn roll_forward(
    root: &Path,
    dir: &Path,
    record: &StoredRecord,
) -> Result<(), StorageError> {
    let data = dir.join(DATA);
    let meta = match fs::symlink_metadata(&data) {
        Ok(meta) => meta,
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => return Err(write_error(error)),
    };
    if etag_of(&meta) != record.etag {
        return Ok(());
    }
    let path = UploadPath::new(&record.path)
        .ok_or_else(|| other(FsError::Corrupt("completion record names an invalid path")))?;
    let target = prepare_destination(root, &path)?;
    fs::rename(&data, &target).map_err(write_error)?;
    sync_dir(target.parent().unwrap_or(root)).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_detects_damage() {
        let record = StoredRecord {
            etag: "5-1-2".to_owned(),
            path: "a/b.txt".to_owned(),
            record: Bytes::from_static(b"{\"id\":1}"),
        };
        let bytes = encode_record(&record);
        let decoded = decode_record(&bytes).expect("decodes");
        assert_eq!(
            (decoded.etag, decoded.path, decoded.record),
            (record.etag, record.path, record.record)
        );
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_none());
        }
        let mut damaged = bytes.clone();
        damaged[10] ^= 0x40;
        assert!(decode_record(&damaged).is_none());
    }
}
