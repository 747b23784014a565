//! Prints a signed URL.
//!
//! ```sh
//! SIGNED_UPLOAD_KEY=secret cargo run --example sign -- --path a.png --expires-in 1h
//! ```

use std::time::Duration;

use clap::Parser;
use tower_signed_upload::{SignedMethod, Signer, SigningKey, UploadPath};

#[derive(Parser, Debug)]
#[command(about = "Print a signed upload (or download) URL")]
struct Args {
    /// The file's path, such as `photos/a.png`.
    #[arg(long)]
    path: String,
    /// How long the URL works, such as `10m`, `1h`, `2days`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    expires_in: Duration,
    /// `put` to upload, `get` to download.
    #[arg(long, default_value = "put")]
    method: String,
    /// The server's public base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    public_url: String,
    /// The signing key (defaults to the SIGNED_UPLOAD_KEY variable).
    #[arg(long, env = "SIGNED_UPLOAD_KEY", hide_env_values = true)]
    key: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let method = match args.method.as_str() {
        "put" => SignedMethod::Put,
        "get" => SignedMethod::Get,
        other => return Err(format!("--method is put or get, not {other}").into()),
    };
    let path = UploadPath::new(&args.path)
        .ok_or("the path has an empty, `.` or `..` segment, or a control character")?;
    let signer = Signer::new(SigningKey::new(&args.key)?).public_base(&args.public_url)?;
    println!("{}", signer.sign(&path, method, args.expires_in));
    Ok(())
}
