//! `stoker bench` against a simulated GPU step: verdicts, the worker sweep and its plot, and
//! the `--gpu` errors on a machine without one.

mod common;

use common::{json, num, stderr, stdout, stoker, text};

#[test]
fn slow_step_is_gpu_bound() {
    // 400 ms per batch of 8 = 20 images/s: the loader is far faster on the fixtures.
    let out = stoker(&[
        "bench",
        "--batch-size",
        "8",
        "--gpu-step-ms",
        "400",
        "--epochs",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(text(&j, "verdict"), "gpu-bound", "{j}");
    assert_eq!(num(&j, "gpu_step_ms"), 400.0);
    assert_eq!(num(&j, "step_images_per_s"), 20.0);
    let idle = num(&j, "gpu_idle_fraction");
    assert!((0.0..=0.05).contains(&idle), "{j}");
    let combined = num(&j, "combined_images_per_s");
    assert!(combined > 15.0 && combined <= 20.5, "{j}");
    assert!(num(&j, "loader_images_per_s") > combined, "{j}");
    assert_eq!(j["changes"], serde_json::json!([]));
    assert!(text(&j, "reason").contains("the step sets the pace"), "{j}");
    assert_eq!(num(&j, "idle_threshold"), 0.05);
    // The earlier fields are still there.
    assert_eq!(num(&j, "samples"), 64.0);
    assert_eq!(text(&j, "memory"), "aligned");
}

#[test]
fn zero_step_is_input_bound_with_a_change() {
    let out = stoker(&[
        "bench",
        "--batch-size",
        "8",
        "--gpu-step-ms",
        "0",
        "--epochs",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("simulated GPU step: 0 ms per batch of 8"), "{s}");
    assert!(s.contains("step alone:     unlimited images/s"), "{s}");
    assert!(s.contains("verdict: input-bound: the GPU waited"), "{s}");
    assert!(s.contains("\n  change: "), "{s}");

    let out = stoker(&[
        "bench",
        "--batch-size",
        "8",
        "--gpu-step-ms",
        "0",
        "--epochs",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(text(&j, "verdict"), "input-bound", "{j}");
    assert!(j["step_images_per_s"].is_null(), "{j}");
    assert!(num(&j, "gpu_idle_fraction") > 0.5, "{j}");
    let changes = j["changes"].as_array().unwrap();
    assert!(
        !changes.is_empty() && changes.iter().all(|c| c.is_string()),
        "{j}"
    );
}

#[test]
fn sweep_prints_every_worker_count_and_plots_them() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("workers.svg");
    let svg_arg = svg.to_str().unwrap();
    let out = stoker(&[
        "bench",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--gpu-step-ms",
        "20",
        "--sweep-workers",
        "--plot",
        svg_arg,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j = json(&out);
    let cores = num(&j, "cores") as usize;
    assert!(cores >= 1);
    assert_eq!(num(&j, "gpu_step_ms"), 20.0);
    let rows = j["sweep"].as_array().unwrap();
    assert_eq!(rows.len(), cores + 1, "{j}");
    for (w, r) in rows.iter().enumerate() {
        assert_eq!(r["workers"], w, "{j}");
        assert!(num(r, "images_per_s") > 0.0, "{j}");
        assert!(num(r, "combined_images_per_s") > 0.0, "{j}");
        assert!((0.0..=1.0).contains(&num(r, "idle_fraction")), "{j}");
    }
    assert_eq!(num(&j, "step_images_per_s"), 400.0);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"), "{plot}");
    assert!(plot.trim_end().ends_with("</svg>"));
    assert_eq!(plot.matches("<circle class=\"point\"").count(), cores + 1);
    assert_eq!(plot.matches("class=\"step\"").count(), 1);

    // The text table: a header and one row per worker count.
    let out = stoker(&[
        "bench",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--sweep-workers",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    let table: Vec<&str> = s
        .lines()
        .skip_while(|l| !l.starts_with("workers"))
        .collect();
    assert!(table[0].contains("images/s"), "{s}");
    assert_eq!(table.len(), cores + 2, "{s}");
}

#[test]
fn bad_values_are_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["bench", "--gpu-step-ms", "-5"], "non-negative"),
        (&["bench", "--gpu-step-ms=-0.5"], "non-negative"),
        (&["bench", "--gpu-step-ms", "fast"], "not a number"),
        (&["bench", "--gpu-step-ms", "nan"], "non-negative"),
        (&["bench", "--gpu-step-ms", "1e9"], "not plausible"),
        (
            &["bench", "--plot", "x.svg"],
            "--plot needs --sweep-workers",
        ),
        (
            &["bench", "--sweep-workers", "--workers", "2"],
            "leave out --workers",
        ),
        (&["bench", "--gpu-step", "gemm:64"], "need --gpu"),
        (&["bench", "--gpu-convert", "f16"], "need --gpu"),
        (&["bench", "--gpu-step", "gemm:0"], "from 1 to"),
        (&["bench", "--gpu-step", "conv:3"], "unknown GPU step"),
        (&["bench", "--gpu-step", "spin:-2"], "non-negative"),
    ];
    for (args, want) in cases {
        let out = stoker(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let e = stderr(&out);
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn gpu_without_the_cuda_feature_says_how_to_rebuild() {
    let out = stoker(&["bench", "--gpu", "--gpu-step-ms", "10", "--epochs", "1"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("built without the cuda feature: rebuild with --features cuda"),
        "{e}"
    );
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_without_a_driver_says_so() {
    if stoker::cuda::driver_present() {
        eprintln!("skipped: an NVIDIA driver is present");
        return;
    }
    for step in [
        &["--gpu-step-ms", "10"][..],
        &["--gpu-step", "gemm:256"],
        &["--gpu-step", "spin:5", "--gpu-convert", "f16"],
    ] {
        let mut args = vec!["bench", "--gpu", "--epochs", "1"];
        args.extend_from_slice(step);
        let out = stoker(&args);
        assert!(!out.status.success(), "{args:?}");
        let e = stderr(&out);
        assert!(e.contains("no NVIDIA driver found:"), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
}
