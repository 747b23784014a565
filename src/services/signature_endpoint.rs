//! [`SignatureEndpoint`]: mints signed URLs for callers holding the API key.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_service::Service;

use crate::clock::unix_seconds;
use crate::envelope::{self, Meta};
use crate::EnvelopeBody;
use crate::{
    Clock, Error, SignedMethod, SignedUploadLayer, Signer, SystemClock, UploadPath, UrlOptions,
};

/// The largest request body the endpoint reads.
const MAX_BODY: usize = 16 * 1024;

/// A `POST /signatures` endpoint, shaped like ittybit's: a caller holding the
/// API key as `Authorization: Bearer KEY` sends
/// `{"filename", "folder"?, "method": "put"|"get", "expiry"?, "max_size"?, "type"?}`
/// and gets the envelope with `data: {"url", "expiry", "method", "path"}`.
/// `max_size` and `type` become the URL's signed policy (put URLs only).
///
/// `expiry` is unix seconds; without it URLs live for the default lifetime
/// (one hour). An expiry in the past or beyond the maximum lifetime (the
/// layer's with [`SignatureEndpoint::for_layer`], 7 days by default; see
/// [`SignatureEndpoint::max_lifetime`]) is refused. Without a valid key the answer is the `401 unauthorized` envelope.
///
/// # Example
///
/// ```
/// use tower_signed_upload::{services::SignatureEndpoint, storage::MemoryStorage, SignedUploadLayer, SigningKey};
///
/// let layer = SignedUploadLayer::new(SigningKey::new("project key")?, MemoryStorage::new());
/// let endpoint = SignatureEndpoint::for_layer(&layer, "api key");
/// # drop(endpoint);
/// # Ok::<(), tower_signed_upload::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SignatureEndpoint {
    signer: Signer,
    api_key: Arc<[u8; 32]>,
    clock: Arc<dyn Clock>,
    default_lifetime: Duration,
    max_lifetime: Duration,
    /// The layer's maximum lifetime, for an endpoint made with
    /// [`SignatureEndpoint::for_layer`]: `max_lifetime` never exceeds it.
    ceiling: Option<Duration>,
}

#[derive(Deserialize)]
struct SignatureRequest {
    filename: String,
    #[serde(default)]
    folder: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    expiry: Option<u64>,
    #[serde(default)]
    max_size: Option<u64>,
    #[serde(default, rename = "type")]
    types: Option<String>,
}

#[derive(Serialize)]
struct SignatureData<'a> {
    url: &'a str,
    expiry: u64,
    method: &'static str,
    path: &'a str,
}

impl SignatureEndpoint {
    /// Mints URLs with `signer` for callers that present `api_key`.
    pub fn new(signer: Signer, api_key: impl AsRef<[u8]>) -> Self {
        SignatureEndpoint {
            signer,
            api_key: Arc::new(Sha256::digest(api_key.as_ref()).into()),
            clock: Arc::new(SystemClock),
            default_lifetime: Duration::from_secs(3600),
            max_lifetime: crate::DEFAULT_MAX_LIFETIME,
            ceiling: None,
        }
    }

    /// Mints URLs with the layer's signer (first key, public base, clock),
    /// and never further ahead than the layer's maximum lifetime: a URL it
    /// mints is one the layer accepts.
    pub fn for_layer(layer: &SignedUploadLayer, api_key: impl AsRef<[u8]>) -> Self {
        let mut endpoint = SignatureEndpoint::new(layer.signer(), api_key);
        endpoint.clock = Arc::clone(&layer.config.clock);
        endpoint.max_lifetime = layer.config.verifier.max_lifetime;
        endpoint.ceiling = Some(layer.config.verifier.max_lifetime);
        endpoint
    }

    /// How long URLs live when the caller names no expiry (one hour by
    /// default); never longer than [`max_lifetime`](Self::max_lifetime), so a
    /// request that names no expiry is never refused for one it did not ask.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// The furthest ahead a caller may set the expiry; further is answered
    /// `403 expiry_too_far`.
    ///
    /// For an endpoint made with [`SignatureEndpoint::for_layer`] this can
    /// only shorten the layer's maximum lifetime: a longer `lifetime` is
    /// clamped to it, since the layer would refuse (`403 expiry_too_far`)
    /// every URL minted past it. An endpoint made with
    /// [`SignatureEndpoint::new`] knows no layer: give it the maximum
    /// lifetime of the layer that verifies its URLs.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_signed_upload::{services::SignatureEndpoint, storage::MemoryStorage, SignedUploadLayer, SigningKey};
    ///
    /// let day = Duration::from_secs(24 * 3600);
    /// let layer = SignedUploadLayer::new(SigningKey::new("project key")?, MemoryStorage::new())
    ///     .max_lifetime(day);
    /// // Asking for 30 days mints URLs of at most the layer's one day.
    /// let endpoint = SignatureEndpoint::for_layer(&layer, "api key").max_lifetime(30 * day);
    /// assert!(format!("{endpoint:?}").contains("max_lifetime: 86400s"));
    /// # Ok::<(), tower_signed_upload::ConfigError>(())
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = self
            .ceiling
            .map_or(lifetime, |ceiling| lifetime.min(ceiling));
        self
    }

    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(key) = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Digests of equal length, compared in constant time: the timing
        // tells nothing about the key, not even its length.
        let digest: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        digest.ct_eq(&*self.api_key).into()
    }

    fn mint(&self, body: &[u8]) -> Result<(String, u64, SignedMethod, UploadPath), Error> {
        let asked: SignatureRequest =
            serde_json::from_slice(body).map_err(|_| Error::BodyInvalid)?;
        let method = match asked.method.as_deref() {
            None | Some("put") => SignedMethod::Put,
            Some("get") => SignedMethod::Get,
            Some(_) => return Err(Error::BodyInvalid),
        };
        let joined = match asked.folder.as_deref().map(|f| f.trim_matches('/')) {
            Some(folder) if !folder.is_empty() => format!("{folder}/{}", asked.filename),
            _ => asked.filename,
        };
        let path = UploadPath::new(&joined).ok_or(Error::PathInvalid)?;
        let now = unix_seconds(self.clock.now());
        let expiry = asked.expiry.unwrap_or_else(|| {
            let lifetime = self.default_lifetime.min(self.max_lifetime);
            now.saturating_add(lifetime.as_secs())
        });
        if expiry < now {
            return Err(Error::UrlExpired);
        }
        if expiry - now > self.max_lifetime.as_secs() {
            return Err(Error::ExpiryTooFar);
        }
        let mut options = UrlOptions::new();
        if let Some(max_size) = asked.max_size {
            options = options.max_size(max_size);
        }
        if let Some(types) = &asked.types {
            options = options.types(types).map_err(|_| Error::BodyInvalid)?;
        }
        let expires = std::time::UNIX_EPOCH + Duration::from_secs(expiry);
        let url = self
            .signer
            .sign_with(&path, method, expires, &options)
            .map_err(|_| Error::BodyInvalid)?;
        Ok((url.into(), expiry, method, path))
    }
}

impl fmt::Debug for SignatureEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureEndpoint")
            .field("signer", &self.signer)
            .field("api_key", &"<redacted>")
            .field("default_lifetime", &self.default_lifetime)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl<B> Service<Request<B>> for SignatureEndpoint
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<crate::storage::BoxError>,
{
    type Response = Response<EnvelopeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<EnvelopeBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let endpoint = self.clone();
        Box::pin(async move {
            let meta = Meta::of_request(&request);
            let answer = if request.method() != Method::POST {
                Err(Error::MethodNotAllowed)
            } else if !endpoint.authorized(&request) {
                Err(Error::Unauthorized)
            } else {
                match Limited::new(request.into_body(), MAX_BODY).collect().await {
                    Ok(body) => endpoint.mint(&body.to_bytes()),
                    Err(_) => Err(Error::BodyInvalid),
                }
            };
            let response = match answer {
                Ok((url, expiry, method, path)) => {
                    let data = SignatureData {
                        url: &url,
                        expiry,
                        method: method.as_str(),
                        path: path.as_str(),
                    };
                    envelope::data(&meta, StatusCode::OK, &data)
                }
                Err(error) => {
                    let mut response = envelope::error(&meta, error);
                    if error == Error::MethodNotAllowed {
                        response
                            .headers_mut()
                            .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
                    }
                    response
                }
            };
            Ok(response.map(EnvelopeBody::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    #[test]
    fn only_the_api_key_as_bearer_is_authorized() {
        let endpoint =
            SignatureEndpoint::new(Signer::new(SigningKey::new("k").unwrap()), "api key");
        let with = |value: Option<&str>| {
            let mut request = Request::post("/signatures");
            if let Some(value) = value {
                request = request.header(header::AUTHORIZATION, value);
            }
            endpoint.authorized(&request.body(()).unwrap())
        };
        assert!(with(Some("Bearer api key")));
        assert!(with(Some("Bearer api key ")));
        for refused in [
            None,
            Some(""),
            Some("api key"),
            Some("Bearer "),
            Some("Bearer api ke"),
            Some("Bearer api keyy"),
            Some("Bearer API KEY"),
            Some("Basic api key"),
        ] {
            assert!(!with(refused), "{refused:?}");
        }
    }

    /// A clock stopped at `NOW`.
    #[derive(Debug)]
    struct Stopped;

    const NOW: u64 = 1_750_000_000;

    impl Clock for Stopped {
        fn now(&self) -> std::time::SystemTime {
            std::time::UNIX_EPOCH + Duration::from_secs(NOW)
        }
    }

    /// Asks `endpoint` for a put URL of `a.bin` expiring at `expiry`.
    fn ask(endpoint: &SignatureEndpoint, expiry: u64) -> Result<String, Error> {
        let body = format!(r#"{{"filename": "a.bin", "expiry": {expiry}}}"#);
        endpoint.mint(body.as_bytes()).map(|(url, ..)| url)
    }

    #[test]
    fn max_lifetime_never_exceeds_the_layers() {
        let hour = Duration::from_secs(3600);
        let layer = SignedUploadLayer::new(
            SigningKey::new("k").unwrap(),
            crate::storage::MemoryStorage::new(),
        )
        .clock(Stopped)
        .max_lifetime(hour);
        let verifies = |url: &str| {
            let target = url.strip_prefix("http://localhost").unwrap();
            layer.verify(&Method::PUT, &target.parse().unwrap())
        };
        let endpoint = SignatureEndpoint::for_layer(&layer, "api key").max_lifetime(30 * 24 * hour);
        assert_eq!(endpoint.max_lifetime, hour);
        // Up to the layer's maximum: minted, and the layer takes the URL.
        let url = ask(&endpoint, NOW + 3600).unwrap();
        assert_eq!(verifies(&url).unwrap().as_str(), "a.bin");
        // Past it: refused here, as the layer would refuse the URL.
        assert_eq!(ask(&endpoint, NOW + 3601), Err(Error::ExpiryTooFar));
        let past = layer.signer().sign(
            &UploadPath::new("a.bin").unwrap(),
            SignedMethod::Put,
            hour + Duration::from_secs(1),
        );
        assert_eq!(verifies(past.as_str()), Err(Error::ExpiryTooFar));

        // Shorter than the layer's is kept.
        let endpoint = SignatureEndpoint::for_layer(&layer, "api key").max_lifetime(hour / 2);
        assert_eq!(ask(&endpoint, NOW + 1800).map(|_| ()), Ok(()));
        assert_eq!(ask(&endpoint, NOW + 1801), Err(Error::ExpiryTooFar));

        // An endpoint without a layer takes the lifetime it is given.
        let endpoint =
            SignatureEndpoint::new(Signer::new(SigningKey::new("k").unwrap()), "api key")
                .max_lifetime(30 * 24 * hour);
        assert_eq!(endpoint.max_lifetime, 30 * 24 * hour);
    }

    #[test]
    fn without_an_expiry_urls_live_the_default_lifetime_within_the_maximum() {
        let minutes = |n: u64| Duration::from_secs(60 * n);
        let layer = SignedUploadLayer::new(
            SigningKey::new("k").unwrap(),
            crate::storage::MemoryStorage::new(),
        )
        .clock(Stopped)
        .max_lifetime(minutes(10));
        let expiry_of = |endpoint: &SignatureEndpoint| {
            endpoint
                .mint(br#"{"filename": "a.bin"}"#)
                .map(|(_, expiry, ..)| expiry)
        };
        // The default hour is past the layer's ten minutes: the URL lives ten.
        let endpoint = SignatureEndpoint::for_layer(&layer, "api key");
        assert_eq!(expiry_of(&endpoint), Ok(NOW + 600));
        let url = endpoint.mint(br#"{"filename": "a.bin"}"#).unwrap().0;
        let target = url.strip_prefix("http://localhost").unwrap();
        assert!(layer.verify(&Method::PUT, &target.parse().unwrap()).is_ok());
        // A shorter default is kept, and so is a shorter maximum set later.
        let endpoint = SignatureEndpoint::for_layer(&layer, "api key").default_lifetime(minutes(5));
        assert_eq!(expiry_of(&endpoint), Ok(NOW + 300));
        let endpoint = SignatureEndpoint::for_layer(&layer, "api key").max_lifetime(minutes(2));
        assert_eq!(expiry_of(&endpoint), Ok(NOW + 120));
    }
}
