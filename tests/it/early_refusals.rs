//! Early refusals are readable (docs/protocol.md#untrusted-clients): an answer
//! given before the body was read to its end reaches a client that is still
//! sending, and the connection then closes in order (EOF), never with a reset.
//! The client is raw TCP, so that nothing hides a reset from the test.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const LIMIT: u64 = 1024 * 1024;
const TRIES: usize = 10;

/// What the client saw: the bytes it read up to EOF, or the read error; and
/// whether writing all it meant to send failed.
struct Seen {
    read: io::Result<Vec<u8>>,
    write: io::Result<()>,
}

/// Sends `head`, then `body` in 64 KiB pieces while reading the answer; when
/// `finish` is set, closes the writing half after the body (the client gives
/// up on a body it declared longer). Reads until the server closes.
async fn exchange(addr: SocketAddr, head: Vec<u8>, body: Vec<u8>, finish: bool) -> Seen {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        writer.write_all(&head).await?;
        for piece in body.chunks(64 * 1024) {
            writer.write_all(piece).await?;
        }
        if finish {
            writer.shutdown().await?;
        }
        // Keep the writing half open (without `finish`) until the reader is done.
        Ok::<_, io::Error>(writer)
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut received))
        .await
        .expect("the server neither answered nor closed within 20 s")
        .map(|_| received);
    let write = writing.await.unwrap().map(drop);
    Seen { read, write }
}

/// Parses one HTTP/1.1 response that must make up all of `bytes`.
fn answer(bytes: &[u8]) -> Answer {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head")
        + 4;
    let (status, headers) = parse_head(&bytes[..head_end]);
    let length: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    assert_eq!(
        bytes.len(),
        head_end + length,
        "one complete response, then EOF"
    );
    Answer {
        status,
        headers,
        body: bytes::Bytes::copy_from_slice(&bytes[head_end..]),
    }
}

/// Checks that the client read the whole envelope `status`/`code` and then
/// EOF, and could send all it meant to.
fn assert_readable(seen: Seen, status: u16, code: &str, try_number: usize) {
    let bytes = seen
        .read
        .unwrap_or_else(|e| panic!("try {try_number}: reading failed ({e}), not EOF"));
    if let Err(e) = seen.write {
        panic!("try {try_number}: sending the body failed ({e})");
    }
    let answer = answer(&bytes);
    assert_eq!(answer.status, status, "try {try_number}: {:?}", answer.body);
    assert_eq!(answer.code(), code, "try {try_number}");
    assert_eq!(
        answer.header("connection"),
        Some("close"),
        "try {try_number}"
    );
}

#[tokio::test]
async fn declared_length_over_the_limit_is_413_then_eof_while_the_client_sends() {
    let server = TestServer::with(|layer| layer.max_size(LIMIT)).await;
    let url = server.put_url("big.bin");
    for try_number in 1..=TRIES {
        // Declares 1 GiB, sends 8 MiB of it, then gives up.
        let head = raw_head(
            "PUT",
            target(&url),
            &[("content-length", &(1u64 << 30).to_string())],
        );
        let seen = exchange(server.addr, head, vec![7; 8 << 20], true).await;
        assert_readable(seen, 413, "too_large", try_number);
    }
    assert!(server.storage.file("big.bin").is_none());
}

#[tokio::test]
async fn chunked_body_past_the_limit_is_413_then_eof() {
    // Node's case (a chunked PUT over a 1 MiB limit, sent whole), with 8 MiB.
    let server = TestServer::with(|layer| layer.max_size(LIMIT)).await;
    let url = server.put_url("big.bin");
    let piece = vec![3u8; 64 * 1024];
    let mut body = Vec::new();
    for _ in 0..128 {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(&piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    for try_number in 1..=TRIES {
        let head = raw_head("PUT", target(&url), &[("transfer-encoding", "chunked")]);
        let seen = exchange(server.addr, head, body.clone(), false).await;
        assert_readable(seen, 413, "too_large", try_number);
    }
}

#[tokio::test]
async fn bad_signature_with_a_large_body_is_403_then_eof() {
    let server = TestServer::start().await;
    let url = server.put_url("big.bin");
    // Another valid-looking signature: flip its last character.
    let mut url = url.into_bytes();
    let last = url.len() - 1;
    url[last] = if url[last] == b'A' { b'B' } else { b'A' };
    let url = String::from_utf8(url).unwrap();
    for try_number in 1..=TRIES {
        let head = raw_head(
            "PUT",
            target(&url),
            &[("content-length", &(1u64 << 30).to_string())],
        );
        let seen = exchange(server.addr, head, vec![7; 8 << 20], true).await;
        assert_readable(seen, 403, "signature_invalid", try_number);
    }
    assert_eq!(server.calls(), 0);
}
