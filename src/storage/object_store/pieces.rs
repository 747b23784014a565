//! The bytes of recorded chunks: where each byte of a range is ([`plan`]),
//! reading them back ([`read_pieces`]), and comparing two streams of bytes
//! ([`compare`]) without holding more than one piece of each.

use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{GetOptions, GetRange, ObjectStore};
use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::error::store_error;
use super::manifest::Recorded;
use super::SessionDir;
use crate::storage::{BoxStream, StorageError};

/// Where bytes `from..=to` of the file are: pieces of recorded chunk objects,
/// each byte once, as `(object, start, end)` with offsets in the object (`end`
/// exclusive); `None` if a byte is missing. Overlapping recorded chunks hold
/// equal bytes, so which one serves a byte does not matter.
pub(super) fn plan(
    dir: &SessionDir,
    chunks: &[Recorded],
    from: u64,
    to: u64,
) -> Option<Vec<(Path, u64, u64)>> {
    let mut ordered: Vec<&Recorded> = chunks
        .iter()
        .filter(|chunk| chunk.last >= from && chunk.first <= to)
        .collect();
    ordered.sort_by(|a, b| a.first.cmp(&b.first).then(b.last.cmp(&a.last)));
    let mut pieces = Vec::new();
    let mut cursor = from;
    for chunk in ordered {
        if cursor > to {
            break;
        }
        if chunk.last < cursor {
            continue;
        }
        if chunk.first > cursor {
            return None;
        }
        let end = chunk.last.min(to);
        pieces.push((
            dir.object(chunk),
            cursor - chunk.first,
            end - chunk.first + 1,
        ));
        cursor = end + 1;
    }
    (cursor > to).then_some(pieces)
}

/// The bytes of `pieces`, in order.
pub(super) fn read_pieces(
    store: Arc<dyn ObjectStore>,
    pieces: Vec<(Path, u64, u64)>,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    stream::iter(pieces)
        .then(move |(location, from, to)| {
            let store = Arc::clone(&store);
            async move {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(from..to)),
                    ..GetOptions::default()
                };
                let result = store.get_opts(&location, options).await?;
                Ok::<_, ::object_store::Error>(result.into_stream())
            }
        })
        .try_flatten()
        .map_err(store_error)
        .boxed()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Comparison {
    Same,
    Differ,
    /// The first stream ended before the second.
    Shorter,
    /// The first stream went on after the second ended.
    Longer,
}

/// Compares two streams of bytes piece by piece, holding one piece of each.
pub(super) async fn compare(
    mut a: BoxStream<'static, Result<Bytes, StorageError>>,
    mut b: BoxStream<'static, Result<Bytes, StorageError>>,
) -> Result<Comparison, StorageError> {
    let (mut left, mut right) = (Bytes::new(), Bytes::new());
    loop {
        if left.is_empty() {
            match a.next().await {
                Some(piece) => {
                    left = piece?;
                    continue;
                }
                None => loop {
                    if !right.is_empty() {
                        return Ok(Comparison::Shorter);
                    }
                    match b.next().await {
                        Some(piece) => right = piece?,
                        None => return Ok(Comparison::Same),
                    }
                },
            }
        }
        if right.is_empty() {
            match b.next().await {
                Some(piece) => {
                    right = piece?;
                    continue;
                }
                None => return Ok(Comparison::Longer),
            }
        }
        let len = left.len().min(right.len());
        if left.split_to(len) != right.split_to(len) {
            return Ok(Comparison::Differ);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_takes_each_byte_once() {
        let dir = SessionDir(Path::from("d"));
        let chunk = |first, last, tag: &str| Recorded {
            first,
            last,
            tag: tag.into(),
        };
        let chunks = [
            chunk(5, 9, "b"),
            chunk(0, 6, "a"),
            chunk(8, 14, "c"),
            chunk(0, 2, "d"),
        ];
        let pieces = plan(&dir, &chunks, 0, 14).expect("covered");
        let spans: Vec<(String, u64, u64)> = pieces
            .into_iter()
            .map(|(path, from, to)| (path.filename().unwrap_or("").to_owned(), from, to))
            .collect();
        assert_eq!(
            spans,
            [
                (format!("{:020}-{:020}-a", 0, 6), 0, 7),
                (format!("{:020}-{:020}-b", 5, 9), 2, 5),
                (format!("{:020}-{:020}-c", 8, 14), 2, 7),
            ]
        );
        let window = plan(&dir, &chunks, 6, 8).expect("covered");
        assert_eq!(window.len(), 2);
        assert!(plan(&dir, &chunks[..2], 0, 14).is_none(), "a gap");
    }

    #[tokio::test]
    async fn compare_streams_piece_by_piece() {
        let pieces = |parts: &[&'static [u8]]| -> BoxStream<'static, Result<Bytes, StorageError>> {
            stream::iter(
                parts
                    .iter()
                    .map(|p| Ok(Bytes::from_static(p)))
                    .collect::<Vec<_>>(),
            )
            .boxed()
        };
        type Pieces = &'static [&'static [u8]];
        let cases: [(Pieces, Pieces, Comparison); 4] = [
            (&[b"ab", b"cd"], &[b"a", b"bcd"], Comparison::Same),
            (&[b"abcd"], &[b"abXd"], Comparison::Differ),
            (&[b"ab"], &[b"abc"], Comparison::Shorter),
            (&[b"abc", b""], &[b"ab"], Comparison::Longer),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                compare(pieces(a), pieces(b)).await.expect("compares"),
                expected
            );
        }
    }
}
