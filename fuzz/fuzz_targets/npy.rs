#![no_main]
//! `cargo +nightly fuzz run npy` (see fuzz/README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| stoker::fuzz::npy(data));
