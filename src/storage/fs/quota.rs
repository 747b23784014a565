//! The quota of bytes held by unfinished uploads ([`FsStorage::max_pending`]):
//! simple uploads' temporary files while they stream, and sessions' stored
//! bytes until they complete or are removed.
//!
//! [`FsStorage::max_pending`]: super::FsStorage::max_pending

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::journal::session_state;
use super::paths::{HIDDEN, TMP};
use super::record::record_exists;
use crate::storage::StorageError;

/// What unfinished uploads hold, against a limit.
#[derive(Debug)]
pub(super) struct Quota {
    limit: u64,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Reserved by requests in flight (simple uploads' bodies, chunks' new bytes).
    reserved: u64,
    /// Stored bytes of each unfinished session this process knows of.
    sessions: HashMap<String, u64>,
    /// The sum of `sessions`.
    stored: u64,
}

impl Held {
    fn total(&self) -> u64 {
        self.reserved.saturating_add(self.stored)
    }
}

impl Quota {
    /// A quota of `limit` bytes, counting the unfinished sessions already in
    /// the folder under `root` (one whose journal cannot be read counts for
    /// nothing).
    pub(super) fn new(root: &Path, limit: u64) -> Self {
        let mut held = Held::default();
        if let Ok(entries) = fs::read_dir(root.join(HIDDEN)) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(id) = name.to_str() else { continue };
                let dir = entry.path();
                let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
                if !is_dir || id == TMP || record_exists(&dir).unwrap_or(true) {
                    continue;
                }
                if let Ok(journal) = session_state(&dir) {
                    let bytes = journal.state.ranges.received();
                    held.stored = held.stored.saturating_add(bytes);
                    held.sessions.insert(id.to_owned(), bytes);
                }
            }
        }
        Quota {
            limit,
            held: Mutex::new(held),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // Plain counters: a panic cannot leave them half-updated.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes held now: reserved by requests in flight and stored by sessions.
    pub(super) fn used(&self) -> u64 {
        self.held().total()
    }

    /// Notes that a session stores `bytes` now (after a chunk was recorded).
    pub(super) fn set_session(&self, id: &str, bytes: u64) {
        let mut held = self.held();
        let before = held.sessions.insert(id.to_owned(), bytes).unwrap_or(0);
        held.stored = held.stored.saturating_sub(before).saturating_add(bytes);
    }

    /// Forgets a session that completed or was removed.
    pub(super) fn forget_session(&self, id: &str) {
        let mut held = self.held();
        if let Some(bytes) = held.sessions.remove(id) {
            held.stored = held.stored.saturating_sub(bytes);
        }
    }

    /// Keeps only the sessions for which `keep` holds (after cleanup).
    pub(super) fn retain_sessions(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut held = self.held();
        held.sessions.retain(|id, _| keep(id));
        held.stored = held.sessions.values().copied().sum();
    }
}

/// Bytes reserved against a quota by one request; released when dropped.
#[derive(Debug)]
pub(super) struct Reservation {
    quota: Option<Arc<Quota>>,
    bytes: u64,
}

impl Reservation {
    /// Nothing reserved yet; without a quota, nothing is ever counted.
    pub(super) fn new(quota: Option<Arc<Quota>>) -> Self {
        Reservation { quota, bytes: 0 }
    }

    /// Reserves `bytes` more, or fails with [`StorageError::Full`] (reserving
    /// nothing) if unfinished uploads would then hold more than the limit.
    pub(super) fn grow(&mut self, bytes: u64) -> Result<(), StorageError> {
        let Some(quota) = &self.quota else {
            return Ok(());
        };
        let mut held = quota.held();
        let after = held.total().saturating_add(bytes);
        if after > quota.limit {
            return Err(StorageError::Full);
        }
        held.reserved += bytes;
        self.bytes += bytes;
        Ok(())
    }

    /// Bytes reserved so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(quota) = &self.quota {
            let mut held = quota.held();
            held.reserved = held.reserved.saturating_sub(self.bytes);
        }
    }
}
