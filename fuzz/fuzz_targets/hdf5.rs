#![no_main]
//! `cargo +nightly fuzz run hdf5` (see fuzz/README.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| stoker::fuzz::hdf5(data));
