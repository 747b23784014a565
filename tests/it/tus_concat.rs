//! tus concatenation on the signed URL (docs/protocol.md#tus), over real HTTP
//! on 127.0.0.1, on every backend: parallel parts on URLs the layer mints,
//! the final upload that assembles them, and what each refuses.

use bytes::Bytes;
use http::Method;

use crate::common::*;
use crate::tus::{assert_tus, head, location_of, offset, patch, tus, TUS};
use tower_signed_upload::UrlOptions;

/// A URL on the public base, as tus answers them, aimed at the test server.
fn here(server: &StorageServer, url: &str) -> String {
    let target = url
        .strip_prefix(PUBLIC_BASE)
        .unwrap_or_else(|| panic!("not on the public base: {url}"));
    format!("http://{}{target}", server.addr)
}

/// Creates a part of the upload at `url`; returns its `Location`.
async fn create_part(url: &str, length: usize) -> String {
    let length = length.to_string();
    let answer = send(
        &client(),
        tus(
            Method::POST,
            url,
            &[
                TUS,
                ("upload-concat", "partial"),
                ("upload-length", &length),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&answer, 201);
    answer.header("location").expect("Location").to_owned()
}

/// The final upload at `url`, made of `parts` (URLs as the client lists them).
async fn finish(url: &str, parts: &[String]) -> Answer {
    let concat = format!("final;{}", parts.join(" "));
    send(
        &client(),
        tus(
            Method::POST,
            url,
            &[
                TUS,
                ("upload-concat", &concat),
                ("upload-metadata", "filename cGFyYWxsZWwuYmlu"),
            ],
            Bytes::new(),
        ),
    )
    .await
}

async fn four_parallel_parts_make_the_file_once(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/parallel.bin", &UrlOptions::new());
    let data = bytes(100_003, 7);
    let cuts = [0, 30_000, 50_000, 75_000, data.len()];
    let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect();

    // Four creations on the same URL: four new parts, each on its own URL.
    let parts: Vec<String> =
        futures_util::future::join_all(pieces.iter().map(|piece| create_part(&url, piece.len())))
            .await;
    for part in &parts {
        assert!(part.starts_with(PUBLIC_BASE), "{part}");
        assert!(part.contains("&part="), "{part}");
        assert!(part.contains("&signature="), "{part}");
    }
    let mut distinct = parts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{parts:?}");

    let first = head(&here(&server, &parts[0])).await;
    assert_tus(&first, 200);
    assert_eq!(offset(&first), 0);
    assert_eq!(first.header("upload-length"), Some("30000"));
    assert_eq!(first.header("upload-concat"), Some("partial"));

    // Their bytes, in parallel; each part's last byte is just its end.
    let targets: Vec<String> = parts.iter().map(|part| here(&server, part)).collect();
    let appended = futures_util::future::join_all(
        targets
            .iter()
            .zip(&pieces)
            .map(|(part, piece)| patch(part, 0, piece, &[("upload-concat", "partial")])),
    )
    .await;
    for (answer, piece) in appended.iter().zip(&pieces) {
        assert_tus(answer, 204);
        assert_eq!(offset(answer), piece.len() as u64);
    }
    let done = head(&here(&server, &parts[3])).await;
    assert_eq!(offset(&done), pieces[3].len() as u64);
    assert_eq!(server.calls(), 0);
    assert_eq!(server.file("t/parallel.bin").await, None);

    // The final upload: the inner service's answer, once.
    let finished = finish(&url, &parts).await;
    assert_tus(&finished, 201);
    assert_eq!(
        finished.header("location"),
        Some(location_of(&url).as_str())
    );
    assert_eq!(offset(&finished), data.len() as u64);
    assert_eq!(finished.json()["data"]["filesize"], data.len());
    assert_eq!(server.calls(), 1);
    assert_eq!(
        server.file("t/parallel.bin").await.as_deref(),
        Some(&data[..])
    );

    let final_head = head(&url).await;
    assert_tus(&final_head, 200);
    assert_eq!(offset(&final_head), data.len() as u64);
    assert_eq!(
        final_head.header("upload-length"),
        Some(data.len().to_string().as_str())
    );
    let concat = format!("final;{}", parts.join(" "));
    assert_eq!(final_head.header("upload-concat"), Some(concat.as_str()));

    // A retried final answers as completed; the file is made once.
    let again = finish(&url, &parts).await;
    assert_tus(&again, 201);
    assert_eq!(offset(&again), data.len() as u64);
    assert_eq!(server.calls(), 1);

    // A final upload takes no bytes.
    let refused = patch(&url, data.len() as u64, b"", &[]).await;
    assert_tus(&refused, 403);
    assert_eq!(refused.code(), "upload_final");
    assert_eq!(
        server.file("t/parallel.bin").await.as_deref(),
        Some(&data[..])
    );
}

async fn racing_finals_complete_once(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/race.bin", &UrlOptions::new());
    let data = bytes(20_000, 3);
    let mut parts = Vec::new();
    for piece in data.chunks(5_000) {
        let part = create_part(&url, piece.len()).await;
        assert_tus(&patch(&here(&server, &part), 0, piece, &[]).await, 204);
        parts.push(part);
    }
    let answers = futures_util::future::join_all((0..4).map(|_| finish(&url, &parts))).await;
    for answer in &answers {
        assert_tus(answer, 201);
        assert_eq!(offset(answer), 20_000);
    }
    assert_eq!(server.calls(), 1);
    assert_eq!(server.file("t/race.bin").await.as_deref(), Some(&data[..]));
}

async fn finals_refuse_foreign_incomplete_and_forged_parts(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/final.bin", &UrlOptions::new());
    let other = server.put_url("t/other.bin", &UrlOptions::new());

    let mine = create_part(&url, 4).await;
    assert_tus(&patch(&here(&server, &mine), 0, b"abcd", &[]).await, 204);
    let unfinished = create_part(&url, 4).await;
    assert_tus(
        &patch(&here(&server, &unfinished), 0, b"ab", &[]).await,
        204,
    );
    let theirs = create_part(&other, 2).await;
    assert_tus(&patch(&here(&server, &theirs), 0, b"zz", &[]).await, 204);

    let refused = |answer: &Answer, status: u16, code: &str| {
        assert_tus(answer, status);
        assert_eq!(answer.code(), code, "{answer:?}");
    };
    // A part of another upload.
    let answer = finish(&url, &[mine.clone(), theirs.clone()]).await;
    refused(&answer, 400, "concat_part_invalid");
    // A part not complete.
    let answer = finish(&url, &[mine.clone(), unfinished.clone()]).await;
    refused(&answer, 400, "concat_part_incomplete");
    // A part URL whose signature was changed.
    let cut = mine.rfind("&signature=").unwrap() + "&signature=".len();
    let mut forged = mine.clone();
    let flipped = if &mine[cut..cut + 1] == "A" { "B" } else { "A" };
    forged.replace_range(cut..cut + 1, flipped);
    let answer = finish(&url, &[forged]).await;
    refused(&answer, 403, "signature_invalid");
    // The upload's own URL, its signature kept, with a nonce of the
    // client's own: the signature does not cover it.
    let own = location_of(&url).replacen(
        "&signature=",
        "&part=0123456789abcdef0123456789abcdef&signature=",
        1,
    );
    let answer = finish(&url, &[own]).await;
    refused(&answer, 403, "signature_invalid");
    // The upload's own URL is not a part, nor is a URL of another server.
    let answer = finish(&url, &[location_of(&url)]).await;
    refused(&answer, 400, "concat_part_invalid");
    let elsewhere = mine.replacen(PUBLIC_BASE, "http://elsewhere.test", 1);
    let answer = finish(&url, &[elsewhere]).await;
    refused(&answer, 400, "concat_part_invalid");
    assert_eq!(server.calls(), 0);
    assert_eq!(server.file("t/final.bin").await, None);
    assert_tus(&head(&url).await, 404);

    // Relative URLs name parts too; once the part is complete, the file is made.
    assert_tus(
        &patch(&here(&server, &unfinished), 2, b"cd", &[]).await,
        204,
    );
    let relative: Vec<String> = [&mine, &unfinished]
        .iter()
        .map(|part| part.strip_prefix(PUBLIC_BASE).unwrap().to_owned())
        .collect();
    let answer = finish(&url, &relative).await;
    assert_tus(&answer, 201);
    assert_eq!(server.calls(), 1);
    assert_eq!(
        server.file("t/final.bin").await.as_deref(),
        Some(&b"abcdabcd"[..])
    );
    assert_eq!(server.file("t/other.bin").await, None);

    // The parts together may not pass the URL's signed limit.
    let small = server.put_url("t/small.bin", &UrlOptions::new().max_size(6));
    let mut parts = Vec::new();
    for piece in [&b"abcd"[..], b"efg"] {
        let part = create_part(&small, piece.len()).await;
        assert_tus(&patch(&here(&server, &part), 0, piece, &[]).await, 204);
        parts.push(part);
    }
    refused(&finish(&small, &parts).await, 413, "too_large");
    assert_eq!(server.file("t/small.bin").await, None);
    assert_eq!(server.calls(), 1);
}

async fn part_urls_serve_only_their_part(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/part.bin", &UrlOptions::new());
    let part = here(&server, &create_part(&url, 4).await);

    // Not for plain uploads, chunks, creations, or downloads.
    let plain = send(&client(), put(&part, &[], Bytes::from_static(b"abcd"))).await;
    assert_eq!(plain.status.as_u16(), 403, "{plain:?}");
    assert_eq!(plain.code(), "part_url_restricted");
    let chunk = send(
        &client(),
        put(
            &part,
            &[("content-range", "bytes 0-3/4")],
            Bytes::from_static(b"abcd"),
        ),
    )
    .await;
    assert_eq!(chunk.code(), "part_url_restricted");
    let nested = send(
        &client(),
        tus(
            Method::POST,
            &part,
            &[TUS, ("upload-concat", "partial"), ("upload-length", "4")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&nested, 403);
    assert_eq!(nested.code(), "part_url_restricted");
    let get = send(&client(), tus(Method::GET, &part, &[], Bytes::new())).await;
    assert_eq!(get.status.as_u16(), 403, "{get:?}");
    assert_eq!(server.file("t/part.bin").await, None);

    // Its whole body stored is its end: no file, no inner call.
    let whole = patch(&part, 0, b"abcd", &[]).await;
    assert_tus(&whole, 204);
    assert_eq!(offset(&whole), 4);
    assert_eq!(server.calls(), 0);
    assert_eq!(server.file("t/part.bin").await, None);
    assert_eq!(offset(&head(&part).await), 4);

    // Terminated, it is gone.
    let deleted = send(&client(), tus(Method::DELETE, &part, &[TUS], Bytes::new())).await;
    assert_tus(&deleted, 204);
    assert_tus(&head(&part).await, 404);
    assert_eq!(server.calls(), 0);
}

on_every_backend! {
    four_parallel_parts_make_the_file_once => four_parallel_parts_make_the_file_once,
    racing_finals_complete_once => racing_finals_complete_once,
    finals_refuse_foreign_incomplete_and_forged_parts => finals_refuse_foreign_incomplete_and_forged_parts,
    part_urls_serve_only_their_part => part_urls_serve_only_their_part,
}
