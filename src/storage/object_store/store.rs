//! Store access shared by every part: small JSON objects read and written with
//! their versions (for conditional puts), listing, quiet deletes, and the
//! back-off between polls.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::object_store::path::Path;
use ::object_store::{
    GetOptions, ObjectMeta, PutMode, PutOptions, PutPayload, PutResult, UpdateVersion,
};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::error::{other, store_error, BackendError};
use super::ObjectStoreStorage;
use crate::storage::StorageError;

pub(super) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) fn version_of(result: &PutResult) -> UpdateVersion {
    UpdateVersion {
        e_tag: result.e_tag.clone(),
        version: result.version.clone(),
    }
}

pub(super) fn version_of_meta(meta: &ObjectMeta) -> UpdateVersion {
    UpdateVersion {
        e_tag: meta.e_tag.clone(),
        version: meta.version.clone(),
    }
}

pub(super) fn put_options(mode: PutMode) -> PutOptions {
    PutOptions {
        mode,
        ..PutOptions::default()
    }
}

pub(super) fn to_json<T: Serialize>(value: &T) -> PutPayload {
    PutPayload::from(serde_json::to_vec(value).expect("plain structs serialize"))
}

/// Exponential back-off from 25 ms to 400 ms between polls.
pub(super) async fn pause(round: u32) {
    let millis = 25u64 << round.min(4);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

impl ObjectStoreStorage {
    pub(super) async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        location: &Path,
    ) -> Result<Option<(T, UpdateVersion)>, StorageError> {
        Ok(self
            .get_json_meta(location)
            .await?
            .map(|(value, meta)| (value, version_of_meta(&meta))))
    }

    /// A JSON object with its metadata: its version and the store's own
    /// modification time.
    pub(super) async fn get_json_meta<T: for<'de> Deserialize<'de>>(
        &self,
        location: &Path,
    ) -> Result<Option<(T, ObjectMeta)>, StorageError> {
        let result = match self.store.get_opts(location, GetOptions::default()).await {
            Ok(result) => result,
            Err(::object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(store_error(error)),
        };
        let meta = result.meta.clone();
        let bytes = result.bytes().await.map_err(store_error)?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|_| other(BackendError::Corrupt("a session object is not valid JSON")))?;
        Ok(Some((value, meta)))
    }

    pub(super) async fn delete_quietly(&self, locations: Vec<Path>) {
        if locations.is_empty() {
            return;
        }
        let stream = stream::iter(locations.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(stream);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(::object_store::Error::NotFound { .. }) => {}
                Err(error) => tracing::warn!(%error, "removing a session object failed"),
            }
        }
    }

    /// Every object under `prefix`.
    pub(super) async fn list_all(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, StorageError> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(store_error)
    }
}
