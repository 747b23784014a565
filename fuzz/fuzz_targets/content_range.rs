#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tower_signed_upload_fuzz::content_range::run(data));
