//! The `stoker` binary as a user runs it.

mod common;

use common::{json, num, stoker, text};

#[test]
fn bench_digest_is_the_same_for_any_workers_and_prefetch() {
    let mut digests = Vec::new();
    for (w, p) in [("0", "1"), ("1", "8"), ("2", "1"), ("2", "8")] {
        let out = stoker(&[
            "bench",
            "--digest",
            "--json",
            "--workers",
            w,
            "--prefetch",
            p,
            "--epochs",
            "2",
            "--batch-size",
            "6",
            "--seed",
            "3",
            "--dtype",
            "f16",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j = json(&out);
        assert_eq!(j["samples"], 64);
        assert_eq!(j["batches"], 12);
        assert_eq!(j["skipped"], 0);
        assert_eq!(j["dtype"], "f16");
        assert_eq!(j["layout"], "nchw");
        assert!(num(&j, "images_per_s") > 0.0);
        assert!(num(&j["stage_ms_per_image"], "decode") >= 0.0);
        digests.push(text(&j, "digest").to_string());
    }
    assert!(digests.windows(2).all(|d| d[0] == d[1]), "{digests:?}");
    // A different seed gives a different digest.
    let out = stoker(&[
        "bench",
        "--digest",
        "--json",
        "--epochs",
        "2",
        "--batch-size",
        "6",
        "--seed",
        "4",
        "--dtype",
        "f16",
    ]);
    assert_ne!(text(&json(&out), "digest"), digests[0]);
}

#[test]
fn bench_reads_npy_and_manifest_with_equal_pixels() {
    let run = |args: &[&str]| {
        let mut all = vec![
            "bench", "--digest", "--json", "--epochs", "1", "--dtype", "u8", "--layout", "nhwc",
            "--seed", "9",
        ];
        all.extend_from_slice(args);
        let out = stoker(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text(&json(&out), "digest").to_string()
    };
    let folder = run(&[]);
    assert_eq!(folder, run(&["fixtures/manifest.csv"]));
    assert_eq!(
        folder,
        run(&[
            "fixtures/npy/images-*.npy",
            "--labels",
            "fixtures/npy/labels-*.npy"
        ])
    );
}

#[test]
fn bench_reports_in_words_by_default() {
    let out = stoker(&["bench", "--epochs", "1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["images/s", "consumer waited", "decode", "skipped: 0"] {
        assert!(text.contains(needle), "{needle:?} missing in {text}");
    }
}

#[test]
fn bad_paths_and_flags_are_clear_errors() {
    let out = stoker(&["bench", "no/such/folder"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no/such/folder"), "{err}");

    let out = stoker(&["bench", "--dtype", "f64"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown dtype")
    );

    let out = stoker(&["bench", "--size", "12by3"]);
    assert!(!out.status.success());
}

#[test]
fn skip_policy_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("c");
    std::fs::create_dir_all(&class).unwrap();
    let root = common::root().join("fixtures/photos-256x144/class-a");
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, class.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(class.join("zz-broken.jpg"), b"\xff\xd8\xff garbage").unwrap();
    let d = dir.path().to_str().unwrap();
    let out = stoker(&["bench", d, "--epochs", "1", "--json"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("zz-broken.jpg")
    );
    let out = stoker(&[
        "bench",
        d,
        "--epochs",
        "1",
        "--json",
        "--on-error",
        "skip",
        "--no-shuffle",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["skipped"], 1);
    assert_eq!(j["samples"], 8);
    assert_eq!(j["skipped_by_kind"]["decode"], 1);
    assert_eq!(j["decode_policy"], "tolerant");
    // No skip allowed: the run stops with the bound's error, naming the first failure.
    let out = stoker(&[
        "bench",
        d,
        "--epochs",
        "1",
        "--json",
        "--on-error",
        "skip",
        "--max-skipped",
        "0",
    ]);
    assert!(!out.status.success());
    let e = common::stderr(&out);
    assert!(
        e.contains("skip limit") && e.contains("zz-broken.jpg"),
        "{e}"
    );
}

#[test]
fn bench_and_augment_preview_take_cmyk_jpegs_and_skip_bombs() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("c");
    std::fs::create_dir_all(&class).unwrap();
    let fixtures = common::root().join("fixtures/decode");
    for name in ["cmyk.jpg", "ycck.jpg", "bomb-65000.jpg", "bomb-65000.png"] {
        std::fs::copy(fixtures.join(name), class.join(name)).unwrap();
    }
    let d = dir.path().to_str().unwrap();
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            d,
            "--epochs",
            "1",
            "--json",
            "--size",
            "40x24",
            "--on-error",
            "skip",
            "--max-skipped",
            "100%",
        ];
        args.extend(extra);
        stoker(&args)
    };
    let out = bench(&[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let j = json(&out);
    assert_eq!(
        (j["samples"].as_u64(), j["skipped"].as_u64()),
        (Some(2), Some(2)),
        "{j}"
    );
    assert_eq!(j["skipped_by_kind"]["decode"], 2);
    // Above the limit, the 50x30 CMYK JPEGs are refused too: every sample fails.
    let out = bench(&["--max-image-pixels", "1499"]);
    assert!(!out.status.success());
    let e = common::stderr(&out);
    assert!(
        e.contains("skip limit") && e.contains("exceeds max_image_pixels (1499)"),
        "{e}"
    );
    // augment-preview decodes them through the loader.
    for name in ["bomb-65000.jpg", "bomb-65000.png"] {
        std::fs::remove_file(class.join(name)).unwrap();
    }
    let png = dir.path().join("preview.png");
    let out = stoker(&[
        "augment-preview",
        d,
        "--out",
        png.to_str().unwrap(),
        "-n",
        "2",
        "--size",
        "40x24",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let preview = std::fs::read(&png).unwrap();
    let mut dec = stoker::decode::Decoder::new().unwrap();
    let (w, h) = dec.stored_size(&preview).unwrap();
    assert!(w >= 2 * 40 && h >= 24, "{w}x{h}");
}

#[test]
fn typed_values_are_checked_by_clap() {
    // A bad value: clap's usage error (status 2) naming the value and the choices.
    for (flag, value, want) in [
        (
            "--dtype",
            "f64",
            "unknown dtype \"f64\" (u8, f16, bf16, f32)",
        ),
        ("--layout", "chw", "unknown layout \"chw\""),
        ("--on-error", "ignore", "unknown error policy \"ignore\""),
        ("--normalize", "coco", "unknown normalisation \"coco\""),
    ] {
        let out = stoker(&["bench", "--epochs", "1", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let e = common::stderr(&out);
        assert!(
            e.contains(&format!("invalid value '{value}' for '{flag}")),
            "{e}"
        );
        assert!(e.contains(want), "{e}");
    }
    // Every spelling accepted before is accepted still, in any case the library allows.
    let out = stoker(&[
        "bench",
        "--json",
        "--epochs",
        "1",
        "--dtype",
        "HALF",
        "--layout",
        "NHWC",
        "--on-error",
        "fail",
        "--normalize",
        "imagenet",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let j = json(&out);
    assert_eq!(j["dtype"], "f16");
    assert_eq!(j["layout"], "nhwc");
    let out = stoker(&["bench", "--json", "--epochs", "1", "--dtype", "float"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(json(&out)["dtype"], "f32");
}

#[test]
fn tune_tries_the_grid_and_suggests_the_fastest() {
    let out = stoker(&["bench", "--tune", "--workers", "1", "--json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v = common::json(&out);
    let trials = v["trials"].as_array().unwrap();
    // --workers is kept: prefetch 1, 2, 4 × batch 32, 64, 128.
    assert_eq!(trials.len(), 9, "{v}");
    assert!(trials.iter().all(|t| t["workers"] == 1), "{v}");
    let ips: Vec<f64> = trials
        .iter()
        .map(|t| common::num(t, "images_per_s"))
        .collect();
    assert!(
        ips.windows(2).all(|w| w[0] >= w[1]),
        "fastest first: {ips:?}"
    );
    assert!(ips.iter().all(|&r| r > 0.0));
    assert_eq!(v["best"], trials[0]);
    let (best, current) = (&v["best"], &v["current"]);
    assert_eq!(
        (current["prefetch"].as_u64(), current["batch_size"].as_u64()),
        (Some(2), Some(64))
    );
    assert!(common::num(&v, "speedup") >= 1.0, "{v}");
    assert_eq!(
        common::text(&v, "builder"),
        format!(
            ".batch_size({}).num_workers(1).prefetch({})",
            best["batch_size"], best["prefetch"]
        )
    );
    // A tuning run is its own run length.
    let out = stoker(&["bench", "--tune", "--epochs", "2"]);
    assert!(!out.status.success());
}

#[test]
fn against_gives_a_ratio_from_each_round() {
    for b in ["decode", "fixtures/npy"] {
        let out = stoker(&[
            "bench",
            "--against",
            b,
            "--epochs",
            "1",
            "--workers",
            "1",
            "--json",
        ]);
        assert!(out.status.success(), "{b}: {}", common::stderr(&out));
        let v = json(&out);
        let rounds = v["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 5, "{v}");
        let mut ratios: Vec<f64> = rounds
            .iter()
            .map(|r| {
                let (a, bb, q) = (
                    num(r, "a_images_per_s"),
                    num(r, "b_images_per_s"),
                    num(r, "ratio"),
                );
                assert!(a > 0.0 && bb > 0.0, "{r}");
                assert!((q - a / bb).abs() < 1e-9 * q.max(1.0), "{r}");
                q
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        assert_eq!(num(&v, "ratio"), ratios[2], "{v}");
        assert!(
            text(&v, "a").contains("photos") || text(&v, "a").contains("folder"),
            "{v}"
        );
        if b == "decode" {
            assert!(text(&v, "b").contains("decode only"), "{v}");
        } else {
            assert!(text(&v, "b").contains("npy"), "{v}");
        }
    }
    let out = stoker(&["bench", "--against", "decode", "--tune"]);
    assert!(!out.status.success());
}

/// `stoker inspect DIR | head -1`: a closed stdout ends the program quietly (killed by
/// SIGPIPE, as other Unix tools), not in a panic.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        &["inspect", "fixtures/photos-256x144"][..],
        &[
            "plan",
            "--preset",
            "resnet18",
            "--input",
            "224x224x3",
            "--batch-size",
            "8",
            "--gpu-memory",
            "12GiB",
        ],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stoker"))
            .args(args)
            .current_dir(common::root())
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(libc_sigpipe()),
            "{args:?}: {:?}",
            out.status
        );
    }
}

/// SIGPIPE's number (13 on Linux and the BSDs).
#[cfg(unix)]
fn libc_sigpipe() -> i32 {
    13
}

/// `stoker bench --json` names the CPU and what the augmentation ran on it; `STOKER_VBMI`
/// forces a variant (with the same digest), and a bad value is a usage error naming it.
#[test]
fn bench_reports_the_cpu_and_the_vbmi_choice() {
    let run = |vbmi: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stoker"))
            .args([
                "bench",
                "--json",
                "--digest",
                "--epochs",
                "2",
                "--workers",
                "2",
            ])
            .args(["--batch-size", "8", "--augment", "default"])
            .env("STOKER_VBMI", vbmi)
            .current_dir(common::root())
            .output()
            .unwrap();
        assert!(out.status.success(), "{vbmi}: {}", common::stderr(&out));
        json(&out)
    };
    let mut digests = Vec::new();
    for vbmi in ["on", "off", "auto"] {
        let j = run(vbmi);
        let cpu = &j["cpu"];
        assert!(!text(cpu, "model").is_empty());
        assert_eq!(text(cpu, "vbmi"), vbmi);
        let has = cpu["has_vbmi"].as_bool().unwrap();
        let kept = &cpu["vbmi_rgb"];
        match vbmi {
            // 64 samples: the 16 trials are done, a choice is kept.
            "auto" => assert!(kept.is_boolean(), "{cpu}"),
            v => assert_eq!(kept.as_bool(), Some(v == "on" && has), "{cpu}"),
        }
        if vbmi == "auto" && has {
            assert!(cpu["vbmi_ycbcr"].is_null(), "no YCbCr sample ran: {cpu}");
        }
        digests.push(text(&j, "digest").to_string());
    }
    assert!(digests.windows(2).all(|d| d[0] == d[1]), "{digests:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stoker"))
        .args(["bench", "--json", "--epochs", "1", "--augment", "default"])
        .env("STOKER_VBMI", "sometimes")
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("STOKER_VBMI=\"sometimes\""));
}

/// `tools/ab.sh` runs two variants of `stoker bench` alternately and reports each pair, the
/// medians and the CPU as JSON; a variant that fails stops it with that variant's error.
#[test]
fn ab_script_alternates_two_variants_and_gives_the_median_ratio() {
    let bin = env!("CARGO_BIN_EXE_stoker");
    let ab = common::root().join("tools/ab.sh");
    let run = |a: String, b: String| {
        std::process::Command::new("bash")
            .arg(&ab)
            .args(["-n", "2", "--json", &a, &b, "--"])
            .args(["--epochs", "1", "--batch-size", "8", "--workers", "1"])
            .current_dir(common::root())
            .output()
            .unwrap()
    };
    let out = run(
        format!("STOKER_VBMI=on {bin} --augment=default"),
        bin.to_string(),
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    let j = json(&out);
    assert!(!text(&j, "cpu_model").is_empty());
    let pairs = j["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    // Odd pairs run A first, even ones B first.
    assert_eq!(
        (text(&pairs[0], "first"), text(&pairs[1], "first")),
        ("A", "B")
    );
    let mut ratios = Vec::new();
    for p in pairs {
        let (a, b) = (num(p, "a_images_per_s"), num(p, "b_images_per_s"));
        assert!(a > 0.0 && b > 0.0);
        let r = num(p, "images_per_s_ratio");
        assert!((r - a / b).abs() < 1e-9 * r.max(1.0));
        ratios.push(r);
        // A augments, B does not: the transform stage has no ratio, A's CPU says VBMI on.
        assert!(num(&p["a_stage_ms"], "transform") > 0.0);
        assert!(p["stage_ratio"]["transform"].is_null());
        assert_eq!(text(&p["a_cpu"], "vbmi"), "on");
        assert_eq!(text(&p["b_cpu"], "vbmi"), "auto");
    }
    let median = num(&j["median"], "images_per_s_ratio");
    assert!((median - (ratios[0] + ratios[1]) / 2.0).abs() < 1e-9);
    // A variant that fails.
    let out = run(format!("{bin} --augment=spin"), bin.to_string());
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("--augment=spin") && err.contains("spin"),
        "{err}"
    );
}

#[test]
fn bench_reports_the_rank_and_where_it_came_from() {
    use common::{stderr, stoker_launched};
    let bench = ["bench", "--json", "--epochs", "1", "--batch-size", "4"];
    let run = |vars: &[(&str, &str)]| {
        let out = stoker_launched(&bench, vars);
        assert!(out.status.success(), "{vars:?}: {}", stderr(&out));
        let j = json(&out);
        (
            j["rank"].as_u64().unwrap(),
            j["world_size"].as_u64().unwrap(),
            j["rank_source"].as_str().unwrap().to_string(),
            j["samples"].as_u64().unwrap(),
        )
    };
    let s = |t: &str| t.to_string();
    // 32 fixture images: a rank of 2 sees 16 of them.
    assert_eq!(run(&[]), (0, 1, s("none"), 32));
    assert_eq!(
        run(&[("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")]),
        (1, 2, s("torchrun"), 16)
    );
    assert_eq!(
        run(&[("PMI_RANK", "3"), ("PMI_SIZE", "4")]),
        (3, 4, s("pmi"), 8)
    );
    assert_eq!(
        run(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")]),
        (0, 2, s("openmpi"), 16)
    );
    let srun = [
        ("SLURM_PROCID", "1"),
        ("SLURM_NTASKS", "2"),
        ("SLURM_LOCALID", "0"),
        ("SLURM_STEP_ID", "0"),
    ];
    assert_eq!(run(&srun), (1, 2, s("slurm"), 16));
    // torchrun started by srun: torchrun's rank, not the srun task's.
    let mut both = srun.to_vec();
    both.extend([("RANK", "3"), ("WORLD_SIZE", "4")]);
    assert_eq!(run(&both), (3, 4, s("torchrun"), 8));

    // The batch script of `sbatch --ntasks=4`, no srun: one process, the whole data set, and
    // a warning that says so.
    let batch = [
        ("SLURM_PROCID", "0"),
        ("SLURM_NTASKS", "4"),
        ("SLURM_LOCALID", "0"),
    ];
    let out = stoker_launched(&bench, &batch);
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(
        (&j["rank_source"], &j["world_size"]),
        (&"none".into(), &1.into())
    );
    assert_eq!(j["samples"], 32);
    let e = stderr(&out);
    assert!(e.contains("SLURM_NTASKS=4") && e.contains("srun"), "{e}");

    // A launcher's variables half set: a usage error naming the missing one.
    let out = stoker_launched(&bench, &[("PMI_RANK", "1")]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("PMI_RANK is set but PMI_SIZE is not"), "{e}");
    let out = stoker_launched(&bench, &[("RANK", "2"), ("WORLD_SIZE", "2")]);
    assert!(
        stderr(&out).contains("RANK 2 must be < WORLD_SIZE 2"),
        "{}",
        stderr(&out)
    );
}
