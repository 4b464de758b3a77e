//! `stoker resize` and `convert` with object storage (a real SeaweedFS on 127.0.0.1, the
//! harness of the library's S3 tests); skipped without the `s3` feature or the server.

#![cfg(feature = "s3")]

mod common;
#[path = "../../tests/s3_server/mod.rs"]
mod s3_server;

use std::fs;
use std::path::{Path, PathBuf};

use stoker::source::{OpenOptions, Source};

use common::{json, num, stoker_ok};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/photos-256x144")
}

/// The 32 fixture JPEGs (4 class folders) uploaded one object each under `url/CLASS/NAME`.
fn upload_loose(url: &str) -> usize {
    let mut n = 0;
    for class in fs::read_dir(fixtures()).unwrap() {
        let class = class.unwrap().path();
        let c = class.file_name().unwrap().to_string_lossy().into_owned();
        for f in fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            s3_server::put(&f, &format!("{url}/{c}/{name}"));
            n += 1;
        }
    }
    n
}

/// Every file of `dir` (recursively), relative path → bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.push((rel, fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn resize_reads_loose_images_from_a_prefix_as_from_a_local_folder() {
    let Some(_server) = s3_server::server() else {
        return;
    };
    let url = s3_server::prefix("loose");
    let n = upload_loose(&url);
    let tmp = tempfile::tempdir().unwrap();
    let (remote, local, cache) = (
        tmp.path().join("remote"),
        tmp.path().join("local"),
        tmp.path().join("cache"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let fx = s(&fixtures());
    for to in ["tar", "folder"] {
        let (r, l) = (remote.join(to), local.join(to));
        let args = |src: &str, dst: &Path| {
            vec![
                "resize".to_string(),
                src.to_string(),
                s(dst),
                "--size".into(),
                "64x36".into(),
                "--to".into(),
                to.into(),
                "--shard-size".into(),
                "10".into(),
                "--workers".into(),
                "3".into(),
                "--json".into(),
                "--quiet".into(),
                "--cache-dir".into(),
                s(&cache),
            ]
        };
        let a = args(&format!("{url}/"), &r);
        let out = stoker_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        let report = json(&out);
        assert_eq!(num(&report, "written") as usize, n, "{report}");
        assert_eq!(num(&report, "failed"), 0.0, "{report}");
        let a = args(&fx, &l);
        stoker_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        // The same files, byte for byte: order, labels (class folders) and pixels.
        let (rf, lf) = (files(&r), files(&l));
        assert_eq!(rf.len(), lf.len());
        for ((rp, rb), (lp, lb)) in rf.iter().zip(&lf) {
            assert_eq!(rp, lp);
            assert!(rb == lb, "{} differs", rp.display());
        }
    }
    // The tar output opens with the class labels of the local folder.
    let src = stoker::source::open(remote.join("tar"), &OpenOptions::new()).unwrap();
    let labels: std::collections::BTreeSet<i64> =
        (0..src.len()).filter_map(|i| src.label(i)).collect();
    assert_eq!(labels.len(), 4, "{labels:?}");
    // Nothing of the inputs went to local disk: the cache holds no image.
    let cached = if cache.exists() {
        files(&cache)
    } else {
        Vec::new()
    };
    assert!(
        cached
            .iter()
            .all(|(p, _)| !p.to_string_lossy().ends_with(".jpg")),
        "{:?}",
        cached.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
}

#[test]
fn convert_reads_loose_images_from_a_prefix_as_from_a_local_folder() {
    let Some(_server) = s3_server::server() else {
        return;
    };
    let url = s3_server::prefix("loose-convert");
    upload_loose(&url);
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for to in ["tar", "npy"] {
        let (r, l) = (tmp.path().join("r").join(to), tmp.path().join("l").join(to));
        let remote_src = format!("{url}/");
        for (src, dst) in [(remote_src.as_str(), &r), (&*s(&fixtures()), &l)] {
            let d = s(dst);
            stoker_ok(&[
                "convert",
                src,
                &d,
                "--to",
                to,
                "--shard-size",
                "10",
                "--quiet",
            ]);
        }
        let (rf, lf) = (files(&r), files(&l));
        assert_eq!(rf.len(), lf.len(), "{to}");
        for ((rp, rb), (lp, lb)) in rf.iter().zip(&lf) {
            assert_eq!(rp, lp);
            assert!(rb == lb, "{to}: {} differs", rp.display());
        }
    }
}

#[test]
fn the_library_opens_a_prefix_of_loose_images_as_an_image_folder() {
    let Some(_server) = s3_server::server() else {
        return;
    };
    let url = s3_server::prefix("loose-open");
    upload_loose(&url);
    let remote = stoker::source::open(format!("{url}/"), &OpenOptions::new()).unwrap();
    let local = stoker::source::ImageFolder::open(fixtures()).unwrap();
    assert_eq!(remote.format(), "image folder");
    assert_eq!(remote.len(), local.len());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..local.len() {
        let (x, y) = (
            remote.get(i, &mut a).unwrap(),
            local.get(i, &mut b).unwrap(),
        );
        assert_eq!(x.label, y.label, "sample {i}");
        let (stoker::source::Raw::Encoded(x), stoker::source::Raw::Encoded(y)) = (x.raw, y.raw)
        else {
            panic!("encoded images")
        };
        assert!(x == y, "sample {i}");
    }
    let stats = remote.fetch_stats().unwrap();
    assert_eq!(stats.downloads, local.len() as u64, "{stats:?}");
}

/// Every object under `url/` (one level), name → bytes, read through the library.
fn objects(url: &str, names: &[&str]) -> Vec<(String, Vec<u8>)> {
    let tmp = tempfile::tempdir().unwrap();
    names
        .iter()
        .map(|n| {
            let src = format!("{url}/{n}");
            assert!(
                stoker::remote::exists(&src, &OpenOptions::new()).unwrap(),
                "{src} missing"
            );
            let p = tmp.path().join(n);
            let o = OpenOptions::new().cache_dir(tmp.path().join("c"));
            // A shard's bytes, through the cache (the library's download path).
            let s = stoker::source::open(&src, &o).unwrap();
            assert!(s.len() > 0);
            let cached = tmp
                .path()
                .join("c/s3")
                .join(src.trim_start_matches("s3://"));
            fs::copy(&cached, &p).unwrap();
            (n.to_string(), fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn resize_writes_shards_to_a_prefix_and_a_rerun_skips_them() {
    let Some(_server) = s3_server::server() else {
        return;
    };
    let url = s3_server::prefix("written");
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let local = tmp.path().join("local");
    let fx = s(&fixtures());
    let args = |dst: &str| {
        vec![
            "resize",
            &fx,
            dst,
            "--size",
            "64x36",
            "--to",
            "tar",
            "--shard-size",
            "10",
            "--json",
            "--quiet",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let run = |dst: &str| {
        let a = args(dst);
        json(&stoker_ok(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    };
    let first = run(&url);
    assert_eq!(num(&first, "written"), 32.0, "{first}");
    assert_eq!(num(&first, "shards_already_done"), 0.0, "{first}");
    run(&s(&local));
    // Each shard object is the local run's file, byte for byte.
    let names: Vec<String> = (0..4).map(|k| format!("shard-{k:06}.tar")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for (n, bytes) in objects(&url, &names) {
        assert!(bytes == fs::read(local.join(&n)).unwrap(), "{n} differs");
    }
    // The prefix opens as one data set by its index, and reads as the local output.
    let remote = stoker::source::open(format!("{url}/"), &OpenOptions::new()).unwrap();
    let here = stoker::source::open(&local, &OpenOptions::new()).unwrap();
    assert_eq!(remote.len(), here.len());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..here.len() {
        let (x, y) = (remote.get(i, &mut a).unwrap(), here.get(i, &mut b).unwrap());
        assert_eq!(x.label, y.label);
        let (stoker::source::Raw::Encoded(x), stoker::source::Raw::Encoded(y)) = (x.raw, y.raw)
        else {
            panic!("encoded")
        };
        assert!(x == y, "sample {i}");
    }
    // A rerun finds every shard there and writes nothing.
    let again = run(&url);
    assert_eq!(num(&again, "shards_already_done"), 4.0, "{again}");
    assert_eq!(num(&again, "written"), 0.0, "{again}");
    // With one shard deleted, a rerun writes that one only.
    stoker::remote::delete(&format!("{url}/shard-000002.tar"), &OpenOptions::new()).unwrap();
    let third = run(&url);
    assert_eq!(num(&third, "shards_already_done"), 3.0, "{third}");
    assert_eq!(num(&third, "written"), 10.0, "{third}");
    let remote = stoker::source::open(format!("{url}/"), &OpenOptions::new()).unwrap();
    assert_eq!(remote.len(), 32);
}

#[test]
fn convert_writes_tar_and_npy_to_a_prefix_and_a_rerun_skips_them() {
    let Some(_server) = s3_server::server() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let fx = s(&fixtures());
    for to in ["tar", "npy"] {
        let url = s3_server::prefix(&format!("converted-{to}"));
        let local = tmp.path().join(to);
        let run = |dst: &str| {
            json(&stoker_ok(&[
                "convert",
                &fx,
                dst,
                "--to",
                to,
                "--shard-size",
                "10",
                "--json",
                "--quiet",
            ]))
        };
        let first = run(&url);
        assert_eq!(num(&first, "shards_already_done"), 0.0, "{first}");
        run(&s(&local));
        // Every shard of the local output is an object of the same bytes (labels are
        // compared below, sample by sample).
        let local_files = files(&local);
        let names: Vec<String> = local_files
            .iter()
            .map(|(p, _)| p.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(to) && !n.starts_with("labels"))
            .collect();
        assert!(names.len() >= 4, "{names:?}");
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        for (n, bytes) in objects(&url, &names) {
            assert!(bytes == fs::read(local.join(&n)).unwrap(), "{n} differs");
        }
        // The prefix opens as the local output does, sample for sample.
        let remote =
            stoker::source::open(format!("{url}/stoker.json"), &OpenOptions::new()).unwrap();
        let here = stoker::source::open(&local, &OpenOptions::new()).unwrap();
        assert_eq!(remote.len(), 32);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..32 {
            let (x, y) = (remote.get(i, &mut a).unwrap(), here.get(i, &mut b).unwrap());
            assert_eq!(x.label, y.label, "{to} sample {i}");
            assert_eq!(
                format!("{:?}", x.raw),
                format!("{:?}", y.raw),
                "{to} sample {i}"
            );
        }
        let again = run(&url);
        assert_eq!(num(&again, "shards_already_done"), 4.0, "{again}");
        let remote = stoker::source::open(format!("{url}/"), &OpenOptions::new()).unwrap();
        assert_eq!(
            remote.len(),
            32,
            "{to}: the index of the rerun lists every shard"
        );
    }
}

#[test]
fn parts_write_their_own_index_objects_and_open_as_one_data_set() {
    let Some(_server) = s3_server::server() else {
        return;
    };
    let url = s3_server::prefix("parts");
    let fx = fixtures().to_str().unwrap().to_string();
    let run = |cmd: &str, part: &str| {
        stoker_ok(&[
            cmd,
            &fx,
            &url,
            "--to",
            "tar",
            "--shard-size",
            "5",
            "--shard",
            part,
            "--quiet",
        ]);
    };
    run("convert", "0/2");
    // One part of two: opening names the missing part.
    let e = stoker::source::open(format!("{url}/"), &OpenOptions::new()).unwrap_err();
    assert!(e.to_string().contains("part"), "{e}");
    run("convert", "1/2");
    for part in [
        "stoker.part-0000-of-0002.json",
        "stoker.part-0001-of-0002.json",
    ] {
        assert!(
            stoker::remote::exists(&format!("{url}/{part}"), &OpenOptions::new()).unwrap(),
            "{part}"
        );
    }
    let src = stoker::source::open(format!("{url}/"), &OpenOptions::new()).unwrap();
    let local = stoker::source::ImageFolder::open(fixtures()).unwrap();
    assert_eq!(src.len(), local.len());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..local.len() {
        let (x, y) = (src.get(i, &mut a).unwrap(), local.get(i, &mut b).unwrap());
        assert_eq!(x.label, y.label, "sample {i}");
        assert_eq!(format!("{:?}", x.raw), format!("{:?}", y.raw), "sample {i}");
    }
}
