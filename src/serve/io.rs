//! The socket as hyper sees it: the bytes read to tell the protocol first, then
//! reads capped at the connection's share of a budget all connections share.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The least a connection reads at once, however many are open.
const MIN_READ: usize = 16 * 1024;

/// The HTTP/2 connection preface. hyper's auto builder reads up to this many
/// bytes to tell HTTP/2 from HTTP/1, with no timeout of its own.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the protocol is known: the whole HTTP/2 preface, or the first
/// byte that differs from it (HTTP/1). `None` if the client closed first.
pub(super) async fn read_first_bytes(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut first = vec![0; H2_PREFACE.len()];
    let mut filled = 0;
    loop {
        let read = stream.read(&mut first[filled..]).await.ok()?;
        if read == 0 {
            return None;
        }
        filled += read;
        if filled == first.len() || first[..filled] != H2_PREFACE[..filled] {
            first.truncate(filled);
            return Some(first);
        }
    }
}

/// A connection's socket whose reads are capped at its share of the read
/// budget among the open connections: a lone upload reads in large pieces,
/// the fewest system calls per byte, while many uploads at once read small
/// ones, so their buffers stay small. Waiting bytes stay in the kernel's
/// socket buffers.
///
/// The bytes read before the connection was handed to hyper are read again
/// first.
pub(super) struct SharedReads {
    stream: TcpStream,
    first: Bytes,
    open: Arc<AtomicUsize>,
    budget: usize,
}

impl SharedReads {
    pub(super) fn new(
        stream: TcpStream,
        first: Vec<u8>,
        open: &Arc<AtomicUsize>,
        budget: usize,
    ) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        SharedReads {
            stream,
            first: first.into(),
            open: Arc::clone(open),
            budget,
        }
    }
}

impl Drop for SharedReads {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for SharedReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.first.is_empty() {
            let take = self.first.len().min(buf.remaining());
            buf.put_slice(&self.first[..take]);
            self.first.advance(take);
            return Poll::Ready(Ok(()));
        }
        let share = (self.budget / self.open.load(Ordering::Relaxed).max(1)).max(MIN_READ);
        if buf.remaining() <= share {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        // Safe code cannot hand the socket a part of `buf`'s uninitialised
        // memory, so the part is zeroed first: a memset of at most `share`
        // bytes, far cheaper than the system call that fills it.
        let mut part = ReadBuf::new(buf.initialize_unfilled_to(share));
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut part))?;
        let read = part.filled().len();
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SharedReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
