//! Creation (`POST` and `PUT`), `HEAD`, `OPTIONS` and `DELETE`, at every
//! interop version.

use std::time::Duration;

use http::Method;

use super::{upload_offset, url_for, Refusal, DRAFTS};
use crate::common::*;
use crate::tus::location_of;
use tower_signed_upload::UrlOptions;

const MAX: u64 = 1_000_000;

/// A creation by `POST` or by `PUT`, incomplete (with and without
/// `Upload-Length`, with and without bytes), complete with the whole file
/// (with and without `Upload-Length`), and of an empty file.
async fn creations_by_post_and_put(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(MAX)).await;
    for draft in DRAFTS {
        for method in [Method::POST, Method::PUT] {
            let name = |what: &str| format!("{}-{what}.bin", method.as_str());
            let calls = server.calls();

            // Incomplete, with a length and the first bytes: Location, the
            // offset, the length (from version 6) and the limits.
            let url = url_for(&server, draft, &name("first"));
            let data = bytes(1000, u64::from(draft.0));
            let answer = draft
                .create(method.clone(), &url, Some(1000), false, &data[..100])
                .await;
            draft.check_incomplete(&answer, 201, 100, Some(1000));
            assert_eq!(answer.header("location"), Some(location_of(&url).as_str()));
            assert_eq!(answer.header("upload-limit"), draft.limit(MAX).as_deref());
            assert!(answer.body.is_empty(), "{answer:?}");
            assert_eq!(draft.offset(&url).await, 100);
            let last = draft.append(&url, 100, true, &data[100..]).await;
            draft.check_completed(&last, 1000);
            assert_eq!(
                server
                    .file(&format!("d/v{}/{}", draft.0, name("first")))
                    .await,
                Some(data)
            );

            // Incomplete, no length, no bytes.
            let url = url_for(&server, draft, &name("bare"));
            let answer = draft.create(method.clone(), &url, None, false, b"").await;
            draft.check_incomplete(&answer, 201, 0, None);
            assert_eq!(answer.header("location"), Some(location_of(&url).as_str()));
            assert_eq!(answer.header("upload-limit"), draft.limit(MAX).as_deref());

            // The whole file, with and without its length: the completion.
            for length in [Some(3000), None] {
                let what = name(if length.is_some() {
                    "whole"
                } else {
                    "whole-unsaid"
                });
                let url = url_for(&server, draft, &what);
                let data = bytes(3000, 3);
                let answer = draft
                    .create(method.clone(), &url, length, true, &data)
                    .await;
                draft.check_completed(&answer, 3000);
                assert_eq!(
                    server.file(&format!("d/v{}/{what}", draft.0)).await,
                    Some(data)
                );
            }

            // An empty file: complete with no body, or (as tus-js-client
            // sends it) `Upload-Length: 0` on an incomplete creation.
            for (length, done) in [(None, true), (Some(0), false)] {
                let what = name(if done { "empty" } else { "empty-length" });
                let url = url_for(&server, draft, &what);
                let answer = draft.create(method.clone(), &url, length, done, b"").await;
                draft.check_completed(&answer, 0);
                assert_eq!(
                    server.file(&format!("d/v{}/{what}", draft.0)).await,
                    Some(Vec::new())
                );
            }
            assert_eq!(server.calls(), calls + 5, "{draft:?} {method}");
        }
    }
}

/// A complete creation whose body's length is unknown (chunked): its
/// length is what arrived.
async fn a_chunked_complete_creation_takes_its_length_from_the_body(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let url = url_for(&server, draft, "chunked.bin");
        let data = bytes(1_000_000, u64::from(draft.0));
        let mut raw = raw_head(
            "PUT",
            target(&url),
            &[
                draft.version(),
                draft.complete(true),
                ("transfer-encoding", "chunked"),
            ],
        );
        for piece in data.chunks(300_000) {
            raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            raw.extend_from_slice(piece);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let answer = raw_exchange(server.addr, &raw, Duration::from_secs(10)).await;
        draft.check_completed(&answer, 1_000_000);
        assert_eq!(
            server.file(&format!("d/v{}/chunked.bin", draft.0)).await,
            Some(data)
        );
    }
}

/// `HEAD`: the offset, the completion, the length when known, the limits,
/// `Cache-Control: no-store`; `404` for an upload never created, `400` with
/// `Upload-Offset` or the completion header on it.
async fn head_tells_the_offset(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(MAX)).await;
    for draft in DRAFTS {
        let url = url_for(&server, draft, "head.bin");
        let never = draft.head(&url).await;
        Refusal::envelope(404, "upload_not_found").check_head(&never);

        for (length, name) in [(Some(100), "head.bin"), (None, "head-unknown.bin")] {
            let url = url_for(&server, draft, name);
            let created = draft.post(&url, length, false, &bytes(10, 1)).await;
            assert_eq!(created.status.as_u16(), 201, "{created:?}");
            let answer = draft.head(&url).await;
            draft.check_incomplete(&answer, 204, 10, length);
            assert_eq!(answer.header("cache-control"), Some("no-store"));
            assert_eq!(answer.header("upload-limit"), draft.limit(MAX).as_deref());
            assert!(answer.body.is_empty(), "{answer:?}");
        }

        // Neither the offset nor the completion header belongs on a HEAD;
        // nor, from draft -05 (version 6), the length.
        for header in [
            ("upload-offset", "10"),
            draft.complete(false),
            draft.complete(true),
        ] {
            let answer = draft.send(Method::HEAD, &url, &[header], b"").await;
            Refusal::envelope(400, "header_invalid").check_head(&answer);
        }
        let length = draft
            .send(Method::HEAD, &url, &[("upload-length", "100")], b"")
            .await;
        if draft.head_refuses_length() {
            Refusal::envelope(400, "header_invalid").check_head(&length);
        } else {
            draft.check_incomplete(&length, 204, 10, Some(100));
        }

        // Complete: the final offset, said complete, without a new completion.
        let url = url_for(&server, draft, "head-done.bin");
        let calls = server.calls();
        draft.post(&url, None, true, b"abc").await;
        let answer = draft.head(&url).await;
        assert_eq!(answer.status.as_u16(), 204, "{answer:?}");
        assert!(draft.says_complete(&answer));
        assert_eq!(upload_offset(&answer), 3);
        assert_eq!(
            answer.header("upload-length"),
            draft.length(Some(3)).as_deref()
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(server.calls(), calls + 1);
    }
}

/// `OPTIONS`: `204` with the limits (from version 6, in its draft's words),
/// `Accept-Patch` in version 8; a URL's own `max_size` narrows the limit.
async fn options_announce_the_limits(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(5000)).await;
    for draft in DRAFTS {
        for (options, max) in [
            (UrlOptions::new(), 5000),
            (UrlOptions::new().max_size(700), 700),
        ] {
            let url = server.put_url("d/options.bin", &options);
            let answer = draft.send(Method::OPTIONS, &url, &[], b"").await;
            assert_eq!(answer.status.as_u16(), 204, "{draft:?}: {answer:?}");
            assert_eq!(answer.header("upload-limit"), draft.limit(max).as_deref());
            assert_eq!(answer.header("accept-patch"), draft.accept_patch());
            assert!(answer.header("tus-resumable").is_none());
        }
    }
}

/// `DELETE`: an unfinished upload is removed (`204`, then `404`); a completed
/// one stays (`409`); one never created is `404`; `Upload-Offset` or the
/// completion header on it is `400`.
async fn cancellation_removes_an_unfinished_upload_only(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let delete = |url: String, headers: Vec<(&'static str, &'static str)>| async move {
            draft.send(Method::DELETE, &url, &headers, b"").await
        };
        let url = url_for(&server, draft, "cancel.bin");
        Refusal::envelope(404, "upload_not_found").check(&delete(url.clone(), vec![]).await);
        let created = draft.post(&url, Some(100), false, &bytes(10, 1)).await;
        assert_eq!(created.status.as_u16(), 201, "{created:?}");
        for header in [("upload-offset", "10"), draft.complete(false)] {
            let refused = delete(url.clone(), vec![header]).await;
            Refusal::envelope(400, "header_invalid").check(&refused);
        }
        assert_eq!(draft.offset(&url).await, 10);
        let deleted = delete(url.clone(), vec![]).await;
        assert_eq!(deleted.status.as_u16(), 204, "{deleted:?}");
        Refusal::envelope(404, "upload_not_found").check_head(&draft.head(&url).await);
        Refusal::envelope(404, "upload_not_found")
            .check_append(draft, &draft.append(&url, 10, true, b"x").await);

        let path = format!("d/v{}/kept.bin", draft.0);
        let done = server.put_url(&path, &UrlOptions::new());
        draft.post(&done, None, true, b"abc").await;
        Refusal::envelope(409, "upload_complete").check(&delete(done, vec![]).await);
        assert_eq!(server.file(&path).await, Some(b"abc".to_vec()));
    }
}

on_every_backend! {
    creations_by_post_and_put => creations_by_post_and_put,
    a_chunked_complete_creation_takes_its_length_from_the_body => a_chunked_complete_creation_takes_its_length_from_the_body,
    head_tells_the_offset => head_tells_the_offset,
    options_announce_the_limits => options_announce_the_limits,
    cancellation_removes_an_unfinished_upload_only => cancellation_removes_an_unfinished_upload_only,
}
