//! Appends (`PATCH`): progress, the completing one, and an append without
//! the completion header, at every interop version.

use super::{url_for, Refusal, DRAFTS};
use crate::common::*;

/// What tus-js-client sends with `protocol: 'ietf-draft-03'` (version 5) and
/// `'ietf-draft-05'` (version 6): an empty creation, appends, offsets; the
/// completing append is the one completion.
async fn empty_creation_then_appends_complete_once(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(500_000)).await;
    for draft in DRAFTS {
        let url = url_for(&server, draft, "appends.bin");
        let data = bytes(100_000, u64::from(draft.0));
        let calls = server.calls();

        let created = draft.post(&url, Some(100_000), false, b"").await;
        draft.check_incomplete(&created, 201, 0, Some(100_000));
        assert_eq!(
            created.header("upload-limit"),
            draft.limit(500_000).as_deref()
        );

        // 201 in drafts -01 to -05, 204 after; no limits on an append.
        let first = draft.append(&url, 0, false, &data[..65_536]).await;
        draft.check_incomplete(&first, draft.progress(), 65_536, Some(100_000));
        assert!(first.body.is_empty(), "{first:?}");
        assert_eq!(draft.offset(&url).await, 65_536);
        assert_eq!(server.calls(), calls);

        // An empty append that does not complete is progress too.
        let empty = draft.append(&url, 65_536, false, b"").await;
        draft.check_incomplete(&empty, draft.progress(), 65_536, Some(100_000));

        // The completing append is the inner service's answer, with the
        // draft's headers: tus-js-client reads the offset from it.
        let last = draft.append(&url, 65_536, true, &data[65_536..]).await;
        draft.check_completed(&last, 100_000);
        assert_eq!(server.calls(), calls + 1);
        assert_eq!(
            server.file(&format!("d/v{}/appends.bin", draft.0)).await,
            Some(data)
        );
        assert_eq!(draft.offset(&url).await, 100_000);
        assert_eq!(server.calls(), calls + 1);
    }
}

/// An append that reaches the known length completes the upload even when
/// it says it does not; with no length known, the completing append sets it.
async fn the_last_byte_completes_the_upload(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let url = url_for(&server, draft, "reach.bin");
        draft.post(&url, Some(6), false, b"abc").await;
        let last = draft.append(&url, 3, false, b"def").await;
        draft.check_completed(&last, 6);

        let url = url_for(&server, draft, "open.bin");
        let created = draft.post(&url, None, false, b"abc").await;
        draft.check_incomplete(&created, 201, 3, None);
        let more = draft.append(&url, 3, false, b"def").await;
        draft.check_incomplete(&more, draft.progress(), 6, None);
        // The completing append may bring no bytes.
        let last = draft.append(&url, 6, true, b"").await;
        draft.check_completed(&last, 6);
        assert_eq!(
            server.file(&format!("d/v{}/open.bin", draft.0)).await,
            Some(b"abcdef".to_vec())
        );
    }
}

/// An append without the completion header: before version 7 it completes
/// the upload (draft -01's example, and -03 to -05 by their text); from
/// version 7 it is `400 header_invalid`, and nothing is stored.
async fn an_append_without_the_completion_header(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for draft in DRAFTS {
        let url = url_for(&server, draft, "unsaid.bin");
        draft.post(&url, None, false, b"abc").await;
        let unsaid = draft.append_with(&url, 3, &[], b"def").await;
        if draft.unsaid_append_completes() {
            draft.check_completed(&unsaid, 6);
        } else {
            Refusal::envelope(400, "header_invalid").check(&unsaid);
            assert_eq!(draft.offset(&url).await, 3);
            assert_eq!(
                server.file(&format!("d/v{}/unsaid.bin", draft.0)).await,
                None
            );
            let last = draft.append(&url, 3, true, b"def").await;
            draft.check_completed(&last, 6);
        }
        assert_eq!(
            server.file(&format!("d/v{}/unsaid.bin", draft.0)).await,
            Some(b"abcdef".to_vec())
        );
    }
}

on_every_backend! {
    empty_creation_then_appends_complete_once => empty_creation_then_appends_complete_once,
    the_last_byte_completes_the_upload => the_last_byte_completes_the_upload,
    an_append_without_the_completion_header => an_append_without_the_completion_header,
}
