//! What one-byte chunks cost as a session grows: the latency of the first
//! and the last 1,000 of N chunks sent in order to one `FsStorage` session
//! (the storage calls alone, no HTTP). A session's cost should not grow with
//! its number of chunks, only with its distinct ranges.
//!
//! ```sh
//! cargo bench --bench journal -- 100000
//! ```

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tower_signed_upload::storage::{
    ChunkOptions, ChunkRange, FsStorage, Session, SessionStatus, Storage,
};
use tower_signed_upload::UploadPath;

const WINDOW: usize = 1000;

fn percentile(window: &[Duration], at: f64) -> Duration {
    let mut sorted = window.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * at) as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; the first number is the chunk count.
    let chunks: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    assert!(
        chunks >= 2 * WINDOW as u64,
        "at least {} chunks",
        2 * WINDOW
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let folder = tempfile::tempdir().expect("temp dir");
    let storage = FsStorage::new(folder.path()).expect("storage");
    let path = UploadPath::new("bench/many.bin").expect("path");
    let expires = SystemTime::now() + Duration::from_secs(3600);
    let session = Session::new("journalbench".to_owned(), path, expires);
    let options = ChunkOptions::new(10_000);
    let mut took = Vec::with_capacity(chunks as usize);
    let started = Instant::now();
    runtime.block_on(async {
        for offset in 0..chunks {
            let range = ChunkRange {
                first: offset,
                last: offset,
                total: Some(chunks),
            };
            let body = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"x"))]));
            let start = Instant::now();
            let status = storage
                .write_chunk(&session, range, &options, body)
                .await
                .expect("chunk");
            took.push(start.elapsed());
            assert!(matches!(status, SessionStatus::InProgress { .. }));
        }
    });
    let total = started.elapsed();
    let journal = std::fs::metadata(folder.path().join(".uploads/journalbench/journal"))
        .map(|meta| meta.len())
        .unwrap_or(0);
    let (first, last) = (&took[..WINDOW], &took[took.len() - WINDOW..]);
    println!(
        "{chunks} one-byte chunks in {total:.1?} ({:.0}/s); journal {journal} bytes",
        chunks as f64 / total.as_secs_f64()
    );
    for (name, window) in [("first", first), ("last", last)] {
        println!(
            "{name} {WINDOW}: p50 {:?}, p99 {:?}",
            percentile(window, 0.5),
            percentile(window, 0.99)
        );
    }
    // The trend: the p50 of each tenth of the run.
    let tenth = took.len() / 10;
    let trend: Vec<String> = took
        .chunks(tenth)
        .take(10)
        .map(|part| format!("{:.2?}", percentile(part, 0.5)))
        .collect();
    println!("p50 by tenth: {}", trend.join(" "));
}
