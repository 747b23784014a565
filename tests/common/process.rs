//! Helpers for the process-level tests: the example server started as users
//! start it (`examples/server.rs`), its ready line, SIGKILL and SIGTERM.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to print its ready line.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// `{target}/{profile}`: the folder of the test binary's `deps` folder.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary lives in deps/");
    deps.parent()
        .expect("deps/ lives in the profile folder")
        .to_path_buf()
}

/// The example server's binary, `{target}/{profile}/examples/server`.
///
/// `cargo test` builds examples only when no target is selected, so the first
/// call builds it (`cargo build --example server`, same profile and target
/// folder), at most once per test binary.
///
/// # Panics
///
/// If the build cannot run or fails, with cargo's error output: a test must
/// never run against a binary left over from an older build.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let profile = profile_dir();
        let binary = profile.join("examples").join("server");
        let target = profile.parent().expect("the target folder").to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(&cargo);
        command
            .args(["build", "--quiet", "--example", "server", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if profile.file_name().is_some_and(|name| name == "release") {
            command.arg("--release");
        }
        let mut child = command.spawn().unwrap_or_else(|error| {
            panic!(
                "cannot run {} to build the example server: {error}",
                Path::new(&cargo).display()
            )
        });
        // Read while it runs: a build with many errors would fill the pipe.
        let mut stderr = child.stderr.take().expect("piped stderr");
        let reader = std::thread::spawn(move || {
            let mut errors = String::new();
            let _ = stderr.read_to_string(&mut errors);
            errors
        });
        match wait_timeout(&mut child, Duration::from_secs(300)) {
            Some(status) if status.success() => {}
            Some(status) => {
                let errors = reader.join().unwrap_or_default();
                panic!("cargo build --example server failed ({status}):\n{errors}")
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cargo build --example server did not finish within 300 s")
            }
        }
        assert!(
            binary.exists(),
            "cargo build --example server succeeded, yet there is no {}",
            binary.display()
        );
        binary
    })
}

/// Waits for `child` at most `within`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Err(error) => panic!("cannot wait for the child: {error}"),
        }
    }
}

/// How to start the server: its flags and environment.
#[derive(Debug, Clone)]
pub struct Launch {
    pub args: Vec<String>,
    /// Environment changes: `Some` sets, `None` removes.
    pub env: Vec<(String, Option<String>)>,
    /// The process's limit on open file descriptors (`ulimit -n`), if set.
    pub fd_limit: Option<u32>,
}

impl Launch {
    /// `--addr 127.0.0.1:0 --dir {dir}`, key `secret` (and no `SIGNED_UPLOAD_KEYS`).
    pub fn new(dir: &Path) -> Self {
        Launch {
            args: vec![
                "--addr".into(),
                "127.0.0.1:0".into(),
                "--dir".into(),
                dir.to_str().expect("a UTF-8 temporary path").into(),
            ],
            env: vec![
                ("SIGNED_UPLOAD_KEY".into(), Some("secret".into())),
                ("SIGNED_UPLOAD_KEYS".into(), None),
                ("RUST_LOG".into(), None),
            ],
            fd_limit: None,
        }
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, name: &str, value: Option<&str>) -> Self {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.into(), value.map(Into::into)));
        self
    }

    /// Runs the server with at most `limit` open file descriptors.
    pub fn fd_limit(mut self, limit: u32) -> Self {
        self.fd_limit = Some(limit);
        self
    }

    fn command(&self) -> Command {
        let mut command = match self.fd_limit {
            // `exec`: the server keeps the shell's pid, so signals reach it.
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(server_binary());
                shell
            }
            None => Command::new(server_binary()),
        };
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    }

    /// Starts the server and waits (at most [`READY_WITHIN`]) for its ready line.
    pub fn start(&self) -> ServerProcess {
        let mut child = self.command().spawn().expect("the example server starts");
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut server = ServerProcess {
            child: Some(child),
            addr: "127.0.0.1:0".parse().unwrap(),
            ready_line: String::new(),
            stdout_before_ready: Vec::new(),
            stderr,
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        server.addr = addr.trim().parse().unwrap_or_else(|e| {
                            panic!("ready line `{line}` names no address: {e}")
                        });
                        server.ready_line = line;
                        return server;
                    }
                    server.stdout_before_ready.push(line);
                }
                Err(_) => {
                    let status = server
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    panic!(
                        "no ready line within {READY_WITHIN:?} (exit: {status:?}); stdout: {:?}; stderr: {}",
                        server.stdout_before_ready,
                        server.stderr()
                    );
                }
            }
        }
    }

    /// Runs the server expecting it to stop by itself (within `within`);
    /// returns its status, stdout and stderr.
    pub fn run_to_exit(&self, within: Duration) -> (ExitStatus, String, String) {
        let mut child = self.command().spawn().expect("the example server starts");
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        let status = wait_timeout(&mut child, within);
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server did not exit within {within:?}; stderr: {}",
                text(&stderr)
            );
        };
        // The readers finish once the pipes close; give them a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&stdout) + Arc::strong_count(&stderr) > 2
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        (status, text(&stdout), text(&stderr))
    }
}

/// Reads `pipe` to its end on a thread, into a shared buffer.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&buffer);
    std::thread::spawn(move || {
        let mut piece = [0u8; 4096];
        loop {
            match pipe.read(&mut piece) {
                Ok(0) | Err(_) => return,
                Ok(read) => shared.lock().unwrap().extend_from_slice(&piece[..read]),
            }
        }
    });
    buffer
}

fn text(buffer: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

/// A running example server; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The ready line as printed.
    pub ready_line: String,
    /// Lines printed before the ready line.
    pub stdout_before_ready: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running server").id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// `kill -9`: the process ends without any chance to clean up.
    pub fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("a running server");
        child.kill().expect("SIGKILL delivered");
        let status = wait_timeout(&mut child, Duration::from_secs(10));
        assert!(status.is_some(), "the server survived SIGKILL");
    }

    /// Sends SIGTERM (through `kill -TERM`).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits at most `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("a running server");
        let status = wait_timeout(child, within);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// `http://{addr}{path_and_query}`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = wait_timeout(&mut child, Duration::from_secs(10));
        }
    }
}

/// Polls `check` every 20 ms until it holds or `within` passed; returns
/// whether it held.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The async form of [`eventually`], for tests running on tokio.
pub async fn eventually_async(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Names of the entries of `dir` (empty if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(read) => read
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every file below `dir`, recursively, as paths relative to it (symbolic
/// links are listed, not followed).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in read.filter_map(Result::ok) {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => walk(base, &path, out),
                Ok(_) => out.push(path.strip_prefix(base).unwrap().to_path_buf()),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The session folder name of a signed string (`{path}?{query before
/// &signature=}`): its SHA-256 in hex, as the layer derives it.
pub fn session_id(signed: &str) -> String {
    super::common::sha256_hex(signed.as_bytes())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
