//! `stoker convert`: folder → npy → hdf5 → tar → folder keeps every pixel and label.

mod common;

use common::{root, stoker_ok as stoker};

use stoker::Pixels;
use stoker::decode::Decoder;
use stoker::source::{ImageFolder, NpySource, Raw, Source};

fn digest(path: &str, labels: Option<&str>) -> String {
    let mut args = vec![
        "bench",
        path,
        "--digest",
        "--json",
        "--epochs",
        "1",
        "--batch-size",
        "7",
        "--dtype",
        "u8",
        "--layout",
        "nhwc",
        "--workers",
        "2",
    ];
    if let Some(l) = labels {
        args.extend(["--labels", l]);
    }
    common::text(&common::json(&stoker(&args)), "digest").to_string()
}

#[test]
fn round_trip_folder_npy_hdf5_tar_folder() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_str().unwrap().to_string();
    let steps = [
        ("fixtures/photos-256x144".to_string(), p("npy"), "npy", "10"),
        (p("npy/images-*.npy"), p("h5"), "hdf5", "20"),
        (p("h5/data-*.h5"), p("tar"), "tar", "12"),
        (p("tar/shard-*.tar"), p("folder"), "folder", "1000"),
    ];
    for (src, dst, to, shard) in &steps {
        let mut args = vec![
            "convert",
            src,
            dst,
            "--to",
            to,
            "--shard-size",
            shard,
            "--verify",
        ];
        let labels = p("npy/labels-*.npy");
        if to == &"hdf5" {
            args.extend(["--labels", &labels]);
        }
        let text = String::from_utf8(stoker(&args).stdout).unwrap();
        assert!(text.contains("converted 32 samples"), "{text}");
        assert!(text.contains("verified 32"), "{text}");
    }
    assert!(dir.path().join("npy/images-000003.npy").exists());
    assert!(dir.path().join("h5/data-000001.h5").exists());
    assert!(dir.path().join("tar/shard-000002.tar").exists());
    // The final folder holds lossless PNGs of the fixture pixels, in the fixture classes.
    let npy = NpySource::glob(
        root().join("fixtures/npy/images-*.npy").to_str().unwrap(),
        Some(root().join("fixtures/npy/labels-*.npy").to_str().unwrap()),
    )
    .unwrap();
    let back = ImageFolder::open(dir.path().join("folder")).unwrap();
    assert_eq!(back.len(), 32);
    let (mut b1, mut b2, mut dec) = (Vec::new(), Vec::new(), Decoder::new().unwrap());
    for i in 0..32 {
        let want = npy.get(i, &mut b1).unwrap();
        let got = back.get(i, &mut b2).unwrap();
        assert_eq!(got.label, want.label, "sample {i}");
        let Raw::Pixels(w) = want.raw else { panic!() };
        let Raw::Encoded(bytes) = got.raw else {
            panic!()
        };
        assert!(bytes.starts_with(b"\x89PNG"));
        let img = dec.decode(bytes, 3, None).unwrap();
        let (Pixels::U8(a), Pixels::U8(b)) = (w.pixels, img.pixels) else {
            panic!()
        };
        assert!(a == b, "sample {i}: pixels differ");
    }
    // The loader gives one digest from every form.
    let want = digest(
        "fixtures/npy/images-*.npy",
        Some("fixtures/npy/labels-*.npy"),
    );
    assert_eq!(digest(&p("h5/data-*.h5"), None), want);
    assert_eq!(digest(&p("tar/shard-*.tar"), None), want);
    assert_eq!(
        digest(&p("npy/images-*.npy"), Some(&p("npy/labels-*.npy"))),
        want
    );
    assert_eq!(digest("fixtures/photos-256x144", None), want);
}

#[test]
fn convert_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, vec![1u8; 1024]).unwrap();
    let out = common::stoker(&[
        "convert",
        bad.to_str().unwrap(),
        dir.path().to_str().unwrap(),
        "--to",
        "npy",
    ]);
    assert!(!out.status.success());
    let e = common::stderr(&out);
    assert!(e.contains("bad.tar") && e.contains("not a tar file"), "{e}");
}

#[test]
fn json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("npy");
    let out = stoker(&[
        "convert",
        "fixtures/photos-256x144",
        dst.to_str().unwrap(),
        "--to",
        "npy",
        "--shard-size",
        "10",
        "--verify",
        "--json",
    ]);
    let j = common::json(&out);
    assert_eq!(j["samples"], 32);
    assert_eq!(j["to"], "npy");
    assert_eq!(j["shards"], 4);
    assert_eq!(j["verified"], 32);
    assert!(common::num(&j, "samples_per_s") > 0.0, "{j}");
    assert_eq!(common::text(&j, "output"), dst.to_str().unwrap(), "{j}");
    // Without --verify: null.
    let out = stoker(&[
        "convert",
        "fixtures/npy/images-*.npy",
        dir.path().join("tar").to_str().unwrap(),
        "--labels",
        "fixtures/npy/labels-*.npy",
        "--to",
        "tar",
        "--json",
    ]);
    let j = common::json(&out);
    assert_eq!(j["shards"], 1);
    assert!(j["verified"].is_null(), "{j}");
}

#[test]
fn converted_directories_open_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let want = digest("fixtures/photos-256x144", None);
    for to in ["npy", "hdf5", "tar"] {
        let dst = dir.path().join(to);
        let d = dst.to_str().unwrap();
        stoker(&[
            "convert",
            "fixtures/photos-256x144",
            d,
            "--to",
            to,
            "--shard-size",
            "10",
            "--quiet",
        ]);
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dst.join("stoker.json")).unwrap())
                .unwrap();
        assert_eq!(
            (index["format"].as_str(), index["samples"].as_u64()),
            (Some(to), Some(32))
        );
        assert_eq!(index["shards"].as_array().unwrap().len(), 4, "{index}");
        // The directory alone: labels paired, the folder's batches.
        assert_eq!(digest(d, None), want, "{to}");
        let j = common::json(&stoker(&["inspect", d, "--json", "--quiet"]));
        assert_eq!(j["format"], to);
        assert_eq!(j["samples"], 32);
        assert_eq!(j["fast"], true, "{j}");
        let labels = j["labels"].as_array().expect("labelled");
        assert_eq!(labels.len(), 4, "{j}");
        // Without the index, the shard names are enough.
        std::fs::remove_file(dst.join("stoker.json")).unwrap();
        assert_eq!(digest(d, None), want, "{to} without stoker.json");
    }
}

/// Every file below `dir` with its bytes, by relative path.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        d: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn any_number_of_workers_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // From JPEGs (decoded for npy and hdf5, copied into tar and folders) and from pixels
    // (encoded as PNG into tar and folders).
    let npy = dir.path().join("from");
    stoker(&[
        "convert",
        "fixtures/photos-256x144",
        npy.to_str().unwrap(),
        "--to",
        "npy",
        "--shard-size",
        "9",
        "--workers",
        "1",
    ]);
    for src in [
        "fixtures/photos-256x144".to_string(),
        npy.join("images-*.npy").display().to_string(),
    ] {
        for to in ["npy", "hdf5", "tar", "folder"] {
            let outs: Vec<_> = ["1", "2", "5"]
                .iter()
                .map(|w| {
                    let dst = dir.path().join(format!("{to}-{w}-{}", src.len()));
                    stoker(&[
                        "convert",
                        &src,
                        dst.to_str().unwrap(),
                        "--to",
                        to,
                        "--shard-size",
                        "7",
                        "--workers",
                        w,
                        "--quiet",
                    ]);
                    tree(&dst)
                })
                .collect();
            assert!(outs[0].len() >= 2, "{to}: {:?}", outs[0].keys());
            assert!(
                outs[1] == outs[0] && outs[2] == outs[0],
                "{src} to {to}: outputs differ with the workers"
            );
        }
    }
}

#[test]
fn the_first_bad_sample_is_reported_whatever_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/a");
    std::fs::create_dir_all(&src).unwrap();
    let good =
        std::fs::read(common::root().join("fixtures/photos-256x144/class-a/photo-00.jpg")).unwrap();
    for i in 0..12 {
        let bytes = if i == 4 || i == 9 {
            b"not an image".to_vec()
        } else {
            good.clone()
        };
        std::fs::write(src.join(format!("{i:02}.jpg")), bytes).unwrap();
    }
    for w in ["1", "2", "4"] {
        let dst = dir.path().join(format!("out-{w}"));
        let out = common::stoker(&[
            "convert",
            dir.path().join("src").to_str().unwrap(),
            dst.to_str().unwrap(),
            "--to",
            "npy",
            "--workers",
            w,
        ]);
        assert!(!out.status.success());
        let e = common::stderr(&out);
        assert!(
            e.contains("04.jpg") && !e.contains("09.jpg"),
            "{w} workers: {e}"
        );
    }
}

#[test]
fn parts_run_in_sequence_open_as_the_unsharded_run() {
    use common::{stderr, stoker_launched};
    let dir = tempfile::tempdir().unwrap();
    let want = digest("fixtures/photos-256x144", None);
    for to in ["npy", "hdf5", "tar", "folder"] {
        for n in [2usize, 3] {
            let dst = dir.path().join(format!("{to}-{n}"));
            let d = dst.to_str().unwrap();
            let mut samples = 0;
            for i in 0..n {
                // i/n for the first part, a Slurm array task for the others.
                let (shard, vars) = if i == 0 {
                    (format!("0/{n}"), vec![])
                } else {
                    (
                        "auto".to_string(),
                        vec![
                            ("SLURM_ARRAY_TASK_ID", i.to_string()),
                            ("SLURM_ARRAY_TASK_COUNT", n.to_string()),
                        ],
                    )
                };
                let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
                // What a killed run of this part left, and what part 0, running beside it,
                // is writing: a part removes its own temporaries only.
                let tmp = |k: usize| {
                    let p = stoker::source::Part::new(k, n).unwrap();
                    dst.join(format!(".shard-{}-000000.tar.stoker-tmp", p.tag()))
                };
                if i == 1 {
                    std::fs::write(tmp(0), b"part 0 at work").unwrap();
                    std::fs::write(tmp(1), b"left by a killed run").unwrap();
                }
                let out = stoker_launched(
                    &[
                        "convert",
                        "fixtures/photos-256x144",
                        d,
                        "--to",
                        to,
                        "--shard-size",
                        "5",
                        "--shard",
                        &shard,
                        "--verify",
                        "--json",
                        "--quiet",
                    ],
                    &vars,
                );
                assert!(out.status.success(), "{to} {i}/{n}: {}", stderr(&out));
                if i == 1 {
                    assert!(
                        tmp(0).exists(),
                        "{to} {n}: part 1 removed part 0's temporary"
                    );
                    assert!(
                        !tmp(1).exists(),
                        "{to} {n}: its own leftover is still there"
                    );
                    std::fs::remove_file(tmp(0)).unwrap();
                }
                let j = common::json(&out);
                assert_eq!(j["part"], serde_json::json!({"index": i, "count": n}));
                assert_eq!(j["verified"], j["samples"]);
                samples += j["samples"].as_u64().unwrap();
                if to != "folder" && i + 1 < n {
                    let e = stoker::source::open(&dst, &stoker::source::OpenOptions::new())
                        .unwrap_err();
                    let name = format!("stoker.part-{:04}-of-{n:04}.json", n - 1);
                    assert!(e.to_string().contains(&name), "{to} {i}/{n}: {e}");
                }
            }
            assert_eq!(samples, 32, "{to} {n}");
            // The parts in order are the samples in order: the same batches as the folder.
            assert_eq!(digest(d, None), want, "{to} in {n} parts");
            if to != "folder" {
                let index = stoker::source::Index::read(&dst).unwrap().unwrap();
                assert_eq!(index.samples, 32);
                assert_eq!(index.shard_samples.iter().sum::<usize>(), 32);
                assert_eq!(index.shard_samples.len(), index.shards.len());
                assert!(!dst.join("stoker.json").exists());
                // The same directory converted again as a whole: its stoker.json replaces the
                // parts' indexes.
                stoker(&[
                    "convert",
                    "fixtures/photos-256x144",
                    d,
                    "--to",
                    to,
                    "--shard-size",
                    "5",
                    "--quiet",
                ]);
                assert!(dst.join("stoker.json").exists());
                assert!(stoker::source::Part::files_in(&dst).unwrap().is_empty());
                assert_eq!(digest(d, None), want, "{to} whole after parts");
            }
        }
    }
}

#[test]
fn cmyk_jpegs_convert_to_pillows_pixels_and_a_bomb_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src/a");
    std::fs::create_dir_all(&src).unwrap();
    let names = ["cmyk.jpg", "junk-between-segments.jpg", "ycck.jpg"];
    for name in names {
        std::fs::copy(root().join("fixtures/decode").join(name), src.join(name)).unwrap();
    }
    let (from, npy) = (dir.path().join("src"), dir.path().join("npy"));
    let convert = |dst: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "convert",
            from.to_str().unwrap(),
            dst.to_str().unwrap(),
            "--to",
            "npy",
        ];
        args.extend(extra);
        common::stoker(&args)
    };
    let out = convert(&npy, &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // Row i is file i (sorted), decoded as Pillow decodes it.
    let rows = NpySource::glob(npy.join("images-*.npy").to_str().unwrap(), None).unwrap();
    assert_eq!(rows.len(), 3);
    let mut buf = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let stem = name.rsplit_once('.').unwrap().0;
        let pillow = NpySource::open(
            root().join(format!("fixtures/decode/{stem}.pillow.npy")),
            None,
        )
        .unwrap();
        let mut pbuf = Vec::new();
        let (Raw::Pixels(got), Raw::Pixels(want)) = (
            rows.get(i, &mut buf).unwrap().raw,
            pillow.get(0, &mut pbuf).unwrap().raw,
        ) else {
            panic!()
        };
        let (Pixels::U8(a), Pixels::U8(b)) = (got.pixels, want.pixels) else {
            panic!()
        };
        let mad = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| x.abs_diff(y) as f64)
            .sum::<f64>()
            / a.len() as f64;
        assert!(mad <= 2.0, "{name}: mean abs difference from Pillow {mad}");
    }
    // A bomb stops the run, named with its size and the limit; so does a lower limit.
    std::fs::copy(
        root().join("fixtures/decode/bomb-65000.jpg"),
        src.join("bomb.jpg"),
    )
    .unwrap();
    let out = convert(&dir.path().join("npy2"), &[]);
    assert!(!out.status.success());
    let e = common::stderr(&out);
    assert!(
        e.contains("bomb.jpg") && e.contains("max_image_pixels (178956970)"),
        "{e}"
    );
    std::fs::remove_file(src.join("bomb.jpg")).unwrap();
    let out = convert(&dir.path().join("npy3"), &["--max-image-pixels", "1000"]);
    assert!(!out.status.success());
    let e = common::stderr(&out);
    assert!(
        e.contains("cmyk.jpg") && e.contains("max_image_pixels (1000)"),
        "{e}"
    );
}
