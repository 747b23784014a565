//! `examples/upload.rs` over https: a TLS server on 127.0.0.1 with a
//! certificate made for the test, which the uploader trusts through
//! `--ca-cert` and refuses without it.
#![cfg(all(feature = "fs", unix))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tower_layer::Layer;
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{
    services::RespondCreated, SignedMethod, SignedUploadLayer, SigningKey, UploadPath,
};

/// The example's binary, built first (`cargo test --test upload_https` alone
/// does not build examples): `{target}/{profile}/examples/upload`.
fn upload_binary() -> PathBuf {
    // Test binaries live in {target}/{profile}/deps.
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", "upload", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(profile.parent().unwrap())
        .stdin(Stdio::null());
    if profile.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example upload failed");
    profile.join("examples").join("upload")
}

/// A self-signed certificate for 127.0.0.1, in PEM, and the server's TLS
/// configuration with it.
fn certificate() -> (String, Arc<rustls::ServerConfig>) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    (cert.pem(), Arc::new(config))
}

/// Serves the layer over TLS on 127.0.0.1; returns the address.
async fn serve_tls(layer: &SignedUploadLayer, tls: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(tls);
    let service = layer.layer(RespondCreated);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, service) = (acceptor.clone(), service.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    let mut service = service.clone();
                    async move { Ok::<_, Infallible>(service.call(request).await.unwrap()) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Runs the uploader with `args` on a blocking thread, bounded to 120 s.
async fn run_upload(args: Vec<std::ffi::OsString>) -> Output {
    let run = tokio::task::spawn_blocking(move || {
        Command::new(upload_binary())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the example starts")
    });
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the upload ends within 120 s")
        .unwrap()
}

struct Setup {
    storage: MemoryStorage,
    url: String,
    dir: tempfile::TempDir,
    data: Vec<u8>,
}

async fn setup() -> Setup {
    let (pem, tls) = certificate();
    let storage = MemoryStorage::new();
    let layer = SignedUploadLayer::new(
        SigningKey::new("upload-https-key").unwrap(),
        storage.clone(),
    );
    let addr = serve_tls(&layer, tls).await;
    let signed = layer.signer().sign(
        &UploadPath::new("big/file.bin").unwrap(),
        SignedMethod::Put,
        Duration::from_secs(600),
    );
    let url = format!("https://{addr}{}", signed.path_and_query());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(dir.path().join("file.bin"), &data).unwrap();
    Setup {
        storage,
        url,
        dir,
        data,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_in_parallel_chunks_over_https_trusting_the_given_ca() {
    let setup = setup().await;
    let dir = setup.dir.path();
    let output = run_upload(vec![
        dir.join("file.bin").into(),
        setup.url.clone().into(),
        "--chunk-size".into(),
        "65536".into(),
        "--parallel".into(),
        "3".into(),
        "--ca-cert".into(),
        dir.join("ca.pem").into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "upload failed: {stderr}");
    let file: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(file["filesize"], 300_000, "{file}");
    assert_eq!(
        setup.storage.file("big/file.bin").as_deref(),
        Some(&setup.data[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_a_certificate_it_does_not_trust() {
    let setup = setup().await;
    let dir = setup.dir.path();
    let output = run_upload(vec![
        dir.join("file.bin").into(),
        setup.url.clone().into(),
        "--tries".into(),
        "1".into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an untrusted server was accepted");
    assert!(
        stderr.contains("certificate"),
        "the failure names the certificate: {stderr}"
    );
    assert_eq!(setup.storage.file("big/file.bin"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_file_without_certificates_is_an_error() {
    let setup = setup().await;
    let dir = setup.dir.path();
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let output = run_upload(vec![
        dir.join("file.bin").into(),
        setup.url.clone().into(),
        "--ca-cert".into(),
        dir.join("empty.pem").into(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an empty CA file was accepted");
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}
