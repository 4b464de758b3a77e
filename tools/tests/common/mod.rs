//! Helpers shared by the CLI tests: run the `stoker` binary from the repository root (where
//! `fixtures/` is), read its output and the fields of its `--json` object.

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

/// The value of `"key":` in a JSON object printed by `--json` (first occurrence, quotes
/// trimmed).
pub fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let k = format!("\"{key}\":");
    let start = json
        .find(&k)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + k.len();
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}
