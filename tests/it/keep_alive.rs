//! Keep-alive after uploads (docs/protocol.md#untrusted-clients): an answer to
//! a request whose body was read to its end leaves the HTTP/1.1 connection
//! open, whatever its status (a tus `PATCH`'s `204`, a draft append, a chunk's
//! `202`, a completion), so the client's next request goes on the same
//! connection; an answer given before the body's end closes it. The client is
//! raw TCP on one socket, so every answer read after the first proves the
//! connection was kept.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use tower_signed_upload::UrlOptions;

const TUS: (&str, &str) = ("tus-resumable", "1.0.0");
const STREAM: (&str, &str) = ("content-type", "application/offset+octet-stream");

/// One client connection: requests are written on it one after the other.
struct Connection {
    stream: TcpStream,
    /// Bytes read past the last answer.
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(server: &StorageServer) -> Self {
        Connection {
            stream: TcpStream::connect(server.addr).await.unwrap(),
            buffer: Vec::new(),
        }
    }

    /// Sends `method` on `url` with `headers` (`Content-Length` added) and
    /// `body`, and reads its answer (framed by `Content-Length`), within 10 s.
    async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let length = body.len().to_string();
        let mut all = headers.to_vec();
        all.push(("content-length", &length));
        let mut bytes = raw_head(method, target(url), &all);
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.answer())
            .await
            .expect("no answer within 10 s")
    }

    async fn answer(&mut self) -> Answer {
        let head_end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await;
        };
        let (status, headers) = parse_head(&self.buffer[..head_end]);
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
        while self.buffer.len() < head_end + length {
            self.fill().await;
        }
        let rest = self.buffer.split_off(head_end + length);
        let body = bytes::Bytes::copy_from_slice(&self.buffer[head_end..]);
        self.buffer = rest;
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "the server closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
    }

    /// Whether the server closed the connection (EOF within 5 s).
    async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// Asserts `answer` has `status` and leaves the connection open.
fn kept(answer: &Answer, status: u16) {
    assert_eq!(answer.status.as_u16(), status, "{answer:?}");
    assert_eq!(answer.header("connection"), None, "{answer:?}");
}

async fn tus_patches_share_one_connection(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("k/tus.bin", &UrlOptions::new());
    let data = bytes(30_000, 3);
    let mut connection = Connection::open(&server).await;
    let created = connection
        .send("POST", &url, &[TUS, ("upload-length", "30000")], b"")
        .await;
    kept(&created, 201);
    for (at, piece) in [(0u64, &data[..10_000]), (10_000, &data[10_000..20_000])] {
        let offset = at.to_string();
        let answer = connection
            .send(
                "PATCH",
                &url,
                &[TUS, STREAM, ("upload-offset", &offset)],
                piece,
            )
            .await;
        kept(&answer, 204);
        assert_eq!(
            answer.header("upload-offset"),
            Some((at + 10_000).to_string().as_str())
        );
    }
    // The last append completes the file: the inner service answers, and
    // the connection stays too.
    let done = connection
        .send(
            "PATCH",
            &url,
            &[TUS, STREAM, ("upload-offset", "20000")],
            &data[20_000..],
        )
        .await;
    // The inner service's answer to the completed file.
    kept(&done, 201);
    assert_eq!(server.calls(), 1);
    assert_eq!(server.file("k/tus.bin").await.as_deref(), Some(&data[..]));
    // A `PATCH` to the completed upload is answered (with its offset) before
    // its body is read: a success, yet it closes the connection.
    let refused = connection
        .send(
            "PATCH",
            &url,
            &[TUS, STREAM, ("upload-offset", "5")],
            b"late bytes",
        )
        .await;
    assert_eq!(refused.status.as_u16(), 204, "{refused:?}");
    assert_eq!(refused.header("upload-offset"), Some("30000"));
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(connection.closed().await);
}

async fn a_tus_refusal_before_the_body_closes(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("k/refused.bin", &UrlOptions::new());
    let mut connection = Connection::open(&server).await;
    kept(
        &connection
            .send("POST", &url, &[TUS, ("upload-length", "100")], b"")
            .await,
        201,
    );
    // A wrong offset: refused when the session is looked at, before the
    // body is read.
    let refused = connection
        .send(
            "PATCH",
            &url,
            &[TUS, STREAM, ("upload-offset", "7")],
            &[1; 50],
        )
        .await;
    assert_eq!(refused.status.as_u16(), 409, "{refused:?}");
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(connection.closed().await);
}

async fn draft_appends_share_one_connection(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("k/draft.bin", &UrlOptions::new());
    let interop = ("upload-draft-interop-version", "8");
    let partial = ("content-type", "application/partial-upload");
    let mut connection = Connection::open(&server).await;
    let created = connection
        .send(
            "POST",
            &url,
            &[interop, ("upload-complete", "?0"), ("upload-length", "9")],
            b"abc",
        )
        .await;
    assert!(created.status.is_success(), "{created:?}");
    assert_eq!(created.header("connection"), None, "{created:?}");
    let middle = connection
        .send(
            "PATCH",
            &url,
            &[
                interop,
                partial,
                ("upload-complete", "?0"),
                ("upload-offset", "3"),
            ],
            b"def",
        )
        .await;
    kept(&middle, 204);
    let last = connection
        .send(
            "PATCH",
            &url,
            &[
                interop,
                partial,
                ("upload-complete", "?1"),
                ("upload-offset", "6"),
            ],
            b"ghi",
        )
        .await;
    assert!(last.status.is_success(), "{last:?}");
    assert_eq!(last.header("connection"), None, "{last:?}");
    assert_eq!(
        server.file("k/draft.bin").await.as_deref(),
        Some(&b"abcdefghi"[..])
    );
}

async fn chunks_and_simple_puts_share_one_connection(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let chunked = server.put_url("k/chunks.bin", &UrlOptions::new());
    let simple = server.put_url("k/simple.bin", &UrlOptions::new());
    let mut connection = Connection::open(&server).await;
    let first = connection
        .send("PUT", &chunked, &[("content-range", "bytes 0-2/6")], b"abc")
        .await;
    kept(&first, 202);
    let last = connection
        .send("PUT", &chunked, &[("content-range", "bytes 3-5/6")], b"def")
        .await;
    kept(&last, 201);
    let whole = connection.send("PUT", &simple, &[], b"whole").await;
    kept(&whole, 201);
    assert_eq!(server.calls(), 2);
    // A chunk past the total is refused before its body is read.
    let refused = connection
        .send(
            "PUT",
            &chunked,
            &[("content-range", "bytes 0-9/6")],
            &[0; 10],
        )
        .await;
    assert!(refused.status.is_client_error(), "{refused:?}");
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(connection.closed().await);
}

on_every_backend! {
    tus_patches_share_one_connection => tus_patches_share_one_connection,
    a_tus_refusal_before_the_body_closes => a_tus_refusal_before_the_body_closes,
    draft_appends_share_one_connection => draft_appends_share_one_connection,
    chunks_and_simple_puts_share_one_connection => chunks_and_simple_puts_share_one_connection,
}
