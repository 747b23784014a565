//! Simple uploads (docs/protocol.md#simple-uploads) and the File object and envelope they
//! are answered with (docs/protocol.md#envelope-and-file-object), over real HTTP.

use crate::common::*;
use serde_json::Value;

/// 2025-06-15T15:06:40Z is [`NOW`] in RFC 3339.
const NOW_RFC3339: &str = "2025-06-15T15:06:40Z";

fn assert_file_id(id: &Value) {
    let id = id.as_str().expect("id is a string");
    let hex = id.strip_prefix("file_").expect("id starts with file_");
    assert_eq!(hex.len(), 24, "{id}");
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
}

fn assert_quoted_etag(answer: &Answer) -> String {
    let etag = answer.header("etag").expect("ETag on a completing answer");
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    etag.to_owned()
}

#[tokio::test]
async fn simple_upload_is_201_with_the_file_object() {
    let server = TestServer::start().await;
    let url = server.put_url("nested/folders/x.bin");
    let data = png(3000, 2000, 500);
    let answer = send(&client(), put(&url, &[], data.clone())).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let json = answer.json();
    assert_meta(&json, 201, "PUT", "/nested/folders/x.bin");
    assert!(json["error"].is_null());
    let file = &json["data"];
    assert_file_id(&file["id"]);
    let expected = serde_json::json!({
        "id": file["id"],
        "object": "source",
        "kind": "image",
        "type": "image/png",
        "width": 3000,
        "height": 2000,
        "filesize": data.len(),
        "folder": "nested/folders",
        "filename": "x.bin",
        "url": format!("{PUBLIC_BASE}/nested/folders/x.bin"),
        "status": "ready",
        "created": NOW_RFC3339,
        "updated": NOW_RFC3339,
    });
    assert_eq!(file, &expected);
    assert_eq!(
        json["links"]["self"],
        format!("{PUBLIC_BASE}/nested/folders/x.bin")
    );
    assert_quoted_etag(&answer);
    assert_eq!(
        answer.header("location"),
        Some(format!("{PUBLIC_BASE}/nested/folders/x.bin").as_str())
    );
    assert_eq!(server.storage.file("nested/folders/x.bin").unwrap(), data);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn unknown_values_are_left_out_of_the_file_object() {
    let server = TestServer::start().await;
    let answer = send(&client(), put(&server.put_url("notes.txt"), &[], "hello")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let file = answer.json()["data"].clone();
    let object = file.as_object().unwrap();
    assert!(!object.contains_key("width") && !object.contains_key("height"));
    assert_eq!(file["type"], "text/plain", "the extension names the type");
    assert_eq!(file["kind"], "other");
    assert_eq!(file["folder"], "");
    assert_eq!(file["filename"], "notes.txt");
}

#[tokio::test]
async fn unrecognised_bytes_without_extension_are_octet_stream() {
    let server = TestServer::start().await;
    let answer = send(&client(), put(&server.put_url("blob"), &[], vec![0, 1, 2])).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["type"], "application/octet-stream");
}

#[tokio::test]
async fn simple_upload_replaces_the_file_at_its_path() {
    let server = TestServer::start().await;
    let client = client();
    let first = send(&client, put(&server.put_url("a.txt"), &[], "first")).await;
    assert_eq!(first.status, 201);
    let second = send(&client, put(&server.put_url("a.txt"), &[], "second!")).await;
    assert_eq!(second.status, 201);
    assert_eq!(server.storage.file("a.txt").unwrap(), "second!");
    assert_eq!(second.json()["data"]["filesize"], 7);
    assert_ne!(assert_quoted_etag(&first), assert_quoted_etag(&second));
    assert_ne!(first.json()["data"]["id"], second.json()["data"]["id"]);
}

#[tokio::test]
async fn empty_simple_upload_stores_an_empty_file() {
    let server = TestServer::start().await;
    let answer = send(&client(), put(&server.put_url("empty.txt"), &[], "")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["filesize"], 0);
    assert_quoted_etag(&answer);
    assert_eq!(server.storage.file("empty.txt").unwrap(), "");
}

#[tokio::test]
async fn simple_upload_without_content_length_is_streamed_and_stored() {
    let server = TestServer::start().await;
    let data = bytes(200_000, 9);
    let pieces = data.chunks(7_000).map(<[u8]>::to_vec).collect();
    let request = stream_put(&server.put_url("big.bin"), &[], chunked_body(pieces));
    let answer = send_stream(&stream_client(), request).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["filesize"], data.len());
    assert_eq!(server.storage.file("big.bin").unwrap(), data);
}

#[tokio::test]
async fn percent_encoded_path_is_stored_decoded() {
    let server = TestServer::start().await;
    let url = server.put_url("my photos/été.png");
    assert!(
        url.contains("/my%20photos/%C3%A9t%C3%A9.png?"),
        "the URL carries the encoded path: {url}"
    );
    let data = png(4, 3, 10);
    let answer = send(&client(), put(&url, &[], data.clone())).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let json = answer.json();
    assert_meta(&json, 201, "PUT", "/my%20photos/%C3%A9t%C3%A9.png");
    assert_eq!(json["data"]["folder"], "my photos");
    assert_eq!(json["data"]["filename"], "été.png");
    assert_eq!(
        json["data"]["url"],
        format!("{PUBLIC_BASE}/my%20photos/%C3%A9t%C3%A9.png")
    );
    assert_eq!(
        (
            json["data"]["width"].clone(),
            json["data"]["height"].clone()
        ),
        (4.into(), 3.into())
    );
    assert_eq!(server.storage.file("my photos/été.png").unwrap(), data);
}

#[tokio::test]
async fn cut_off_simple_upload_commits_nothing() {
    let server = TestServer::start().await;
    let url = server.put_url("a.bin");
    let mut request = raw_head("PUT", target(&url), &[("content-length", "100")]);
    request.extend_from_slice(&[1; 40]);
    raw_cut_off(server.addr, &request).await;
    assert_eq!(server.storage.file("a.bin"), None);
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn cut_off_replacement_leaves_the_old_file() {
    let server = TestServer::start().await;
    let answer = send(&client(), put(&server.put_url("a.bin"), &[], "old")).await;
    assert_eq!(answer.status, 201);
    let url = server.put_url("a.bin");
    let mut request = raw_head("PUT", target(&url), &[("content-length", "100")]);
    request.extend_from_slice(&[1; 40]);
    raw_cut_off(server.addr, &request).await;
    assert_eq!(server.storage.file("a.bin").unwrap(), "old");
    assert_eq!(server.calls(), 1);
}
