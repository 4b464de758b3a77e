//! `stoker resize` as a user runs it: outputs, resume after SIGKILL, bad inputs, --shard.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stoker::decode::Decoder;
use stoker::source::{Raw, Source, TarSource};

use common::{stdout, stoker_ok as run};

fn stoker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stoker"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/photos-256x144")
}

/// Copies the 32 fixture JPEGs (4 class folders) to `dir`.
fn make_src(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for class in fs::read_dir(fixtures()).unwrap() {
        let class = class.unwrap().path();
        let to = dir.join(class.file_name().unwrap());
        fs::create_dir_all(&to).unwrap();
        for f in fs::read_dir(&class).unwrap() {
            let f = f.unwrap().path();
            let rel = to.join(f.file_name().unwrap());
            fs::copy(&f, &rel).unwrap();
            out.push(rel);
        }
    }
    out.sort();
    out
}

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

fn assert_decodes(path: &Path, size: (usize, usize)) {
    let bytes = fs::read(path).unwrap();
    let mut d = Decoder::new().unwrap();
    let img = d
        .decode(&bytes, 3, None)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!((img.width, img.height), size, "{}", path.display());
}

#[test]
fn sigkill_then_rerun_completes_every_output_once() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let inputs = make_src(&src);
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let args = [
        "resize",
        s,
        d,
        "--size",
        "64x36",
        "--workers",
        "2",
        "--quiet",
    ];
    let mut child = stoker()
        .args(args)
        .args(["--delay-ms", "40"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a few outputs are finished, while it is still running.
    let t = Instant::now();
    let finished = |dst: &Path| {
        files(dst)
            .iter()
            .filter(|f| f.ends_with(".jpg") && !f.contains("/."))
            .count()
    };
    while finished(&dst) < 4 {
        assert!(t.elapsed() < Duration::from_secs(60), "no output appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "finished before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = finished(&dst);
    assert!(before < inputs.len(), "{before}");
    // What the killed run left: complete outputs only (a temporary may remain, hidden).
    for f in files(&dst) {
        if !f.contains("/.") {
            assert_decodes(&dst.join(&f), (64, 36));
        } else {
            assert!(f.ends_with(".stoker-tmp"), "{f}");
        }
    }
    let out = run(&args);
    let text = stdout(&out);
    assert!(text.contains(&format!("{before} already done")), "{text}");
    assert!(
        text.contains(&format!("resized {} images", inputs.len() - before)),
        "{text}"
    );
    // Every output exactly once, complete, and no temporary left.
    let want: Vec<String> = inputs
        .iter()
        .map(|p| p.strip_prefix(&src).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files(&dst), want);
    for f in &want {
        assert_decodes(&dst.join(f), (64, 36));
    }
    // A third run does nothing.
    let text = stdout(&run(&args));
    assert!(text.contains("resized 0 images"), "{text}");
    assert!(
        text.contains(&format!("{} already done", inputs.len())),
        "{text}"
    );
}

#[test]
fn bad_inputs_are_listed_and_do_not_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let inputs = make_src(&src);
    let good = fs::read(&inputs[0]).unwrap();
    let bad = src.join("class-a");
    fs::write(bad.join("zero.jpg"), b"").unwrap();
    fs::write(bad.join("text.jpg"), b"hello, not an image").unwrap();
    fs::write(bad.join("trunc.jpg"), &good[..good.len() / 2]).unwrap();
    let unreadable = bad.join("unreadable.jpg");
    fs::write(&unreadable, &good).unwrap();
    let mut n_bad = 3;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read(&unreadable).is_err() {
            n_bad += 1; // not root: the file is unreadable
        }
    }
    let errors = dir.path().join("errors.tsv");
    let out = run(&[
        "resize",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
        "--scale",
        "0.25",
        "--errors",
        errors.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(text.contains(&format!("{n_bad} failed")), "{text}");
    assert!(
        text.contains(&format!("resized {} images", inputs.len() + 4 - n_bad)),
        "{text}"
    );
    let list = fs::read_to_string(&errors).unwrap();
    assert_eq!(list.lines().count(), n_bad, "{list}");
    for (name, reason) in [
        ("zero.jpg", "empty file (0 bytes)"),
        ("text.jpg", "not a jpeg or png"),
        ("trunc.jpg", "premature end"),
    ] {
        let line = format!("{}\t", bad.join(name).display());
        assert!(
            list.lines()
                .any(|l| l.starts_with(&line) && l.contains(reason)),
            "{name}: {list}"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("zero.jpg: empty file"), "{stderr}");
    // --scale 0.25 of 256x144.
    assert_decodes(&dst.join("class-b/photo-01.jpg"), (64, 36));
    assert!(!dst.join("class-a/zero.jpg").exists());
}

#[test]
fn shards_of_a_job_array_cover_every_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let inputs = make_src(&src);
    let mut total = 0;
    for i in 0..3 {
        let shard = format!("{i}/3");
        let text = stdout(&run(&[
            "resize",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            "--short-side",
            "72",
            "--format",
            "png",
            "--shard",
            &shard,
        ]));
        // Each task does its own part: none of it was done by an earlier task.
        assert!(text.contains(" 0 already done"), "{text}");
        let n: usize = text
            .strip_prefix("resized ")
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(n > 0 && n < inputs.len(), "{text}");
        total += n;
    }
    assert_eq!(total, inputs.len());
    let out = files(&dst);
    assert_eq!(out.len(), inputs.len());
    assert!(out.iter().all(|f| f.ends_with(".png")));
    assert_decodes(&dst.join("class-c/photo-02.png"), (128, 72));
}

#[test]
fn to_tar_gives_the_same_images_and_labels_as_to_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (src, folder, tar) = (
        dir.path().join("src"),
        dir.path().join("folder"),
        dir.path().join("tar"),
    );
    let inputs = make_src(&src);
    let s = src.to_str().unwrap();
    let common = ["--size", "100x100", "--fit", "crop", "--filter", "bilinear"];
    run(&[&["resize", s, folder.to_str().unwrap()][..], &common].concat());
    let text = stdout(&run(&[
        &[
            "resize",
            s,
            tar.to_str().unwrap(),
            "--to",
            "tar",
            "--shard-size",
            "10",
        ][..],
        &common,
    ]
    .concat()));
    assert!(text.contains("resized 32 images"), "{text}");
    // 4 shards and the index that lists them with their sample counts.
    assert_eq!(files(&tar).len(), 5);
    let index = stoker::source::Index::read(&tar).unwrap().unwrap();
    assert_eq!((index.format.as_str(), index.samples), ("tar", 32));
    assert_eq!(index.shard_samples, [10, 10, 10, 2]);
    let opened = stoker::source::open(&tar, &stoker::source::OpenOptions::new()).unwrap();
    assert_eq!(opened.len(), 32);
    let t = TarSource::glob(tar.join("shard-*.tar").to_str().unwrap()).unwrap();
    assert_eq!(t.len(), inputs.len());
    let mut buf = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let rel = input.strip_prefix(&src).unwrap();
        let item = t.get(i, &mut buf).unwrap();
        let Raw::Encoded(bytes) = item.raw else {
            panic!()
        };
        assert_eq!(
            bytes,
            fs::read(folder.join(rel)).unwrap(),
            "{}",
            rel.display()
        );
        let class = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let want = i64::from(class.as_bytes()[6] - b'a');
        assert_eq!(item.label, Some(want), "{}", rel.display());
    }
    // Resumable per shard: a rerun skips every finished shard.
    let text = stdout(&run(&[
        &[
            "resize",
            s,
            tar.to_str().unwrap(),
            "--to",
            "tar",
            "--shard-size",
            "10",
        ][..],
        &common,
    ]
    .concat()));
    assert!(text.contains("32 already done"), "{text}");
}

#[test]
fn argument_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, needle) in [
        (vec!["resize", d, d], "give one of --size"),
        (
            vec!["resize", d, d, "--size", "2x2", "--scale", "0.5"],
            "only one",
        ),
        (vec!["resize", d, d, "--scale=-1"], "positive"),
    ] {
        let out = stoker().args(&args).output().unwrap();
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(needle), "{args:?}: {e}");
    }
    let out = stoker().args(["resize", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--shard"));
}

#[test]
fn to_npy_and_hdf5_hold_the_png_pixels() {
    use stoker::source::{Hdf5Source, ImageFolder, NpySource};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_src(&src);
    let s = src.to_str().unwrap();
    let out = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let common = ["--size", "64x36", "--fit", "pad", "--shard-size", "10"];
    run(&[&["resize", s, &out("png"), "--format", "png"][..], &common].concat());
    for to in ["npy", "hdf5"] {
        let text = stdout(&run(
            &[&["resize", s, &out(to), "--to", to][..], &common].concat()
        ));
        assert!(text.contains("resized 32 images"), "{text}");
        let text = stdout(&run(
            &[&["resize", s, &out(to), "--to", to][..], &common].concat()
        ));
        assert!(text.contains("32 already done"), "{to}: {text}");
    }
    let npy = NpySource::glob(
        &format!("{}/images-*.npy", out("npy")),
        Some(&format!("{}/labels-*.npy", out("npy"))),
    )
    .unwrap();
    let h5 = Hdf5Source::glob(
        &format!("{}/data-*.h5", out("hdf5")),
        "images",
        Some("labels"),
    )
    .unwrap();
    let png = ImageFolder::open(out("png")).unwrap();
    assert_eq!((npy.len(), h5.len(), png.len()), (32, 32, 32));
    assert!(h5.shards().iter().all(|s| s.is_mapped()));
    let (mut b1, mut b2, mut b3) = (Vec::new(), Vec::new(), Vec::new());
    let mut dec = Decoder::new().unwrap();
    for i in 0..32 {
        let (a, b, c) = (
            npy.get(i, &mut b1).unwrap(),
            h5.get(i, &mut b2).unwrap(),
            png.get(i, &mut b3).unwrap(),
        );
        assert_eq!((a.label, b.label), (c.label, c.label), "sample {i}");
        let (Raw::Pixels(a), Raw::Pixels(b), Raw::Encoded(c)) = (a.raw, b.raw, c.raw) else {
            panic!()
        };
        let c = dec.decode(c, 3, None).unwrap();
        let px = |v: stoker::ImageView<'_>| match v.pixels {
            stoker::Pixels::U8(p) => p.to_vec(),
            _ => panic!(),
        };
        assert_eq!((a.width, a.height), (64, 36));
        assert!(px(a) == px(c) && px(b) == px(c), "sample {i}");
    }
    // --to npy needs one shape.
    let o = stoker()
        .args(["resize", s, &out("x"), "--to", "npy", "--scale", "0.5"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("need --size"));
}

#[test]
fn json_report_lists_bad_inputs_and_resumed_work() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let inputs = make_src(&src);
    fs::write(src.join("class-a/zero.jpg"), b"").unwrap();
    fs::write(src.join("class-a/text.jpg"), b"hello, not an image").unwrap();
    let args = [
        "resize",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
        "--size",
        "64x36",
        "--json",
        "--quiet",
    ];
    let j = common::json(&run(&args));
    assert_eq!(j["mode"], "resized");
    assert_eq!(j["written"], inputs.len());
    assert_eq!(j["already_done"], 0);
    assert_eq!(j["failed"], 2);
    assert!(common::num(&j, "images_per_s") > 0.0, "{j}");
    assert!(j["errors_file"].is_null(), "{j}");
    let bad = j["bad"].as_array().unwrap();
    let reason = |name: &str| {
        bad.iter()
            .find(|b| common::text(b, "path").ends_with(name))
            .map(|b| common::text(b, "reason").to_string())
            .unwrap_or_else(|| panic!("{name} missing in {j}"))
    };
    assert_eq!(reason("zero.jpg"), "empty file (0 bytes)");
    assert_eq!(reason("text.jpg"), "not a jpeg or png");
    // A second run finds every good output done.
    let j = common::json(&run(&args));
    assert_eq!(j["written"], 0);
    assert_eq!(j["already_done"], inputs.len());
    assert_eq!(j["failed"], 2);
}

#[test]
fn decode_only_at_the_stored_size_or_at_the_resize_scale() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let inputs = make_src(&src);
    let report = |how: Option<&str>| {
        let mut args = vec![
            "resize",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            "--size",
            "64x36",
            "--json",
            "--quiet",
            "--decode-only",
        ];
        args.extend(how);
        common::json(&run(&args))
    };
    let n = inputs.len() as u64;
    // The 256x144 fixtures: the stored size, or the 1/4 DCT scale the resize decodes at.
    for (how, pixels) in [
        (None, 256 * 144),
        (Some("full"), 256 * 144),
        (Some("scaled"), 64 * 36),
    ] {
        let j = report(how);
        assert_eq!(j["mode"], "decoded", "{how:?}");
        assert_eq!(j["written"], inputs.len(), "{how:?}");
        assert_eq!(j["decoded_pixels"], n * pixels, "{how:?}");
    }
    assert!(
        files(&dst).is_empty(),
        "decode-only wrote {:?}",
        files(&dst)
    );
    let resized = common::json(&run(&[
        "resize",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
        "--size",
        "64x36",
        "--json",
        "--quiet",
    ]));
    assert!(resized["decoded_pixels"].is_null(), "{resized}");
}

/// Every sample of the data set in `dir` (opened as `stoker::source::open` opens it) as
/// (label, encoded bytes or pixels), sorted: the data set's samples whatever their order.
fn samples_of(dir: &Path) -> Vec<(Option<i64>, Vec<u8>)> {
    let src = stoker::source::open(dir, &stoker::source::OpenOptions::new())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut buf = Vec::new();
    let mut out: Vec<_> = (0..src.len())
        .map(|i| {
            let item = src.get(i, &mut buf).unwrap();
            let bytes = match item.raw {
                Raw::Encoded(b) => b.to_vec(),
                Raw::Pixels(v) => match v.pixels {
                    stoker::Pixels::U8(p) => p.to_vec(),
                    stoker::Pixels::F32(_) => panic!("u8 pixels"),
                },
            };
            (item.label, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn parts_run_in_sequence_open_as_the_unsharded_data_set() {
    use common::{stderr, stoker_launched};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let inputs = make_src(&src);
    let s = src.to_str().unwrap();
    let common = [
        "--size",
        "64x36",
        "--format",
        "png",
        "--shard-size",
        "5",
        "--quiet",
    ];
    for to in ["tar", "npy", "hdf5"] {
        let whole = dir.path().join(format!("{to}-whole"));
        run(&[
            &["resize", s, whole.to_str().unwrap(), "--to", to][..],
            &common,
        ]
        .concat());
        let want = samples_of(&whole);
        assert_eq!(want.len(), inputs.len());
        for n in [2usize, 3] {
            let dst = dir.path().join(format!("{to}-{n}"));
            let d = dst.to_str().unwrap();
            for i in 0..n {
                // Part i of n from each spelling: i/n, a Slurm array task (IDs from 1), a
                // pod of a Kubernetes indexed Job.
                let (shard, vars): (String, Vec<(&str, String)>) = match i {
                    0 => (format!("{i}/{n}"), vec![]),
                    1 => (
                        "auto".into(),
                        vec![
                            ("SLURM_ARRAY_TASK_ID", (i + 1).to_string()),
                            ("SLURM_ARRAY_TASK_MIN", "1".into()),
                            ("SLURM_ARRAY_TASK_MAX", n.to_string()),
                            ("SLURM_ARRAY_TASK_COUNT", n.to_string()),
                        ],
                    ),
                    _ => (
                        format!("auto/{n}"),
                        vec![("JOB_COMPLETION_INDEX", i.to_string())],
                    ),
                };
                let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let args = [
                    &["resize", s, d, "--to", to, "--shard", &shard][..],
                    &common,
                ]
                .concat();
                let out = stoker_launched(&args, &vars);
                assert!(out.status.success(), "{args:?} {vars:?}: {}", stderr(&out));
                if i + 1 < n {
                    // Not every part is there yet: opening it names the missing ones.
                    let e = stoker::source::open(&dst, &stoker::source::OpenOptions::new())
                        .unwrap_err();
                    let msg = e.to_string();
                    for k in i + 1..n {
                        let name = format!("stoker.part-{k:04}-of-{n:04}.json");
                        assert!(msg.contains(&name), "{to} {i}/{n}: {msg}");
                    }
                    assert!(!msg.contains(&format!("part-{i:04}-of")), "{msg}");
                }
            }
            assert_eq!(samples_of(&dst), want, "{to} in {n} parts");
            let names = files(&dst);
            assert!(!names.contains(&"stoker.json".to_string()), "{names:?}");
            let parts = names
                .iter()
                .filter(|f| f.starts_with("stoker.part-"))
                .count();
            assert_eq!(parts, n, "{names:?}");
            // A rerun of one part resumes: its shards are done, and its index is written again.
            let again = run(&[
                &["resize", s, d, "--to", to, "--shard", &format!("0/{n}")][..],
                &common,
            ]
            .concat());
            assert!(stdout(&again).contains(" 0 failed"), "{}", stdout(&again));
            assert!(
                !stdout(&again).contains(" 0 already done"),
                "{}",
                stdout(&again)
            );
            assert_eq!(samples_of(&dst), want, "{to} in {n} parts, part 0 rerun");
        }
    }
}

#[test]
fn cmyk_and_damaged_header_jpegs_resize_and_a_bomb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    fs::create_dir(&src).unwrap();
    let names = [
        "cmyk.jpg",
        "ycck.jpg",
        "junk-between-segments.jpg",
        "app14-cut.jpg",
        "app13-short.jpg",
        "bomb-65000.jpg",
    ];
    let decode_dir = fixtures().join("../decode");
    for name in names {
        fs::copy(decode_dir.join(name), src.join(name)).unwrap();
    }
    let args = |dst: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["resize", src.to_str().unwrap(), dst.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        a.extend(["--size", "25x15", "--format", "png", "--json", "--quiet"].map(String::from));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let a = args(&dst, &[]);
    let j = common::json(&run(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(
        (j["written"].as_u64(), j["failed"].as_u64()),
        (Some(5), Some(1)),
        "{j}"
    );
    let bad = &j["bad"][0];
    assert!(common::text(bad, "path").ends_with("bomb-65000.jpg"), "{j}");
    assert!(
        common::text(bad, "reason").contains("65000x65000")
            && common::text(bad, "reason").contains("max_image_pixels (178956970)"),
        "{j}"
    );
    // Each output is its source's picture at 25x15 (resize's Lanczos3, as a PNG).
    let mut d = Decoder::new().unwrap();
    d.set_filter(stoker::decode::Filter::Lanczos3);
    for name in &names[..5] {
        let out = fs::read(dst.join(name).with_extension("png")).unwrap();
        let rgb = |img: stoker::ImageView<'_>| match img.pixels {
            stoker::Pixels::U8(p) if (img.width, img.height) == (25, 15) => p.to_vec(),
            _ => panic!("{name}: {}x{}", img.width, img.height),
        };
        let got = rgb(d.decode(&out, 3, None).unwrap());
        let source = fs::read(src.join(name)).unwrap();
        let want = rgb(d.decode(&source, 3, Some((25, 15))).unwrap());
        assert!(got == want, "{name}: other pixels");
    }
    // --max-image-pixels: the 50x30 inputs are over 1000 pixels.
    let dst2 = dir.path().join("dst2");
    let a = args(&dst2, &["--max-image-pixels", "1000"]);
    let j = common::json(&run(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(
        (j["written"].as_u64(), j["failed"].as_u64()),
        (Some(0), Some(6)),
        "{j}"
    );
    for b in j["bad"].as_array().unwrap() {
        assert!(
            common::text(b, "reason").contains("max_image_pixels (1000)"),
            "{j}"
        );
    }
}
