//! The README's runnable examples, started as processes the way people run them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// A running example; killed when dropped.
struct Example {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Example {
    fn start(name: &str, envs: &[(&str, &str)]) -> Example {
        // Test binaries live in target/debug/deps; examples in target/debug/examples.
        let exe = std::env::current_exe().unwrap();
        let bin: PathBuf = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join(name);
        let mut command = Command::new(&bin);
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Example { child, lines }
    }

    /// The first printed line that starts with `prefix`, without it; within 30 s.
    fn line(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line starting {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }
}

/// The URL in `upload with: curl -T somefile 'URL'`.
fn printed_url(example: &Example) -> String {
    let line = example.line("upload with: curl -T somefile '");
    line.trim_end_matches('\'').to_owned()
}

#[tokio::test]
async fn axum_example_keeps_the_uploaded_file() {
    let dir = tempfile::tempdir().unwrap();
    let example = Example::start(
        "axum",
        &[
            ("ADDR", "127.0.0.1:0"),
            ("UPLOAD_DIR", dir.path().to_str().unwrap()),
            ("SIGNED_UPLOAD_KEY", "example-key"),
        ],
    );
    let base = example.line("listening on ");
    let url = printed_url(&example);
    let client = client();
    let answer = send(&client, put(&url, &[], "hello from a test")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["filename"], "hello.txt");
    assert_eq!(
        std::fs::read(dir.path().join("hello.txt")).unwrap(),
        b"hello from a test"
    );
    let listed = send(
        &client,
        http::Request::get(format!("{base}/files"))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(listed.json()[0]["filesize"], 17);
}

#[tokio::test]
async fn hyper_example_answers_the_completed_upload() {
    let example = Example::start(
        "hyper",
        &[
            ("ADDR", "127.0.0.1:0"),
            ("SIGNED_UPLOAD_KEY", "example-key"),
        ],
    );
    example.line("listening on ");
    let url = printed_url(&example);
    let client = client();
    let answer = send(
        &client,
        put(&url, &[("content-range", "bytes 0-4/10")], "hello"),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let answer = send(
        &client,
        put(&url, &[("content-range", "bytes 5-9/10")], "world"),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["filesize"], 10);
    assert_eq!(answer.json()["type"], "text/plain");
}
