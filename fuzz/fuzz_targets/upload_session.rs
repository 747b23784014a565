#![no_main]
use libfuzzer_sys::fuzz_target;
use tower_signed_upload_fuzz::session::{run, SessionInput};

fuzz_target!(|input: SessionInput| run(&input));
