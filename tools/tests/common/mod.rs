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

/// Every variable a launcher sets that stoker reads (rank, world size, job array index): a
/// test that runs `stoker` under a launcher of its own choosing removes them first, so that
/// it does not depend on how the tests themselves were started.
pub const LAUNCHER_VARS: &[&str] = &[
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "PMI_RANK",
    "PMI_SIZE",
    "MPI_LOCALRANKID",
    "MPI_LOCALNRANKS",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_STEP_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
];

/// Runs `stoker ARGS` from the repository root with exactly the launcher variables `vars`
/// (the others of [`LAUNCHER_VARS`] removed).
pub fn stoker_launched(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stoker"));
    cmd.args(args).current_dir(root());
    for v in LAUNCHER_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("run stoker")
}
