//! `stoker plan` as a user runs it. Expected figures are computed here by hand from the layer
//! definitions (see docs/plan.md), not copied from the tool's output.

mod common;

use common::{stderr, stdout};
use serde_json::Value;

fn stoker(args: &[&str]) -> (bool, String, String) {
    let out = common::stoker(&[&["plan"], args].concat());
    (out.status.success(), stdout(&out), stderr(&out))
}

/// The whole `--json` output as one document.
fn doc(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not one JSON document ({e}): {json}"))
}

/// `v[key]` as an unsigned integer.
fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const OVERHEAD: u64 = 500 * MIB;
const CUDNN: u64 = 128 * MIB;

/// Saved fp32 bytes per sample of cnn4 (relu outputs; max-pool int64 indices and outputs;
/// the 512 outputs of the first dense layer's relu), for spatial sizes before and after each
/// of the four 2×2 poolings.
fn cnn4_saved(sizes: [(u64, u64); 5]) -> u64 {
    let chans = [32u64, 64, 128, 128];
    (0..4)
        .map(|b| {
            let ((w, h), (pw, ph)) = (sizes[b], sizes[b + 1]);
            4 * chans[b] * w * h + 12 * chans[b] * pw * ph
        })
        .sum::<u64>()
        + 4 * 512
}

/// Peak fp32 bytes per sample of activations and their gradients in cnn4: at the third relu,
/// the tensors the first two blocks keep, the relu's output, and its input and output (or
/// their gradients).
fn cnn4_peak(sizes: [(u64, u64); 5]) -> u64 {
    let [(w0, h0), (w1, h1), (w2, h2), ..] = sizes;
    4 * 32 * w0 * h0
        + 12 * 32 * w1 * h1
        + 4 * 64 * w1 * h1
        + 12 * 64 * w2 * h2
        + 4 * 128 * w2 * h2
        + 2 * 4 * 128 * w2 * h2
}

/// Largest `b` with `16·P + max(b·per + cuDNN, step) + overhead <= gpu`.
fn largest(params: u64, per: u64, step: u64, gpu: u64) -> u64 {
    let total = |b: u64| 16 * params + (b * per + CUDNN).max(step) + OVERHEAD;
    let mut b = 0;
    while total(b + 1) <= gpu {
        b += 1;
    }
    b
}

#[test]
fn cnn4_dense512_at_1080p_batch_1_adam() {
    let convs = (27 * 32 + 32) + (288 * 64 + 64) + (576 * 128 + 128) + (1152 * 128 + 128);
    // 1080 → 540 → 270 → 135 → 67 (floor), 1920 → 120: flatten gives 128·120·67 features.
    let dense = 128 * 120 * 67 * 512 + 512;
    let params = convs + dense + (512 * 10 + 10);
    let args = [
        "--preset",
        "cnn4-dense512",
        "--input",
        "1920x1080x3",
        "--batch-size",
        "1",
        "--optimizer",
        "adam",
        "--json",
    ];
    let (ok, json, err) = stoker(&[&args[..], &["--gpu-memory", "12GiB"]].concat());
    assert!(ok, "{err}");
    let json = doc(&json);
    assert_eq!(num(&json, "params"), params);
    assert_eq!(num(&json, "params"), 527_155_914);
    assert_eq!(json["model"], "cnn4-dense512");
    assert_eq!(json["input"]["width"], 1920);
    assert_eq!(json["optimizer"], "adam");
    // The layer the advice names is in the table, with its parameters.
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(num(&layers[14], "params"), 526_909_952);
    assert_eq!(json["top_params"]["layer"], 14);
    assert!(
        json["advice"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );
    // Adam's step needs sqrt(v) for every parameter (4 bytes each) after the activations are
    // freed; at batch 1 that (1.96 GiB) is more than the backward pass needs, so the peak is
    // 20 bytes per parameter plus the overhead: 10.3 GiB, which fits in 12 GiB.
    let big = [(1920, 1080), (960, 540), (480, 270), (240, 135), (120, 67)];
    // Per sample: every relu output and pooling's indices and output are kept; the worst
    // moment is at the third relu (its input and output, or their gradients, on top).
    assert_eq!(cnn4_saved(big), 841_791_488);
    assert_eq!(cnn4_peak(big), 895_795_200);
    let per = cnn4_peak(big) + (4 * 3 * 1920 * 1080 + 8);
    assert!(per + CUDNN < 4 * params);
    assert_eq!(num(&json["memory"], "total"), 20 * params + OVERHEAD);
    assert_eq!(num(&json["memory"], "optimizer_state"), 8 * params);
    assert_eq!(json["fits"], true);
    assert_eq!(
        num(&json, "largest_batch"),
        largest(params, per, 4 * params, 12 * GIB)
    );
    // A 10 GiB card: it does not fit, and the report says which component and which layer.
    let (ok, text, err) = stoker(&[
        "--preset",
        "cnn4-dense512",
        "--input",
        "1920x1080x3",
        "--batch-size",
        "1",
        "--optimizer",
        "adam",
        "--gpu-memory",
        "10GiB",
    ]);
    assert!(ok, "{err}");
    assert!(text.contains("DOES NOT FIT"), "{text}");
    assert!(
        text.contains("the largest part is optimizer state (adam)"),
        "{text}"
    );
    assert!(text.contains("layer 14 dense:512"), "{text}");
    assert!(text.contains("globalavgpool in place of flatten"), "{text}");
    assert!(text.contains("no batch fits in 10.0 GiB"), "{text}");
}

#[test]
fn cnn4_gap_at_256x144_largest_batch_in_12gib() {
    let params = (27 * 32 + 32)
        + (288 * 64 + 64)
        + (576 * 128 + 128)
        + (1152 * 128 + 128)
        + (128 * 512 + 512)
        + (512 * 10 + 10);
    let small = [(256, 144), (128, 72), (64, 36), (32, 18), (16, 9)];
    // Saved activations: global average pooling keeps nothing, so the last pooled map
    // (128×9×16) is not kept; the dense layer keeps the 128 pooled features.
    assert_eq!(cnn4_saved(small) - 4 * 128 * 9 * 16 + 4 * 128, 14_895_616);
    // Per sample: the peak at the third relu (15,925,248 bytes, more than all the saved
    // activations) plus the input batch and label.
    let per = cnn4_peak(small) + (4 * 3 * 256 * 144 + 8);
    let expect = largest(params, per, 4 * params, 12 * GIB);
    let (ok, json, err) = stoker(&[
        "--preset",
        "cnn4-gap",
        "--input",
        "256x144x3",
        "--gpu-memory",
        "12GiB",
        "--json",
    ]);
    assert!(ok, "{err}");
    let json = doc(&json);
    assert_eq!(num(&json, "params"), params);
    assert_eq!(num(&json, "largest_batch"), expect);
    assert_eq!(num(&json, "batch_size"), expect);
    assert_eq!(json["batch_given"], false);
    let (ok, text, err) = stoker(&[
        "--preset",
        "cnn4-gap",
        "--input",
        "256x144x3",
        "--gpu-memory",
        "12GiB",
    ]);
    assert!(ok, "{err}");
    assert!(
        text.contains(&format!("largest batch that fits in 12.0 GiB: {expect}")),
        "{text}"
    );
}

#[test]
fn accumulation_and_epoch_from_the_command_line() {
    let (ok, json, err) = stoker(&[
        "--preset",
        "cnn4-gap",
        "--input",
        "256x144x3",
        "--gpu-memory",
        "12GiB",
        "--batch-size",
        "64",
        "--effective-batch",
        "256",
        "--samples",
        "50000",
        "--step-ms",
        "80",
        "--json",
    ]);
    assert!(ok, "{err}");
    // 256 / 64 = 4 micro-batches; ceil(50000 / 64) = 782 steps × 80 ms = 62.56 s;
    // 64 images per 80 ms = 800 images/s.
    let json = doc(&json);
    let acc = &json["accumulation"];
    assert_eq!(num(acc, "micro_batch"), 64);
    assert_eq!(num(acc, "steps"), 4);
    assert_eq!(num(acc, "effective"), 256);
    let epoch = &json["epoch"];
    assert_eq!(num(epoch, "steps"), 782);
    let secs = epoch["seconds"].as_f64().unwrap();
    assert!((secs - 62.56).abs() < 1e-9, "{epoch}");
    assert_eq!(epoch["loader_images_per_s"].as_f64(), Some(800.0));
}

/// The command of the issue, as a user types it: the report names the flatten -> dense layer
/// and its exact parameter count whether or not the step fits.
#[test]
fn cnn4_dense512_at_1080p_report_explains_the_dense_layer() {
    let (ok, text, err) = stoker(&[
        "--preset",
        "cnn4-dense512",
        "--input",
        "1920x1080x3",
        "--batch-size",
        "1",
        "--gpu-memory",
        "12GiB",
        "--optimizer",
        "adam",
    ]);
    assert!(ok, "{err}");
    // 128·120·67 = 1,029,120 inputs × 512 outputs + 512 biases = 526,909,952 parameters of
    // 527,155,914 (the convolutions hold 240,832 and the last dense layer 5,130).
    assert_eq!(128 * 120 * 67 * 512 + 512, 526_909_952);
    assert_eq!(526_909_952 + 240_832 + 5_130, 527_155_914);
    assert!(text.contains("527,155,914 parameters"), "{text}");
    assert!(
        text.contains(
            "flatten -> dense:512 (layer 14) holds 526,909,952 of the 527,155,914 parameters"
        ),
        "{text}"
    );
    assert!(
        text.contains("1,029,120 inputs (a 120x67x128 map) x 512 outputs + 512 biases"),
        "{text}"
    );
    // With global average pooling the layer has 128·512 + 512 = 66,048 parameters.
    assert!(text.contains("128 inputs and 66,048 parameters"), "{text}");
    // 20 bytes per parameter (weights, gradients, 2 Adam moments, Adam's sqrt(v) temporary)
    // + 500 MiB: 10,543,118,280 + 524,288,000 bytes = 10.3 GiB of 12 GiB.
    assert!(
        text.contains("fits: batch 1 needs 10.3 GiB of 12.0 GiB"),
        "{text}"
    );
    assert!(
        text.contains("the largest part is optimizer state (adam), 3.93 GiB"),
        "{text}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let fail = |args: &[&str], want: &str| {
        let (ok, out, err) = stoker(args);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    let base = ["--input", "64x64x3", "--gpu-memory", "8GiB"];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    fail(
        &with(&["--preset", "vgg16"]),
        "unknown preset \"vgg16\" (cnn4-dense512, cnn4-gap, mobilenetv2, resnet18, resnet50)",
    );
    fail(
        &with(&["--preset", "cnn4-gap", "--optimizer", "lion"]),
        "unknown optimizer \"lion\" (sgd, momentum, adam, adamw)",
    );
    fail(
        &with(&["--preset", "cnn4-gap", "--precision", "fp8"]),
        "unknown precision \"fp8\" (fp32, amp-fp16, amp-bf16)",
    );
    fail(
        &with(&["--preset", "cnn4-gap", "--batch-size", "0"]),
        "batch size must be > 0",
    );
    fail(
        &with(&["--preset", "cnn4-gap", "--step-ms", "0", "--samples", "10"]),
        "step time must be a positive number of ms",
    );
    fail(
        &[
            "--preset",
            "cnn4-gap",
            "--input",
            "1920x0x3",
            "--gpu-memory",
            "8GiB",
        ],
        "input \"1920x0x3\": \"0\" is not a positive integer",
    );
    fail(
        &[
            "--preset",
            "cnn4-gap",
            "--input",
            "256x144x3",
            "--gpu-memory",
            "8 bananas",
        ],
        "unknown unit",
    );
    // Neither or both of --preset and --model: clap's usage error.
    fail(&base, "--preset");
    fail(
        &with(&["--preset", "cnn4-gap", "--model", "relu"]),
        "cannot be used with",
    );
    // A model too small for its input names the layer.
    fail(
        &[
            "--model",
            "maxpool2,maxpool2,maxpool2",
            "--input",
            "4x4x3",
            "--gpu-memory",
            "8GiB",
        ],
        "smaller than the kernel",
    );

    let (ok, _, err) = stoker(&[
        "--model",
        "conv3x3:32,relu,maxpool,dense:10",
        "--input",
        "64x64x3",
        "--gpu-memory",
        "8GiB",
    ]);
    assert!(!ok);
    assert!(
        err.contains("token 3 \"maxpool\": \"\" is not a positive integer"),
        "{err}"
    );
    let (ok, _, err) = stoker(&[
        "--preset",
        "cnn4-gap",
        "--input",
        "64x64x3",
        "--gpu-memory",
        "8 bananas",
    ]);
    assert!(!ok);
    assert!(err.contains("unknown unit"), "{err}");
}
