//! Helpers shared by the CLI tests: run the `stoker` binary from the repository root (where
//! `fixtures/` is), read its output and parse its `--json` document.

// Each test crate uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `stoker ARGS` from the repository root.
pub fn stoker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stoker"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run stoker")
}

/// Runs `stoker ARGS` and asserts that it succeeded (stderr in the message when not).
pub fn stoker_ok(args: &[&str]) -> Output {
    let out = stoker(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The whole stdout of a `--json` run, parsed as one JSON document (panics with the text
/// when it is not exactly one).
pub fn json(o: &Output) -> serde_json::Value {
    let text = stdout(o);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}"))
}

/// `v[key]` as a number (panics with the document when it is not one).
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// `v[key]` as a string (panics with the document when it is not one).
pub fn text<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}
