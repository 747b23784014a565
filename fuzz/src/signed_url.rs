//! The `signed_url` target: request targets through
//! [`SignedUploadLayer::verify`] with fixed keys and clock. URLs are minted
//! with arbitrary [`UrlOptions`] (signed `max_size`, `type`, `kid`).

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::{Method, Uri};
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{
    ConfigError, Error, Expiry, SignedMethod, SignedUploadLayer, Signer, SigningKey, UploadPath,
    UrlOptions, DEFAULT_MAX_LIFETIME,
};

use crate::{FixedClock, NOW};

/// The key the layer signs with (the first of [`KEYS`]).
pub const KEY: &str = "signed url fuzz key";
/// The layer's keys, in order: (secret, id). The first signs; all verify.
/// Ids one byte apart, and a key without id.
pub const KEYS: [(&str, Option<&str>); 4] = [
    (KEY, Some("k-1")),
    ("second fuzz key", Some("k-2")),
    ("third fuzz key", None),
    ("fourth fuzz key", Some("2025-06.x~y_z")),
];

/// Type patterns a URL may sign: a small set, or any string (most of which
/// the signer refuses).
#[derive(Arbitrary, Debug, Clone)]
pub enum TypeChoice {
    AnyImage,
    Png,
    PngOrMp4,
    Anything,
    Svg,
    Upper,
    Encoded,
    Raw(String),
}

impl TypeChoice {
    fn text(&self) -> &str {
        match self {
            TypeChoice::AnyImage => "image/*",
            TypeChoice::Png => "image/png",
            TypeChoice::PngOrMp4 => "image/png,video/mp4",
            TypeChoice::Anything => "*/*",
            TypeChoice::Svg => "image/svg+xml",
            TypeChoice::Upper => "Image/PNG, video/*",
            TypeChoice::Encoded => "image%2Fpng",
            TypeChoice::Raw(text) => text,
        }
    }
}

/// What the URL carries besides path, method and expiry.
#[derive(Arbitrary, Debug, Clone)]
pub struct OptionsChoice {
    max_size: Option<u64>,
    types: Option<TypeChoice>,
    key_id: bool,
    /// Which of [`KEYS`] signs (the layer's own signer uses the first).
    signer: u8,
}

#[derive(Arbitrary, Debug)]
pub enum SignedUrlInput {
    /// Any request target, as bytes.
    Raw { target: Vec<u8> },
    /// A URL the signer made for a path of these segments, then maybe one byte changed.
    Signed {
        segments: Vec<String>,
        get: bool,
        expiry: ExpiryChoice,
        change: Option<(u16, u8)>,
        options: Option<OptionsChoice>,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ExpiryChoice {
    /// `offset` (modulo the lifetime + 1) seconds after now: valid.
    Within(u32),
    /// Before now.
    Expired(u32),
    /// Further ahead than the maximum lifetime.
    TooFar(u32),
}

fn key(index: usize) -> SigningKey {
    let (secret, id) = KEYS[index];
    let key = SigningKey::new(secret).expect("the key is not empty");
    match id {
        Some(id) => key.with_id(id).expect("the id is valid"),
        None => key,
    }
}

fn layer() -> SignedUploadLayer {
    let mut layer = SignedUploadLayer::new(key(0), MemoryStorage::new()).clock(FixedClock);
    for index in 1..KEYS.len() {
        layer = layer.verify_key(key(index));
    }
    layer
}

pub fn run(input: &SignedUrlInput) {
    let layer = layer();
    match input {
        SignedUrlInput::Raw { target } => raw(&layer, target),
        SignedUrlInput::Signed {
            segments,
            get,
            expiry,
            change,
            options,
        } => {
            let Some(path) = UploadPath::new(&segments.join("/")) else {
                return;
            };
            signed(&layer, &path, *get, *expiry, *change, options.as_ref());
        }
    }
}

/// Any target: never panics; `GET` and `HEAD` (both need a `get` URL) get the
/// same verdict; methods other than `GET`, `HEAD` and `PUT` are `405` before
/// anything else is looked at.
fn raw(layer: &SignedUploadLayer, target: &[u8]) {
    let Ok(uri) = Uri::try_from(target) else {
        return;
    };
    let put = layer.verify(&Method::PUT, &uri);
    let get = layer.verify(&Method::GET, &uri);
    let head = layer.verify(&Method::HEAD, &uri);
    assert_eq!(get, head, "{uri}");
    if let (Ok(a), Ok(b)) = (&put, &get) {
        panic!("{uri} verified for both put ({a:?}) and get ({b:?})");
    }
    assert_eq!(
        layer.verify(&Method::POST, &uri),
        Err(Error::MethodNotAllowed)
    );
}

/// The base64 alphabet value of a signature character (URL-safe or standard).
fn base64_value(byte: u8) -> Option<u8> {
    Some(match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'-' | b'+' => 62,
        b'_' | b'/' => 63,
        _ => return None,
    })
}

/// A signed URL verifies for its own method (and only that), at any expiry
/// within the lifetime, whichever configured key signed it; an expired or too
/// distant one is refused for that; a `get` URL with a policy is refused by
/// the signer; a `kid` naming another configured key never verifies; and no
/// one-byte change (path, expiry, method, policy, kid) verifies, except a
/// change that keeps the decoded signature (see [`same_signature`]).
fn signed(
    layer: &SignedUploadLayer,
    path: &UploadPath,
    get: bool,
    expiry: ExpiryChoice,
    change: Option<(u16, u8)>,
    options: Option<&OptionsChoice>,
) {
    let lifetime = DEFAULT_MAX_LIFETIME.as_secs();
    let (at, wanted) = match expiry {
        ExpiryChoice::Within(offset) => (NOW + u64::from(offset) % (lifetime + 1), None),
        ExpiryChoice::Expired(back) => (NOW - 1 - u64::from(back) % NOW, Some(Error::UrlExpired)),
        ExpiryChoice::TooFar(ahead) => (
            NOW + lifetime + 1 + u64::from(ahead),
            Some(Error::ExpiryTooFar),
        ),
    };
    let (signed_method, method, other) = if get {
        (SignedMethod::Get, Method::GET, Method::PUT)
    } else {
        (SignedMethod::Put, Method::PUT, Method::GET)
    };
    let expiry = Expiry::At(UNIX_EPOCH + Duration::from_secs(at));
    let (signer_index, url_options) = match options {
        None => (0, UrlOptions::new()),
        Some(choice) => {
            let mut url_options = UrlOptions::new();
            if let Some(max_size) = choice.max_size {
                url_options = url_options.max_size(max_size);
            }
            if let Some(types) = &choice.types {
                match url_options.clone().types(types.text()) {
                    Ok(with) => url_options = with,
                    Err(error) => {
                        assert_eq!(error, ConfigError::TypePattern, "{types:?}");
                        return;
                    }
                }
            }
            if choice.key_id {
                url_options = url_options.key_id();
            }
            (usize::from(choice.signer) % KEYS.len(), url_options)
        }
    };
    let signer = if signer_index == 0 {
        layer.signer()
    } else {
        Signer::new(key(signer_index)).clock(FixedClock)
    };
    let has_policy = options.is_some_and(|c| c.max_size.is_some() || c.types.is_some());
    let has_kid = options.is_some_and(|c| c.key_id);
    let url = match signer.sign_with(path, signed_method, expiry, &url_options) {
        Ok(url) => {
            assert!(
                !(get && has_policy),
                "a get URL with a policy signed: {url}"
            );
            assert!(
                !has_kid || KEYS[signer_index].1.is_some(),
                "a kid for a key without id: {url}"
            );
            url
        }
        Err(ConfigError::PolicyOnGet) if get && has_policy => return,
        Err(ConfigError::KeyId) if has_kid && KEYS[signer_index].1.is_none() => return,
        Err(error) => panic!("the signer refused {url_options:?} for {signed_method:?}: {error}"),
    };
    let target = url.path_and_query();
    let uri: Uri = target
        .parse()
        .unwrap_or_else(|e| panic!("the signer made an invalid target {target}: {e}"));
    match wanted {
        None => {
            assert_eq!(layer.verify(&method, &uri).as_ref(), Ok(path), "{target}");
            if get {
                assert_eq!(layer.verify(&Method::HEAD, &uri).as_ref(), Ok(path));
            }
            assert_eq!(
                layer.verify(&other, &uri),
                Err(Error::MethodNotSigned),
                "{target}"
            );
        }
        Some(error) => {
            assert_eq!(layer.verify(&method, &uri), Err(error), "{target}");
            return;
        }
    }
    if has_kid {
        kid_swaps(layer, &method, target, signer_index);
    }
    let Some((index, byte)) = change else {
        return;
    };
    let original = target.as_bytes();
    let index = usize::from(index) % original.len();
    if original[index] == byte {
        return;
    }
    let mut changed = original.to_vec();
    changed[index] = byte;
    let Ok(changed_uri) = Uri::try_from(changed.as_slice()) else {
        return; // not a request target at all: no server would see it
    };
    let verdict = layer.verify(&method, &changed_uri);
    if same_signature(original, index, byte) {
        return; // may verify, or be refused: both are right
    }
    assert!(
        verdict.is_err(),
        "changed byte {index} of {target} to {:?}: {} verified as {verdict:?}",
        byte as char,
        String::from_utf8_lossy(&changed),
    );
}

/// A `kid` that names any other configured key (or no key at all) never
/// verifies: only the named key is tried, and it did not sign.
fn kid_swaps(layer: &SignedUploadLayer, method: &Method, target: &str, signer: usize) {
    let own = KEYS[signer]
        .1
        .expect("a URL with a kid was signed by a key with an id");
    let mark = format!("&kid={own}&signature=");
    assert!(target.contains(&mark), "{target} lacks {mark}");
    let others = KEYS
        .iter()
        .enumerate()
        .filter(|&(index, _)| index != signer)
        .filter_map(|(_, (_, id))| *id)
        .chain(["unknown-key"]);
    for other in others {
        let swapped = target.replacen(&mark, &format!("&kid={other}&signature="), 1);
        let uri: Uri = swapped.parse().expect("a kid is a valid query value");
        assert_eq!(
            layer.verify(method, &uri),
            Err(Error::SignatureInvalid),
            "{swapped}"
        );
    }
}

/// Whether replacing `target[index]` with `byte` keeps the request's signature
/// *value* equal to the original one after lenient decoding. A one-byte change
/// anywhere else (path, `?`, `expiry`, `method`, any name or separator) changes
/// the signed string or the query's shape, and must never verify. Inside the
/// signature value the equivalent spellings are:
///
/// - the same position in the other alphabet (`-` for `+`, `_` for `/`): the
///   verifier accepts standard and URL-safe base64 alike;
/// - in the last of the 43 characters, one whose 6-bit value differs only in
///   the 2 low bits, which 32 bytes do not use (the verifier may accept or
///   refuse such non-canonical spellings).
///
/// A single byte cannot form a `%XX` escape or padding of the same value.
fn same_signature(target: &[u8], index: usize, byte: u8) -> bool {
    const MARK: &[u8] = b"&signature=";
    let Some(start) = target
        .windows(MARK.len())
        .rposition(|w| w == MARK)
        .map(|at| at + MARK.len())
    else {
        return false;
    };
    if index < start {
        return false;
    }
    let (Some(old), Some(new)) = (base64_value(target[index]), base64_value(byte)) else {
        return false;
    };
    old == new || (index == target.len() - 1 && old >> 2 == new >> 2)
}
