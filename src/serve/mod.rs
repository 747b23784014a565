//! Serve a tower service on the open internet: the connection limits a server
//! taking uploads from anyone needs, in one call.
//!
//! [`SignedUploadLayer`](crate::SignedUploadLayer) bounds what a request may
//! cost once it is read. What happens before (a connection that never sends a
//! byte, a request head sent one byte at a time, thousands of idle keep-alive
//! connections) is the server's business, and `axum::serve` leaves it open:
//! it sets no timer, so hyper's header read timeout never fires, and it does
//! not cap connections. [`Server`] runs the accept loop with them:
//!
//! - a connection that has not sent a whole request head within the
//!   **header timeout** (default 30 s) of being accepted is closed, whether it
//!   sends nothing, stalls before HTTP/1 or HTTP/2 is known, or trickles its
//!   head; later heads on a keep-alive connection get as long each;
//! - a connection with no request in flight for the **idle timeout** (default
//!   60 s) is closed, HTTP/1 keep-alive and HTTP/2 alike; HTTP/2 connections
//!   are also pinged every **ping interval** (default 20 s) and closed when a
//!   ping goes unanswered as long;
//! - a connection whose client does not take its answer (no part of a
//!   response body asked for by the socket) for the **write timeout**
//!   (default 60 s) is closed;
//! - at most **max connections** (default 1024) are open at once; past it, and
//!   while the process is out of file descriptors, new connections wait in the
//!   kernel's queue while the open ones are served, and the loop never spins;
//! - reads from all connections together are capped by a **read budget**
//!   (default 4 MiB), so many uploads at once keep small buffers;
//! - on shutdown, accepting stops, requests in flight finish for up to the
//!   **shutdown grace** (default 30 s), and what is left is then closed.
//!
//! ```no_run
//! use axum::{routing::put, Router};
//! use tower_signed_upload::{serve::Server, services::RespondCreated, storage::MemoryStorage};
//! use tower_signed_upload::{SignedUploadLayer, SigningKey};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SignedUploadLayer::new(SigningKey::new("project key")?, MemoryStorage::new());
//! let app = Router::new().fallback_service(tower_layer::Layer::layer(&layer, RespondCreated));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! Server::new().serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```
//!
//! With your own hyper-util loop instead, the settings that matter are: a
//! `TokioTimer` on both the HTTP/1 and HTTP/2 builders (without a timer hyper's
//! `header_read_timeout` does nothing), `http1().header_read_timeout(..)`,
//! `http2().keep_alive_interval(..)` and `keep_alive_timeout(..)`, a timeout on
//! the bytes read before the protocol is known (hyper-util's auto builder has
//! none), an idle timer per connection, and a semaphore around `accept`.

mod activity;
mod io;

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

use activity::{Activity, Tracking};
use io::{read_first_bytes, SharedReads};

/// The default header timeout: 30 s.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// The default idle timeout: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default write timeout: 60 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default HTTP/2 ping interval: 20 s.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// The default cap on open connections: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default read budget shared by all connections: 4 MiB.
pub const DEFAULT_READ_BUDGET: usize = 4 * 1024 * 1024;
/// The default shutdown grace: 30 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long the accept loop waits after `accept` failed (out of file
/// descriptors and the like) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An HTTP/1 and HTTP/2 server with the connection limits of the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct Server {
    header_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    ping_interval: Duration,
    max_connections: usize,
    read_budget: usize,
    shutdown_grace: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// A server with the default limits.
    pub fn new() -> Self {
        Server {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_budget: DEFAULT_READ_BUDGET,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// How long a connection has, from being accepted, to send a whole
    /// request head, and each later head on it from its start. At least 1 ms.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a connection may stay open with no request in flight.
    /// At least 1 ms.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a response may wait for its client to take more of it before
    /// the connection is closed. At least 1 ms.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The interval between HTTP/2 keep-alive pings; a ping unanswered as long
    /// closes the connection. At least 1 ms.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Open connections at most. At least 1.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// Bytes all connections together read from their sockets at once, at
    /// most; each reads its share (at least 16 KiB).
    pub fn read_budget(mut self, bytes: usize) -> Self {
        self.read_budget = bytes;
        self
    }

    /// How long shutdown lets requests in flight finish.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves `service` on `listener` until `shutdown` completes, then stops
    /// accepting, lets requests in flight finish for up to the shutdown grace,
    /// closes what is left and returns.
    pub async fn serve<S, B, F>(&self, listener: TcpListener, service: S, shutdown: F)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(self.ping_interval)
            .keep_alive_timeout(self.ping_interval);
        let shared = Arc::new(Shared {
            builder,
            limits: self.clone(),
            open: Arc::new(AtomicUsize::new(0)),
        });
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let (stopping, stop_watch) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failing = false;
        loop {
            // Finished connections are reaped as the loop goes, so the set
            // holds only open ones.
            while connections.try_join_next().is_some() {}
            let slot = tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break, // never closed
                },
                () = shutdown.as_mut() => break,
            };
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        failing = false;
                        stream
                    }
                    Err(error) => {
                        // Once per run of failures, not ten times a second.
                        if !failing {
                            tracing::warn!(%error, "accept failed; serving the open connections");
                        }
                        failing = true;
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                            () = shutdown.as_mut() => break,
                        }
                    }
                },
                () = shutdown.as_mut() => break,
            };
            let connection = Connection {
                shared: Arc::clone(&shared),
                stop: stop_watch.clone(),
                _slot: slot,
            };
            connections.spawn(connection.serve(stream, service.clone()));
        }
        drop(listener);
        let _ = stopping.send(true);
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "requests in flight did not finish within the shutdown grace; closing them"
            );
            connections.shutdown().await;
        }
    }
}

/// What every connection of one [`Server::serve`] call shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    limits: Server,
    open: Arc<AtomicUsize>,
}

/// One accepted connection and what it holds while it is open.
struct Connection {
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    /// Its place among the open connections, given back when it closes.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    /// Serves the connection until it closes, or until one of its timers
    /// closes it.
    async fn serve<S, B>(mut self, mut stream: TcpStream, service: S)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limits = &self.shared.limits;
        let head_deadline = Instant::now() + limits.header_timeout;
        let _ = stream.set_nodelay(true);
        let first = tokio::select! {
            first = tokio::time::timeout_at(head_deadline, read_first_bytes(&mut stream)) => first,
            _ = self.stop.changed() => return,
        };
        let Ok(Some(first)) = first else {
            return;
        };
        let activity = Activity::new();
        let service = TowerToHyperService::new(Tracking::new(service, &activity));
        let io = TokioIo::new(SharedReads::new(
            stream,
            first,
            &self.shared.open,
            limits.read_budget,
        ));
        let connection = self
            .shared
            .builder
            .serve_connection_with_upgrades(io, service);
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        loop {
            let now = Instant::now();
            // The next moment a timer may have something to judge. State
            // changes do not wake this loop, so it looks again at least once
            // per idle or write timeout.
            let mut wake = now + limits.idle_timeout.min(limits.write_timeout);
            if !activity.begun() {
                if head_deadline <= now {
                    tracing::debug!("no request head within the header timeout; closing");
                    return;
                }
                wake = wake.min(head_deadline);
            }
            if let Some(stalled_at) = activity.write_deadline(limits.write_timeout) {
                if stalled_at <= now {
                    tracing::debug!("the client stopped taking its answer; closing");
                    return;
                }
                wake = wake.min(stalled_at);
            }
            if !closing {
                if let Some(idle_at) = activity.idle_deadline(limits.idle_timeout) {
                    if idle_at <= now {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                        continue;
                    }
                    wake = wake.min(idle_at);
                }
            }
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}
