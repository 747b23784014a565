//! The in-process tests, linked into one binary: each module was its own
//! integration-test crate before, and serves the layer in this process over
//! 127.0.0.1 (or checks it without a socket: the property tests, `send_sync`).
//! The tests that start other programs (the example server, moto) stay crates
//! of their own beside this one. Modules that need a feature are gated here.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/session_model.rs"]
mod session_model;

mod axum;
mod body_timers;
#[cfg(feature = "conformance")]
mod conformance;
mod early_refusals;
#[cfg(all(feature = "fs", unix))]
mod fs_full;
#[cfg(all(feature = "fs", unix))]
mod fs_paths;
#[cfg(all(feature = "fs", unix))]
mod fs_quota;
#[cfg(all(feature = "fs", unix))]
mod fs_sessions;
#[cfg(all(feature = "fs", unix))]
mod fuzz_regressions;
mod hyper;
mod ietf;
mod inner;
#[cfg(all(feature = "fs", unix))]
mod integrity;
mod keep_alive;
#[cfg(all(feature = "fs", unix))]
mod policy;
mod proptest_content_range;
mod proptest_session;
mod protocol;
mod resumable;
mod send_sync;
#[cfg(feature = "serve")]
mod serve;
mod signature_spelling;
mod simple;
mod smoke;
mod storage_errors;
mod tus;
mod tus_concat;
