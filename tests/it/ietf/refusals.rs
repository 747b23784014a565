//! Refusals at every interop version: a wrong offset, an inconsistent
//! length, an append to a completed upload, a length past the limit,
//! malformed or repeated headers, the signed `type`, and URLs that do not
//! allow the upload.

use http::Method;

use super::{url_for, Refusal, DRAFTS};
use crate::common::*;
use tower_signed_upload::{SignedMethod, UrlOptions};

/// A wrong `Upload-Offset`: `409` with the current offset (and the upload
/// said incomplete); the problem type, with both offsets, from version 6.
async fn wrong_offsets_are_409_with_the_offset(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let url = url_for(&server, draft, "offset.bin");
        draft.post(&url, Some(100), false, &bytes(10, 1)).await;
        for at in [20, 0, 9] {
            let wrong = draft.append(&url, at, false, &bytes(10, 1)).await;
            let json = draft.wrong_offset().check(&wrong);
            assert_eq!(super::upload_offset(&wrong), 10);
            assert!(!draft.says_complete(&wrong));
            if draft.wrong_offset().problem.is_some() {
                assert_eq!(json["expected-offset"], 10);
                assert_eq!(json["provided-offset"], at);
            }
        }
        assert_eq!(draft.offset(&url).await, 10);
    }
}

/// Every form of an inconsistent length: `400 total_mismatch`, the problem
/// type from version 7; nothing of the request is stored.
async fn inconsistent_lengths_are_400(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let refusal = draft.inconsistent_length();
        // Creations: a complete body short of Upload-Length, an incomplete
        // one past it.
        let url = url_for(&server, draft, "length.bin");
        refusal.check(&draft.post(&url, Some(100), true, &bytes(50, 1)).await);
        refusal.check(&draft.post(&url, Some(100), false, &bytes(101, 1)).await);
        Refusal::envelope(404, "upload_not_found").check_head(&draft.head(&url).await);

        let created = draft.post(&url, Some(100), false, b"").await;
        assert_eq!(created.status.as_u16(), 201, "{created:?}");
        // Appends: past the length, completing short of it, another length.
        refusal.check_append(draft, &draft.append(&url, 0, false, &bytes(101, 1)).await);
        refusal.check_append(draft, &draft.append(&url, 0, true, &bytes(50, 1)).await);
        let other = draft
            .append_with(
                &url,
                0,
                &[draft.complete(false), ("upload-length", "90")],
                &bytes(10, 1),
            )
            .await;
        refusal.check_append(draft, &other);
        assert_eq!(draft.offset(&url).await, 0);

        // No length known yet: one that the append's own bytes pass.
        let url = url_for(&server, draft, "length-late.bin");
        draft.post(&url, None, false, &bytes(10, 1)).await;
        let short = draft
            .append_with(
                &url,
                10,
                &[draft.complete(false), ("upload-length", "15")],
                &bytes(10, 1),
            )
            .await;
        refusal.check_append(draft, &short);
        assert_eq!(draft.offset(&url).await, 10);
    }
}

/// An append to a completed upload: `409 upload_complete` in the envelope
/// before version 6; the completed-upload problem (`400`) in 6 and 7; in
/// version 8 (drafts -10, -11) bytes are an inconsistent length and the
/// empty completing append sent again is `410`. The file stays as it was.
async fn appending_to_a_completed_upload_is_refused(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let path = format!("d/v{}/done.bin", draft.0);
        let url = server.put_url(&path, &UrlOptions::new());
        let data = bytes(20, 4);
        draft.post(&url, None, true, &data).await;
        let calls = server.calls();
        draft
            .completed_append(false)
            .check_append(draft, &draft.append(&url, 20, false, b"x").await);
        draft
            .completed_append(false)
            .check_append(draft, &draft.append(&url, 0, true, &data).await);
        draft
            .completed_append(true)
            .check_append(draft, &draft.append(&url, 20, true, b"").await);
        assert_eq!(server.file(&path).await, Some(data));
        assert_eq!(server.calls(), calls);
    }
}

/// A length past the size limit (the host's or the URL's), declared or
/// by the bytes sent: `413 too_large`, before any byte is stored.
async fn lengths_past_the_limit_are_413(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(1000)).await;
    let too_large = Refusal::envelope(413, "too_large");
    for draft in DRAFTS {
        for (options, max) in [
            (UrlOptions::new(), 1000),
            (UrlOptions::new().max_size(600), 600),
        ] {
            let path = format!("d/v{}/large{max}.bin", draft.0);
            let url = server.put_url(&path, &options);
            let over = bytes(max + 1, 1);
            // Creations: declared, a complete body, an incomplete one.
            too_large.check(&draft.post(&url, Some(max as u64 + 1), false, b"").await);
            too_large.check(&draft.post(&url, None, true, &over).await);
            too_large.check(&draft.post(&url, None, false, &over).await);
            Refusal::envelope(404, "upload_not_found").check_head(&draft.head(&url).await);

            let created = draft.post(&url, None, false, b"").await;
            assert_eq!(created.status.as_u16(), 201, "{created:?}");
            assert_eq!(
                created.header("upload-limit"),
                draft.limit(max as u64).as_deref()
            );
            // Appends: declared, and by the bytes.
            let declared = (max + 1).to_string();
            too_large.check_append(
                draft,
                &draft
                    .append_with(
                        &url,
                        0,
                        &[draft.complete(false), ("upload-length", &declared)],
                        b"",
                    )
                    .await,
            );
            too_large.check_append(draft, &draft.append(&url, 0, false, &over).await);
            too_large.check_append(draft, &draft.append(&url, 0, true, &over).await);
            assert_eq!(draft.offset(&url).await, 0);
            // The limit itself is allowed.
            let last = draft.append(&url, 0, true, &over[..max]).await;
            draft.check_completed(&last, max as u64);
            assert_eq!(server.file(&path).await.map(|file| file.len()), Some(max));
        }
    }
}

/// Malformed, repeated or missing protocol headers, another version, another
/// method, the media type from version 6: each refused, nothing stored.
async fn refusals_of_malformed_requests(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let invalid = Refusal::envelope(400, "header_invalid");
    for draft in DRAFTS {
        let url = url_for(&server, draft, "refused.bin");
        let (name, _) = draft.complete(true);
        // Creations: no completion header (the other versions' name is not
        // this one's), a malformed or repeated one, a bad Upload-Length.
        let other = if draft.0 == 3 {
            ("upload-complete", "?0")
        } else {
            ("upload-incomplete", "?1")
        };
        let creations: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![other],
            vec![(name, "1")],
            vec![(name, "?2")],
            vec![(name, "true")],
            vec![draft.complete(false), draft.complete(false)],
            vec![draft.complete(false), ("upload-length", "x")],
            vec![draft.complete(false), ("upload-length", "-1")],
            vec![
                draft.complete(false),
                ("upload-length", "10"),
                ("upload-length", "10"),
            ],
        ];
        for headers in creations {
            let answer = draft.send(Method::POST, &url, &headers, b"abc").await;
            assert_eq!(
                answer.status.as_u16(),
                400,
                "{draft:?} {headers:?}: {answer:?}"
            );
            invalid.check(&answer);
        }
        // The interop header repeated, or a version not served.
        let twice = draft
            .send(
                Method::POST,
                &url,
                &[draft.version(), draft.complete(false)],
                b"",
            )
            .await;
        invalid.check(&twice);
        for version in ["2", "4", "9", "x"] {
            let answer = send(
                &client(),
                crate::tus::tus(
                    Method::POST,
                    &url,
                    &[
                        ("upload-draft-interop-version", version),
                        draft.complete(false),
                    ],
                    bytes::Bytes::new(),
                ),
            )
            .await;
            Refusal::envelope(412, "version_unsupported").check(&answer);
        }
        Refusal::envelope(404, "upload_not_found").check_head(&draft.head(&url).await);
        // Appends to an upload never created.
        Refusal::envelope(404, "upload_not_found")
            .check_append(draft, &draft.append(&url, 0, false, b"x").await);

        draft.post(&url, None, false, b"abc").await;
        // Appends: no offset, a malformed or repeated one, a bad completion header.
        let mut appends: Vec<Vec<(&str, &str)>> = vec![
            vec![draft.complete(false)],
            vec![draft.complete(false), ("upload-offset", "x")],
            vec![draft.complete(false), ("upload-offset", "-3")],
            vec![
                draft.complete(false),
                ("upload-offset", "3"),
                ("upload-offset", "3"),
            ],
            vec![(name, "yes"), ("upload-offset", "3")],
            vec![
                draft.complete(false),
                draft.complete(false),
                ("upload-offset", "3"),
            ],
        ];
        for headers in appends.iter_mut() {
            headers.extend(draft.append_type());
            let answer = draft.send(Method::PATCH, &url, headers, b"def").await;
            assert_eq!(
                answer.status.as_u16(),
                400,
                "{draft:?} {headers:?}: {answer:?}"
            );
            invalid.check_append(draft, &answer);
        }
        // The media type: required from version 6, not before.
        let untyped = draft
            .send(
                Method::PATCH,
                &url,
                &[draft.complete(false), ("upload-offset", "3")],
                b"def",
            )
            .await;
        if draft.append_type().is_some() {
            Refusal::envelope(415, "content_type_invalid").check_append(draft, &untyped);
            let wrong = draft
                .send(
                    Method::PATCH,
                    &url,
                    &[
                        draft.complete(false),
                        ("upload-offset", "3"),
                        ("content-type", "application/octet-stream"),
                    ],
                    b"def",
                )
                .await;
            Refusal::envelope(415, "content_type_invalid").check_append(draft, &wrong);
            assert_eq!(draft.offset(&url).await, 3);
        } else {
            draft.check_incomplete(&untyped, draft.progress(), 6, None);
        }
        // Other methods.
        for method in [Method::GET, Method::TRACE] {
            let answer = draft.send(method.clone(), &url, &[], b"").await;
            assert_eq!(
                answer.status.as_u16(),
                405,
                "{draft:?} {method}: {answer:?}"
            );
        }
    }
}

/// The URL's signed `type` is judged on the first bytes, whichever request
/// brings them: `415 type_not_allowed`, nothing committed.
async fn the_signed_type_holds_for_the_draft(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let options = UrlOptions::new().types("image/png").unwrap();
    let text = bytes(20_000, 8);
    let png = png_image(40, 30);
    let refused = Refusal::envelope(415, "type_not_allowed");
    for draft in DRAFTS {
        let path = |name: &str| format!("d/v{}/{name}", draft.0);
        let calls = server.calls();
        let url = server.put_url(&path("typed.png"), &options);
        let created = draft.post(&url, Some(20_000), false, b"").await;
        assert_eq!(created.status.as_u16(), 201, "{created:?}");
        refused.check_append(draft, &draft.append(&url, 0, true, &text).await);
        // The refusal discards the session: the URL starts afresh.
        Refusal::envelope(404, "upload_not_found").check_head(&draft.head(&url).await);
        let whole = server.put_url(&path("whole.png"), &options);
        refused.check(&draft.post(&whole, None, true, &text).await);
        let put = server.put_url(&path("put.png"), &options);
        refused.check(&draft.create(Method::PUT, &put, None, false, &text).await);
        assert_eq!(server.file(&path("typed.png")).await, None);
        assert_eq!(server.file(&path("whole.png")).await, None);
        assert_eq!(server.calls(), calls);

        // A PNG passes, by a creation and by appends.
        let kept = server.put_url(&path("kept.png"), &options);
        let answer = draft.post(&kept, Some(png.len() as u64), true, &png).await;
        draft.check_completed(&answer, png.len() as u64);
        let appended = server.put_url(&path("appended.png"), &options);
        draft.post(&appended, None, false, b"").await;
        let answer = draft.append(&appended, 0, true, &png).await;
        draft.check_completed(&answer, png.len() as u64);
        assert_eq!(server.file(&path("appended.png")).await, Some(png.clone()));
    }
}

/// Every draft request needs a valid, unexpired `put` URL: unsigned `401`,
/// a wrong signature or key `403`, expired `403`, a `get` URL `403`.
async fn urls_that_do_not_allow_the_upload_are_refused(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let path = format!("d/v{}/signed.bin", draft.0);
        let unsigned = format!("http://{}/{path}", server.addr);
        let expired = server.hand_signed(KEY, &path, "expiry=1000&method=put");
        let wrong_key = server.hand_signed(
            "another key",
            &path,
            &format!("expiry={}&method=put", NOW + 600),
        );
        let get = server.url(&path, SignedMethod::Get, &UrlOptions::new());
        for (url, status, code) in [
            (unsigned, 401, "signature_missing"),
            (expired, 403, "url_expired"),
            (wrong_key, 403, "signature_invalid"),
            (get, 403, "method_not_signed"),
        ] {
            let refusal = Refusal::envelope(status, code);
            refusal.check(&draft.post(&url, None, true, b"abc").await);
            refusal.check(&draft.post(&url, Some(10), false, b"").await);
            refusal.check_append(draft, &draft.append(&url, 0, true, b"abc").await);
            refusal.check_head(&draft.head(&url).await);
            refusal.check(&draft.send(Method::OPTIONS, &url, &[], b"").await);
            refusal.check(&draft.send(Method::DELETE, &url, &[], b"").await);
        }
        assert_eq!(server.file(&path).await, None);
    }
    assert_eq!(server.calls(), 0);
}

on_every_backend! {
    wrong_offsets_are_409_with_the_offset => wrong_offsets_are_409_with_the_offset,
    inconsistent_lengths_are_400 => inconsistent_lengths_are_400,
    appending_to_a_completed_upload_is_refused => appending_to_a_completed_upload_is_refused,
    lengths_past_the_limit_are_413 => lengths_past_the_limit_are_413,
    refusals_of_malformed_requests => refusals_of_malformed_requests,
    the_signed_type_holds_for_the_draft => the_signed_type_holds_for_the_draft,
    urls_that_do_not_allow_the_upload_are_refused => urls_that_do_not_allow_the_upload_are_refused,
}
