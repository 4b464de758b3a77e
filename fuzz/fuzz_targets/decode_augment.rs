#![no_main]
//! `cargo +nightly fuzz run decode_augment` (see fuzz/README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| stoker::fuzz::decode_augment(data));
