#![no_main]
use libfuzzer_sys::fuzz_target;
use tower_signed_upload_fuzz::request::{run, RequestInput};

fuzz_target!(|input: RequestInput| run(&input));
