#![no_main]
use libfuzzer_sys::fuzz_target;
use tower_signed_upload_fuzz::signed_url::{run, SignedUrlInput};

fuzz_target!(|input: SignedUrlInput| run(&input));
