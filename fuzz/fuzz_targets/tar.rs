#![no_main]
//! `cargo +nightly fuzz run tar` (see fuzz/README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| stoker::fuzz::tar(data));
