//! `ContentRange::parse` over arbitrary bytes.

use tower_signed_upload::headers::ContentRange;

/// Never panics; whatever parses is well formed (`FIRST <= LAST`) and formats
/// to a canonical `bytes …` string that parses back to the same value and
/// formats to the same string again.
pub fn run(data: &[u8]) {
    let Ok(parsed) = ContentRange::parse(data) else {
        return;
    };
    if let ContentRange::Bytes { first, last, .. } = parsed {
        assert!(first <= last, "{parsed:?} from {data:?}");
    }
    let text = parsed.to_string();
    assert!(text.starts_with("bytes "), "{text}");
    let again = ContentRange::parse(text.as_bytes());
    assert_eq!(again, Ok(parsed), "{text} from {data:?}");
    assert_eq!(
        again.map(|r| r.to_string()).ok().as_deref(),
        Some(text.as_str())
    );
}
