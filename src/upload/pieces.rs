//! An append's body cut into pieces: each piece is stored as one range of the
//! session, so a body cut off midway keeps the pieces that arrived whole.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::storage::{BodyError, ByteStream};
use crate::Error;

/// The most bytes one piece of a body of known length holds: what a body cut
/// off midway can lose at most.
pub(crate) const PIECE: u64 = 64 * 1024 * 1024;

/// The most bytes held in memory for one piece of a body of unknown length
/// (a chunked request): such a piece is read whole before it is stored,
/// since a stored range must know its length.
pub(crate) const BUFFERED_PIECE: usize = 4 * 1024 * 1024;

type Source = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

struct Shared {
    source: Source,
    /// Bytes read past the end of the previous piece.
    leftover: Option<Bytes>,
}

/// A request body handed out piece by piece.
pub(crate) struct Pieces {
    shared: Arc<Mutex<Shared>>,
}

impl Pieces {
    pub(crate) fn new(
        source: impl Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
    ) -> Self {
        Pieces {
            shared: Arc::new(Mutex::new(Shared {
                source: Box::pin(source),
                leftover: None,
            })),
        }
    }

    /// The next `len` bytes as a stream for storage. It fails if the body
    /// ends or fails first (the piece then counts for nothing). The `last`
    /// piece also reads the body's end, so a check made there (a length, a
    /// checksum) fails the piece rather than going unseen.
    pub(crate) fn exactly(&self, len: u64, last: bool) -> ByteStream {
        Box::pin(Piece {
            shared: Arc::clone(&self.shared),
            remaining: len,
            last,
        })
    }

    /// The next bytes, up to `max`, read into memory: `None` once the body
    /// ended, an error if it failed.
    pub(crate) async fn buffered(&self, max: usize) -> Option<Result<Vec<Bytes>, BodyError>> {
        let mut pieces = Vec::new();
        let mut held = 0;
        while held < max {
            let next = {
                let leftover = lock(&self.shared).leftover.take();
                match leftover {
                    Some(bytes) => Some(Ok(bytes)),
                    None => NextBytes(&self.shared).await,
                }
            };
            match next {
                None => break,
                Some(Err(error)) => return Some(Err(error)),
                Some(Ok(mut bytes)) => {
                    if held + bytes.len() > max {
                        let rest = bytes.split_off(max - held);
                        lock(&self.shared).leftover = Some(rest);
                    }
                    held += bytes.len();
                    pieces.push(bytes);
                }
            }
        }
        (!pieces.is_empty()).then_some(Ok(pieces))
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The source's next item, skipping empty pieces.
struct NextBytes<'a>(&'a Mutex<Shared>);

impl std::future::Future for NextBytes<'_> {
    type Output = Option<Result<Bytes, BodyError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut shared = lock(self.0);
        loop {
            match std::task::ready!(shared.source.poll_next_unpin(cx)) {
                Some(Ok(bytes)) if bytes.is_empty() => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

/// One piece of known length.
struct Piece {
    shared: Arc<Mutex<Shared>>,
    remaining: u64,
    /// Whether the body must end after this piece.
    last: bool,
}

impl Stream for Piece {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = Arc::clone(&self.shared);
        let mut shared = lock(&shared);
        if self.remaining == 0 {
            if !self.last {
                return Poll::Ready(None);
            }
            // The body's end: nothing more may come, and its checks pass.
            let end = match shared.leftover.take() {
                Some(_) => Some(Err(BodyError(Error::ContentRangeMismatch))),
                None => loop {
                    match std::task::ready!(shared.source.poll_next_unpin(cx)) {
                        Some(Ok(bytes)) if bytes.is_empty() => continue,
                        Some(Ok(_)) => break Some(Err(BodyError(Error::ContentRangeMismatch))),
                        other => break other,
                    }
                },
            };
            self.last = false;
            return Poll::Ready(end);
        }
        let next = match shared.leftover.take() {
            Some(bytes) => Some(Ok(bytes)),
            None => loop {
                match std::task::ready!(shared.source.poll_next_unpin(cx)) {
                    Some(Ok(bytes)) if bytes.is_empty() => continue,
                    other => break other,
                }
            },
        };
        match next {
            None => {
                self.remaining = 0;
                Poll::Ready(Some(Err(BodyError(Error::BodyIncomplete))))
            }
            Some(Err(error)) => {
                self.remaining = 0;
                Poll::Ready(Some(Err(error)))
            }
            Some(Ok(mut bytes)) => {
                if bytes.len() as u64 > self.remaining {
                    // `remaining` is under the piece's length here, a usize.
                    let rest = bytes.split_off(self.remaining as usize);
                    shared.leftover = Some(rest);
                }
                self.remaining -= bytes.len() as u64;
                Poll::Ready(Some(Ok(bytes)))
            }
        }
    }
}

/// A piece read into memory, as a stream for storage.
pub(crate) fn from_memory(pieces: Vec<Bytes>) -> ByteStream {
    Box::pin(futures_util::stream::iter(pieces.into_iter().map(Ok)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn source(parts: &[&'static [u8]]) -> Pieces {
        let items: Vec<Result<Bytes, BodyError>> = parts
            .iter()
            .map(|part| Ok(Bytes::from_static(part)))
            .collect();
        Pieces::new(stream::iter(items))
    }

    async fn collect(stream: ByteStream) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            out.extend_from_slice(&item.map_err(|e| e.0)?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn known_length_pieces_split_the_body_where_they_end() {
        let pieces = source(&[b"abc", b"", b"defgh", b"ij"]);
        assert_eq!(collect(pieces.exactly(4, false)).await.unwrap(), b"abcd");
        assert_eq!(collect(pieces.exactly(5, false)).await.unwrap(), b"efghi");
        assert_eq!(collect(pieces.exactly(1, true)).await.unwrap(), b"j");
    }

    #[tokio::test]
    async fn the_last_piece_reads_the_end_and_its_errors() {
        let items: Vec<Result<Bytes, BodyError>> = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(BodyError(Error::ChecksumMismatch)),
        ];
        let pieces = Pieces::new(stream::iter(items));
        assert_eq!(
            collect(pieces.exactly(2, true)).await,
            Err(Error::ChecksumMismatch)
        );
        let pieces = source(&[b"abc"]);
        assert_eq!(
            collect(pieces.exactly(2, true)).await,
            Err(Error::ContentRangeMismatch)
        );
    }

    #[tokio::test]
    async fn a_piece_the_body_cannot_fill_fails() {
        let pieces = source(&[b"abc"]);
        assert_eq!(collect(pieces.exactly(2, false)).await.unwrap(), b"ab");
        assert_eq!(
            collect(pieces.exactly(5, true)).await,
            Err(Error::BodyIncomplete)
        );
    }

    #[tokio::test]
    async fn buffered_pieces_hold_at_most_their_size() {
        let pieces = source(&[b"abc", b"defgh", b"ij"]);
        let first = pieces.buffered(4).await.unwrap().unwrap();
        assert_eq!(first.concat(), b"abcd");
        let second = pieces.buffered(4).await.unwrap().unwrap();
        assert_eq!(second.concat(), b"efgh");
        let third = pieces.buffered(4).await.unwrap().unwrap();
        assert_eq!(third.concat(), b"ij");
        assert!(pieces.buffered(4).await.is_none());
    }

    #[tokio::test]
    async fn a_body_error_reaches_the_piece() {
        let items: Vec<Result<Bytes, BodyError>> = vec![
            Ok(Bytes::from_static(b"ab")),
            Err(BodyError(Error::BodyTimeout)),
        ];
        let pieces = Pieces::new(stream::iter(items));
        assert_eq!(
            collect(pieces.exactly(4, false)).await,
            Err(Error::BodyTimeout)
        );
        let pieces = Pieces::new(stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(BodyError(Error::BodyTimeout)),
        ]));
        assert!(matches!(
            pieces.buffered(4).await,
            Some(Err(BodyError(Error::BodyTimeout)))
        ));
    }
}
