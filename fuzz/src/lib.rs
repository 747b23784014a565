//! The logic of the fuzz targets; each target in `fuzz_targets/` is a few lines
//! that hand libFuzzer's input to one of these modules.

pub mod content_range;
pub mod request;
pub mod session;
pub mod signed_url;

/// The reference model of one upload session, shared with the proptest twin
/// in `tests/it/proptest_session.rs`.
#[path = "../../tests/common/session_model.rs"]
pub mod session_model;

pub use session_model::{FixedClock, NOW};
