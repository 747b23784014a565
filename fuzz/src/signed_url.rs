//! The `signed_url` target: request targets through
//! [`SignedUploadLayer::verify`] with a fixed key and clock.

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::{Method, Uri};
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{
    Error, Expiry, SignedMethod, SignedUploadLayer, SigningKey, UploadPath, DEFAULT_MAX_LIFETIME,
};

use crate::{FixedClock, NOW};

/// The key the layer signs and verifies with.
pub const KEY: &str = "signed url fuzz key";

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

fn layer() -> SignedUploadLayer {
    SignedUploadLayer::new(
        SigningKey::new(KEY).expect("the key is not empty"),
        MemoryStorage::new(),
    )
    .clock(FixedClock)
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
        } => {
            let Some(path) = UploadPath::new(&segments.join("/")) else {
                return;
            };
            signed(&layer, &path, *get, *expiry, *change);
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
/// within the lifetime; an expired or too distant one is refused for that; and
/// no one-byte change verifies, except a change that keeps the decoded
/// signature (see [`same_signature`]).
fn signed(
    layer: &SignedUploadLayer,
    path: &UploadPath,
    get: bool,
    expiry: ExpiryChoice,
    change: Option<(u16, u8)>,
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
    let url = layer.signer().sign(
        path,
        signed_method,
        Expiry::At(UNIX_EPOCH + Duration::from_secs(at)),
    );
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
