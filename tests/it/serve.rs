//! `serve::Server`: the connection limits, over real sockets on 127.0.0.1.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_signed_upload::serve::Server;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Serves `service` with `server` on a free port until the returned sender is
/// dropped or sent to; the handle ends when `serve` returns.
async fn start<S>(
    server: Server,
    service: S,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server
            .serve(listener, service, async {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, stop, handle)
}

/// Answers every request with its body's length, after reading it whole.
fn echo_length() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(|request: Request<Incoming>| async move {
        let length = request
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes().len())
            .unwrap_or(0);
        Ok::<_, Infallible>(Response::new(
            Full::new(Bytes::from(length.to_string())).boxed(),
        ))
    })
}

/// Reads until the server closes the connection (or resets it), at most
/// `within`; the bytes read, or `None` if it stayed open.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<usize> {
    let mut total = 0;
    let mut buf = vec![0; 256 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
            Ok(Ok(read)) => total += read,
        }
    }
}

#[tokio::test]
async fn a_request_head_trickled_after_a_slow_start_is_closed_within_one_header_timeout() {
    let (addr, _stop, _handle) = start(
        Server::new().header_timeout(Duration::from_secs(1)),
        echo_length(),
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let accepted = Instant::now();
    // "P" could begin the HTTP/2 preface, so the protocol is known only at
    // the second byte, 0.8 s later; the rest of the head then trickles.
    stream.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let head = b"UT /x HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let trickle = async {
        for byte in head {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // The trickle alone would take 6 s.
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .unwrap();
    let closed = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the connection stayed open");
    let took = accepted.elapsed();
    // Closed at the header timeout from accept; a first-bytes timeout
    // followed by a header timeout of its own would allow almost 2 s.
    assert!(
        took < Duration::from_millis(1600),
        "the head was allowed {took:?} from accept"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answer_is_closed_after_the_write_timeout() {
    const SIZE: usize = 64 * 1024 * 1024;
    let service = tower::service_fn(|_request: Request<Incoming>| async move {
        let chunks = futures::stream::iter((0..SIZE / (1024 * 1024)).map(|_| {
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(vec![7; 1024 * 1024])))
        }));
        Ok::<_, Infallible>(Response::new(StreamBody::new(chunks).boxed()))
    });
    let server = Server::new()
        .write_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_secs(30));
    let (addr, _stop, _handle) = start(server, service).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // Take nothing for four write timeouts, then read what is there.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = read_to_close(&mut stream, Duration::from_secs(20)).await;
    let read = read.expect("the connection stayed open");
    assert!(
        read < SIZE,
        "the whole {read}-byte answer was sent to a client that stopped reading"
    );
}

#[tokio::test]
async fn a_body_sent_slower_than_the_header_timeout_is_not_cut_by_it() {
    let server = Server::new()
        .header_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(300));
    let (addr, _stop, _handle) = start(server, echo_length()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        stream.write_all(b"a").await.unwrap();
    }
    let mut answer = Vec::new();
    let mut buf = [0; 1024];
    while !answer.ends_with(b"\r\n\r\n10") {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(read > 0, "closed before the answer: {answer:?}");
        answer.extend_from_slice(&buf[..read]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn shutdown_closes_what_is_still_open_after_the_grace() {
    let service = tower::service_fn(|_request: Request<Incoming>| async move {
        // An answer that never comes.
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()).boxed()))
    });
    let server = Server::new().shutdown_grace(Duration::from_millis(300));
    let (addr, stop, handle) = start(server, service).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("serve returns after the grace")
        .unwrap();
    let closed = read_to_close(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(closed, Some(0), "the stalled connection was left open");
}
