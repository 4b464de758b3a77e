//! The tools under faults: `convert` killed with SIGKILL and run again, and `convert` and
//! `resize` on a disk that fills up (a file size limit: `write` fails with EFBIG).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{root, stderr, stdout, stoker_ok};
use stoker::source::{Source, TarSource};

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

fn is_temporary(f: &str) -> bool {
    f.rsplit('/').next().is_some_and(|n| n.starts_with('.'))
}

const FIXTURES: &str = "fixtures/photos-256x144";

/// Every shard below `dst` opens and holds whole samples; returns each sample's key.
fn tar_keys(dst: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for f in files(dst)
        .iter()
        .filter(|f| f.ends_with(".tar") && !is_temporary(f))
    {
        let s = TarSource::open(dst.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let mut buf = Vec::new();
        for i in 0..s.len() {
            s.get(i, &mut buf)
                .unwrap_or_else(|e| panic!("{f} sample {i}: {e}"));
            keys.push(s.key(i).unwrap().to_string());
        }
    }
    keys
}

#[test]
fn convert_killed_then_rerun_writes_every_shard_once_and_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (dst, clean) = (dir.path().join("dst"), dir.path().join("clean"));
    let args = |d: &Path| {
        vec![
            "convert".to_string(),
            FIXTURES.to_string(),
            d.to_str().unwrap().to_string(),
            "--to".into(),
            "tar".into(),
            "--shard-size".into(),
            "2".into(),
            "--quiet".into(),
        ]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_stoker"))
        .args(args(&dst))
        .args(["--delay-ms", "40"])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let done = |d: &Path| {
        files(d)
            .iter()
            .filter(|f| f.ends_with(".tar") && !is_temporary(f))
            .count()
    };
    while done(&dst) < 3 {
        assert!(t.elapsed() < Duration::from_secs(60), "no shard appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "finished before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = files(&dst);
    assert!(
        !left.iter().any(|f| f == "stoker.json"),
        "an index before the end: {left:?}"
    );
    assert!(done(&dst) < 16, "{left:?}");
    // What the killed run left: complete shards, and at most a hidden temporary.
    for f in left.iter().filter(|f| is_temporary(f)) {
        assert!(f.ends_with(".stoker-tmp"), "{f}");
    }
    let partial = tar_keys(&dst);
    assert_eq!(partial.len() % 2, 0, "whole shards only: {partial:?}");

    let rerun = |d: &Path| {
        let a = args(d);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        stoker_ok(&a)
    };
    assert!(stdout(&rerun(&dst)).contains("converted 32 samples into 16 shards"));
    rerun(&clean);
    // Every sample once, no temporary left, and the same bytes as a run never interrupted.
    let keys = tar_keys(&dst);
    assert_eq!(keys.len(), 32);
    assert_eq!(
        keys.iter().collect::<BTreeSet<_>>().len(),
        32,
        "a sample twice"
    );
    let (a, b) = (files(&dst), files(&clean));
    assert_eq!(a, b);
    assert!(!a.iter().any(|f| is_temporary(f)), "{a:?}");
    for f in &a {
        assert_eq!(
            fs::read(dst.join(f)).unwrap(),
            fs::read(clean.join(f)).unwrap(),
            "{f}"
        );
    }
}

/// Runs `stoker ARGS` with a file size limit of `kib` KiB, SIGXFSZ ignored so that a write
/// past it fails with EFBIG, as on a full disk.
fn limited(kib: u64, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"",
            kib * 2
        ))
        .arg(env!("CARGO_BIN_EXE_stoker"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn convert_on_a_full_disk_stops_with_a_clear_error_and_leaves_no_partial_shard() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("npy");
    let d = dst.to_str().unwrap();
    // A shard of 8 images of 256×144×3 is 865 KiB, past a 500 KiB limit.
    let args = [
        "convert",
        FIXTURES,
        d,
        "--to",
        "npy",
        "--shard-size",
        "8",
        "--quiet",
    ];
    let out = limited(500, &args);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out).to_lowercase();
    assert!(err.contains("file too large"), "{err}");
    assert!(err.contains("images-000000.npy"), "names the file: {err}");
    let left = files(&dst);
    assert!(!left.iter().any(|f| f.ends_with(".npy")), "{left:?}");
    assert!(
        !left.iter().any(|f| is_temporary(f)),
        "a temporary left: {left:?}"
    );
    assert!(!left.contains(&"stoker.json".to_string()), "{left:?}");
    // With room again, a rerun completes and the result opens.
    let text = stdout(&stoker_ok(&args));
    assert!(
        text.contains("converted 32 samples into 4 shards"),
        "{text}"
    );
    let src = stoker::source::open(&dst, &stoker::source::OpenOptions::new()).unwrap();
    assert_eq!(src.len(), 32);
}

#[test]
fn resize_on_a_full_disk_stops_with_a_clear_error_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let dst: PathBuf = dir.path().join("small");
    let d = dst.to_str().unwrap();
    // 64×36 JPEGs are about 2 KiB; the PNGs of 128×72 are about 20 KiB, past a 12 KiB limit.
    let args = [
        "resize",
        FIXTURES,
        d,
        "--size",
        "128x72",
        "--format",
        "png",
        "--workers",
        "2",
        "--quiet",
    ];
    let out = limited(12, &args);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out).to_lowercase();
    assert!(err.contains("file too large"), "{err}");
    assert!(err.contains(".png"), "names the file: {err}");
    let left = files(&dst);
    assert!(
        !left.iter().any(|f| is_temporary(f)),
        "a temporary left: {left:?}"
    );
    let before = left.len();
    assert!(before < 32, "{left:?}");
    let text = stdout(&stoker_ok(&args));
    assert!(
        text.contains(&format!("resized {} images", 32 - before)),
        "{text}"
    );
    assert!(text.contains(&format!("{before} already done")), "{text}");
    let all = files(&dst);
    assert_eq!(all.len(), 32, "{all:?}");
    assert!(
        all.iter().all(|f| f.ends_with(".png") && !is_temporary(f)),
        "{all:?}"
    );
}
