//! Property tests of `ContentRange::parse` and its `Display`, the stable twin
//! of the `content_range` fuzz target: no input panics, and whatever parses
//! formats to a canonical value that parses to the same thing.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tower_signed_upload::headers::ContentRange;

/// Never panics; a parsed value is well formed and round-trips through `Display`.
fn check(input: &[u8]) -> Result<(), TestCaseError> {
    let Ok(parsed) = ContentRange::parse(input) else {
        return Ok(());
    };
    if let ContentRange::Bytes { first, last, .. } = parsed {
        prop_assert!(first <= last, "{:?}", parsed);
    }
    let text = parsed.to_string();
    prop_assert!(text.starts_with("bytes "), "{}", text);
    let again = ContentRange::parse(text.as_bytes());
    prop_assert_eq!(again, Ok(parsed), "{}", text);
    prop_assert_eq!(again.unwrap().to_string(), text);
    Ok(())
}

fn unit() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("bytes "), Just("bytes=")]
}

/// Numbers around the interesting edges: small, near `u64::MAX`, anything.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..100,
        1 => (u64::MAX - 3)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

/// `cases` cases; failures are kept beside this file, in
/// `proptest_content_range.proptest-regressions` (proptest's default would be a
/// `tests/proptest-regressions/` tree, since `tests/it` has a `main.rs`).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn arbitrary_bytes_never_panic_and_round_trip(
        input in proptest::collection::vec(any::<u8>(), 0..48)
    ) {
        check(&input)?;
    }

    #[test]
    fn near_miss_strings_never_panic_and_round_trip(
        input in "(bytes[ =]|bytes|Bytes |bits )?[0-9*+ -]{0,6}(-[0-9* ]{0,5})?(/[0-9*]{0,5})?(/[0-9]{0,2})?"
    ) {
        check(input.as_bytes())?;
    }

    #[test]
    fn chunk_ranges_parse_as_written(
        unit in unit(),
        first in number(),
        last in number(),
        total in proptest::option::of(number()),
        zeros in 0usize..3,
    ) {
        let total_text = total.map_or_else(|| "*".to_owned(), |t| t.to_string());
        let text = format!("{unit}{}{first}-{last}/{total_text}", "0".repeat(zeros));
        let parsed = ContentRange::parse(text.as_bytes());
        if first <= last {
            prop_assert_eq!(parsed, Ok(ContentRange::Bytes { first, last, total }));
        } else {
            prop_assert!(parsed.is_err(), "{} parsed as {:?}", text, parsed);
        }
        check(text.as_bytes())?;
    }

    #[test]
    fn status_queries_parse_as_written(unit in unit(), total in proptest::option::of(number())) {
        let text = format!(
            "{unit}*/{}",
            total.map_or_else(|| "*".to_owned(), |t| t.to_string())
        );
        prop_assert_eq!(ContentRange::parse(text.as_bytes()), Ok(ContentRange::Status { total }));
        check(text.as_bytes())?;
    }

    #[test]
    fn numbers_past_u64_are_refused(unit in unit(), excess in 1u64..1000) {
        let big = u128::from(u64::MAX) + u128::from(excess);
        for text in [
            format!("{unit}0-{big}/*"),
            format!("{unit}{big}-{big}/*"),
            format!("{unit}0-1/{big}"),
            format!("{unit}*/{big}"),
        ] {
            prop_assert!(ContentRange::parse(text.as_bytes()).is_err(), "{}", text);
        }
    }
}
