//! The README's runnable examples, started as processes the way people run them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// The example's binary, built first (`cargo test --test examples` alone does
/// not build examples): `{target}/{profile}/examples/{name}`.
fn example_binary(name: &str) -> PathBuf {
    // Test binaries live in {target}/{profile}/deps.
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", name, "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(profile.parent().unwrap())
        .stdin(Stdio::null());
    if profile.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example {name} failed");
    profile.join("examples").join(name)
}

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
        let mut command = Command::new(example_binary(name));
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        for (key, value) in envs {
            command.env(key, value);
        }
        Example::spawn(command)
    }

    fn spawn(mut command: Command) -> Example {
        let mut child = command.spawn().expect("the example starts");
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

#[tokio::test]
async fn sign_and_upload_examples_resume_a_chunked_upload() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(example_binary("server"));
    command
        .args([
            "--addr",
            "127.0.0.1:0",
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .env("SIGNED_UPLOAD_KEY", "cli-key")
        .env_remove("SIGNED_UPLOAD_KEYS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let server = Example::spawn(command);
    let base = server.line("listening on ");

    let output = Command::new(example_binary("sign"))
        .args([
            "--path",
            "cli/big.bin",
            "--expires-in",
            "10m",
            "--public-url",
            &base,
        ])
        .env("SIGNED_UPLOAD_KEY", "cli-key")
        .output()
        .expect("sign runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with(&format!("{base}/cli/big.bin?expiry=")),
        "{url}"
    );

    // Part of the file is stored already: the uploader resumes from the status query.
    let data = bytes(3 * 1024 * 1024 + 123, 9);
    let range = format!("bytes 0-1048575/{}", data.len());
    let client = client();
    let first = send(
        &client,
        put(&url, &[("content-range", &range)], data[..1 << 20].to_vec()),
    )
    .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &data).unwrap();
    let upload = example_binary("upload");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(upload)
            .arg(&source)
            .arg(&url)
            .args(["--chunk-size", "1000000", "--parallel", "3"])
            .output()
            .expect("upload runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("resuming: 1048576 of"), "{stderr}");
    let file: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the File object");
    assert_eq!(file["filesize"], data.len());
    assert_eq!(std::fs::read(dir.path().join("cli/big.bin")).unwrap(), data);
}
