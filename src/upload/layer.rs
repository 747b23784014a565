//! [`SignedUploadLayer`] and its settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::stream::Timers;
use crate::signing::{parse_public_base, Verifier};
use crate::storage::Storage;
use crate::{Clock, ConfigError, SignedUpload, Signer, SigningKey, SystemClock};

/// The default largest file: 5 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The default longest URL lifetime: 7 days.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The default idle body timeout: 30 seconds without a byte.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The default floor rate of a request body: 1 KiB/s.
const DEFAULT_MIN_BODY_RATE: u64 = 1024;
/// The default most disjoint ranges per session.
pub const DEFAULT_MAX_RANGES: usize = 10_000;

/// Verifies signed URLs and takes uploads in front of an inner service.
///
/// `PUT` requests are uploads: simple ones are streamed to storage and
/// committed; `Content-Range` chunks are stored in their session, and the chunk
/// that completes the file commits it. Once a file is committed the inner
/// service is called with the request's parts, an empty body and the
/// [`UploadedFile`](crate::UploadedFile) in the extensions; its response is the
/// client's. `GET` and `HEAD` with a `get` URL go to the inner service with the
/// verified [`UploadPath`](crate::UploadPath) in the extensions. Everything else
/// is answered by the layer with a JSON envelope.
///
/// Cloning is cheap: the settings live behind one `Arc`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_signed_upload::{storage::MemoryStorage, SignedUploadLayer, SigningKey};
///
/// let layer = SignedUploadLayer::new(SigningKey::new("new secret")?, MemoryStorage::new())
///     .verify_key(SigningKey::new("old secret")?) // rotation: the first key signs
///     .max_lifetime(Duration::from_secs(24 * 3600))
///     .max_size(1024 * 1024 * 1024)
///     .public_base("https://files.example.com")?;
/// # Ok::<(), tower_signed_upload::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct SignedUploadLayer {
    pub(crate) config: Arc<Config>,
}

/// The layer's settings, shared by every service it makes.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) verifier: Verifier,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) public_base: String,
    pub(crate) max_size: u64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) body_timeout: Duration,
    pub(crate) min_body_rate: u64,
    pub(crate) max_ranges: usize,
    pub(crate) compute_sha256: bool,
}

impl Config {
    /// The timers of one request body.
    pub(crate) fn timers(&self) -> Timers {
        Timers::new(self.body_timeout, self.min_body_rate)
    }
}

impl SignedUploadLayer {
    /// A layer that signs and verifies with `key` and keeps uploads in `storage`,
    /// with the documented defaults: public base `http://localhost`, 5 GiB
    /// maximum file size, 7 days maximum URL lifetime, 30 s idle body timeout,
    /// a 1 KiB/s floor rate for bodies, 10,000 ranges per session, and the
    /// system clock.
    pub fn new(key: SigningKey, storage: impl Storage) -> Self {
        Self::with_storage(key, Arc::new(storage))
    }

    /// Like [`SignedUploadLayer::new`], with a shared `Arc<dyn Storage>`.
    pub fn with_storage(key: SigningKey, storage: Arc<dyn Storage>) -> Self {
        SignedUploadLayer {
            config: Arc::new(Config {
                verifier: Verifier {
                    keys: vec![key],
                    max_lifetime: DEFAULT_MAX_LIFETIME,
                },
                storage,
                public_base: "http://localhost".to_owned(),
                max_size: DEFAULT_MAX_SIZE,
                clock: Arc::new(SystemClock),
                body_timeout: DEFAULT_BODY_TIMEOUT,
                min_body_rate: DEFAULT_MIN_BODY_RATE,
                max_ranges: DEFAULT_MAX_RANGES,
                compute_sha256: false,
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Adds a key that verifies but does not sign: the old key during a rotation.
    pub fn verify_key(mut self, key: SigningKey) -> Self {
        self.config().verifier.keys.push(key);
        self
    }

    /// The scheme and authority of the URLs files are reached at, such as
    /// `https://files.example.com`; used for File objects' `url` and minted URLs.
    ///
    /// # Errors
    ///
    /// [`ConfigError::PublicBase`] unless it is an `http` or `https` origin.
    pub fn public_base(mut self, base: &str) -> Result<Self, ConfigError> {
        self.config().public_base = parse_public_base(base)?;
        Ok(self)
    }

    /// The largest file accepted, in bytes; larger ones are answered `413`.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.config().max_size = bytes;
        self
    }

    /// The furthest ahead a URL's expiry may be; further is answered `403 expiry_too_far`.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config().verifier.max_lifetime = lifetime;
        self
    }

    /// The clock for expiry checks and File times; tests pass a fixed one.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config().clock = Arc::new(clock);
        self
    }

    /// How long a request body may stall before the request is answered `408
    /// body_timeout`. The timer runs only while the layer waits for the
    /// client (it asked for the next bytes and none have come), never while it
    /// waits for its own storage.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.config().body_timeout = timeout;
        self
    }

    /// The slowest a request body may arrive, in bytes per second (default
    /// 1024; 0 turns the floor off). The rate is averaged over windows as long
    /// as the [body timeout](Self::body_timeout); the first window is spared
    /// (a slow start), and each later one that carries fewer bytes is answered
    /// `408 body_timeout`, so a trickle of a byte every few seconds is cut
    /// within about two windows. Like the idle timeout, it counts only the
    /// time the layer waits for the client, never the time it waits for its
    /// own storage.
    pub fn min_body_rate(mut self, bytes_per_second: u64) -> Self {
        self.config().min_body_rate = bytes_per_second;
        self
    }

    /// The most disjoint ranges one session may be split into (`400 too_many_ranges` past it).
    pub fn max_ranges(mut self, ranges: usize) -> Self {
        self.config().max_ranges = ranges.max(1);
        self
    }

    /// Whether every File object gets its `sha256`, computed while a simple
    /// upload streams and, for resumable uploads, by the storage backend at
    /// completion (the disk backend reads the file once more). Off by default:
    /// SHA-256 costs more CPU per byte than the rest of an upload. A File gets
    /// its `sha256` whenever the client sent a `Repr-Digest` with `sha-256` either way.
    pub fn compute_sha256(mut self, enabled: bool) -> Self {
        self.config().compute_sha256 = enabled;
        self
    }

    /// A signer with the first key, the public base and the clock of this layer.
    pub fn signer(&self) -> Signer {
        let signer =
            Signer::new(self.config.verifier.keys[0].clone()).clock(Arc::clone(&self.config.clock));
        signer
            .public_base(&self.config.public_base)
            .expect("the layer's public base was checked when it was set")
    }

    /// Verifies a request's method and target exactly as the layer does, and
    /// returns the verified path: for handlers that check URLs outside the layer.
    ///
    /// # Errors
    ///
    /// The [`Error`](crate::Error) the layer would answer with.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::{Method, Uri};
    /// use tower_signed_upload::{storage::MemoryStorage, SignedMethod, SignedUploadLayer, SigningKey, UploadPath};
    ///
    /// let layer = SignedUploadLayer::new(SigningKey::new("secret")?, MemoryStorage::new());
    /// let url = layer.signer().sign(&UploadPath::new("a.png").unwrap(), SignedMethod::Get, Duration::from_secs(60));
    /// let uri: Uri = url.path_and_query().parse().unwrap();
    /// assert_eq!(layer.verify(&Method::GET, &uri).unwrap().as_str(), "a.png");
    /// assert!(layer.verify(&Method::PUT, &uri).is_err());
    /// # Ok::<(), tower_signed_upload::ConfigError>(())
    /// ```
    pub fn verify(
        &self,
        method: &http::Method,
        uri: &http::Uri,
    ) -> Result<crate::UploadPath, crate::Error> {
        let wanted = super::action::signed_method(method)?;
        let config = &self.config;
        config
            .verifier
            .verify(uri.path(), uri.query(), wanted, config.clock.now())
            .map(|verified| verified.path)
    }

    /// The storage uploads go to.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.config.storage
    }
}

impl fmt::Debug for SignedUploadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.config, f)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedUploadLayer")
            .field("keys", &"<redacted>")
            .field("key_count", &self.verifier.keys.len())
            .field("max_lifetime", &self.verifier.max_lifetime)
            .field("storage", &self.storage)
            .field("public_base", &self.public_base)
            .field("max_size", &self.max_size)
            .field("clock", &self.clock)
            .field("body_timeout", &self.body_timeout)
            .field("min_body_rate", &self.min_body_rate)
            .field("max_ranges", &self.max_ranges)
            .field("compute_sha256", &self.compute_sha256)
            .finish()
    }
}

impl<S> Layer<S> for SignedUploadLayer {
    type Service = SignedUpload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignedUpload::new(inner, Arc::clone(&self.config))
    }
}
