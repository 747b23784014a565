//! The spellings of one signature a verifier accepts (docs/protocol.md#signed-urls):
//! the signer's unpadded base64url, the standard alphabet (`+`, `/`),
//! percent-encoded or not, padded with `=` or `%3D`, all sent over HTTP; and a
//! forged signature refused whichever way it is spelled.

use crate::common::*;
use tower_signed_upload::SignedMethod;

/// The fixed expiry of every URL here, so the signatures do not move.
const EXPIRY: u64 = NOW + 3600;

/// A signed `put` URL of `server` whose signature holds both a `-` and a `_`,
/// split into everything up to `signature=` and the signature.
fn url_with_dash_and_underscore(server: &TestServer) -> (String, String) {
    (0..1000)
        .map(|n| server.url_expiring_at(&format!("spelling/{n}.bin"), SignedMethod::Put, EXPIRY))
        .find_map(|url| {
            let (head, signature) = url.split_once("signature=")?;
            (signature.contains('-') && signature.contains('_'))
                .then(|| (format!("{head}signature="), signature.to_owned()))
        })
        .expect("one of 1000 signatures holds both a `-` and a `_`")
}

/// `signature` (unpadded base64url) spelled every other way a verifier takes.
fn respellings(signature: &str) -> Vec<(&'static str, String)> {
    let standard: String = signature
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let encoded = standard.replace('+', "%2B").replace('/', "%2F");
    let lower = standard.replace('+', "%2b").replace('/', "%2f");
    vec![
        ("standard alphabet", standard.clone()),
        ("standard alphabet, percent-encoded", encoded.clone()),
        ("standard alphabet, lowercase percent-encoding", lower),
        ("base64url, padded", format!("{signature}=")),
        ("base64url, padded with %3D", format!("{signature}%3D")),
        ("standard alphabet, padded", format!("{standard}=")),
        (
            "standard alphabet, percent-encoded, padded with %3D",
            format!("{encoded}%3D"),
        ),
    ]
}

#[tokio::test]
async fn signature_in_standard_alphabet_percent_encoded_or_padded_is_accepted() {
    let server = TestServer::start().await;
    let (head, signature) = url_with_dash_and_underscore(&server);
    let path = target(&head).split_once('?').unwrap().0[1..].to_owned();

    let standard = &respellings(&signature)[0].1;
    assert!(
        standard.contains('+') && standard.contains('/'),
        "{signature} re-spelled {standard}"
    );
    let original = send(
        &client(),
        put(&format!("{head}{signature}"), &[], "as signed"),
    )
    .await;
    assert_eq!(original.status, 201, "{:?}", original.body);
    for (n, (spelling, respelled)) in respellings(&signature).into_iter().enumerate() {
        assert_ne!(respelled, signature, "{spelling} changes nothing");
        let body = format!("upload {n}");
        let answer = send(
            &client(),
            put(&format!("{head}{respelled}"), &[], body.clone()),
        )
        .await;
        assert_eq!(
            answer.status, 201,
            "{spelling} ({respelled}): {:?}",
            answer.body
        );
        assert_eq!(
            server.storage.file(&path).as_deref(),
            Some(body.as_bytes()),
            "{spelling}"
        );
    }
    assert_eq!(server.calls(), 1 + respellings(&signature).len());
}

#[tokio::test]
async fn forged_signature_is_403_however_it_is_spelled() {
    let server = TestServer::start().await;
    let (head, signature) = url_with_dash_and_underscore(&server);
    // One letter or digit changed: still 43 characters of base64url (and the
    // same `-` and `_`, so the re-spellings differ), another MAC.
    let at = signature.find(|c: char| c.is_ascii_alphanumeric()).unwrap();
    let other = if &signature[at..=at] == "A" { "B" } else { "A" };
    let forged = format!("{}{other}{}", &signature[..at], &signature[at + 1..]);
    assert!(forged.contains('-') && forged.contains('_'), "{forged}");
    let path = target(&head).split_once('?').unwrap().0.to_owned();
    let mut spellings = respellings(&forged);
    spellings.push(("base64url", forged.clone()));
    for (spelling, respelled) in spellings {
        let answer = send(&client(), put(&format!("{head}{respelled}"), &[], "forged")).await;
        assert_eq!(
            answer.status, 403,
            "{spelling} ({respelled}): {:?}",
            answer.body
        );
        assert_rejected(&answer, 403, "signature_invalid", "PUT", &path);
        // A chunk with the forged signature opens no session either.
        let chunk = put(
            &format!("{head}{respelled}"),
            &[("content-range", "bytes 0-5/10")],
            "forged",
        );
        let answer = send(&client(), chunk).await;
        assert_rejected(&answer, 403, "signature_invalid", "PUT", &path);
    }
    assert_eq!(server.calls(), 0);
    assert_eq!(server.storage.file(&path[1..]), None);
    assert_eq!(server.storage.session_count(), 0);
}
