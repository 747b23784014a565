//! Committed files: simple uploads, reads, and the entity tag this backend
//! keeps in each file's user metadata.

use std::ops::RangeInclusive;
use std::time::SystemTime;

use ::object_store::path::Path;
use ::object_store::{Attribute, AttributeValue, Attributes, GetOptions, GetRange, ObjectMeta};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use super::error::{read_error, store_error};
use super::multipart::stage;
use super::{random_tag, ObjectStoreStorage};
use crate::storage::{ByteStream, FileMeta, FileRead, StorageError};

/// The user metadata key of the entity tag this backend gives the files it writes.
const ETAG_KEY: &str = "upload-etag";

pub(super) fn tagged(etag: &str) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata(ETAG_KEY.into()),
        AttributeValue::from(etag.to_owned()),
    );
    attributes
}

/// A file's metadata: its entity tag is the one this backend gave it, or the
/// store's for a file written by something else.
fn file_meta(meta: &ObjectMeta, attributes: &Attributes) -> FileMeta {
    let etag = match attributes.get(&Attribute::Metadata(ETAG_KEY.into())) {
        Some(etag) => etag.as_ref().to_owned(),
        None => meta.e_tag.as_deref().map(unquote).unwrap_or_default(),
    };
    FileMeta {
        size: meta.size,
        etag,
        modified: SystemTime::from(meta.last_modified),
    }
}

fn unquote(etag: &str) -> String {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_owned()
}

impl ObjectStoreStorage {
    /// Streams a simple upload into its final key, which it replaces at once.
    pub(super) async fn put_file(
        &self,
        target: Path,
        body: ByteStream,
    ) -> Result<(FileMeta, Bytes), StorageError> {
        let body = body.map_err(StorageError::Body).boxed();
        let etag = random_tag();
        let received = stage(
            self.store.as_ref(),
            &target,
            body,
            self.part_size,
            None,
            None,
            tagged(&etag),
        )
        .await?;
        let (size, head) = (received.size, received.head.clone());
        received.finish(self.store.as_ref(), &target).await?;
        let meta = match self.head_meta(&target).await {
            Ok(meta) if meta.etag == etag => meta,
            // Replaced again meanwhile: describe the file this call stored.
            _ => FileMeta {
                size,
                etag,
                modified: self.clock.now(),
            },
        };
        Ok((meta, head))
    }

    /// The file at `target`, or the bytes of `range` in it.
    pub(super) async fn read_file(
        &self,
        target: Path,
        range: Option<RangeInclusive<u64>>,
    ) -> Result<FileRead, StorageError> {
        let options = GetOptions {
            range: range
                .map(|range| GetRange::Bounded(*range.start()..range.end().saturating_add(1))),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&target, options)
            .await
            .map_err(read_error)?;
        let meta = file_meta(&result.meta, &result.attributes);
        Ok(FileRead {
            meta,
            body: result.into_stream().map_err(store_error).boxed(),
        })
    }

    /// A file's metadata, with the user metadata that holds its entity tag.
    pub(super) async fn head_meta(&self, location: &Path) -> Result<FileMeta, StorageError> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(location, options)
            .await
            .map_err(read_error)?;
        Ok(file_meta(&result.meta, &result.attributes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(unquote("\"abc-2\""), "abc-2");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
    }
}
