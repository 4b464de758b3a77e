//! Hand-checked figures: every expected number below is computed from the layer definitions,
//! not copied from the implementation's output.

use super::*;

fn analyze(name: &str, classes: usize, input: &str) -> Analysis {
    preset(name, classes)
        .unwrap()
        .analyze(Shape::parse(input).unwrap())
        .unwrap()
}

/// conv k×k: k·k·cin·cout + cout; dense: in·out + out.
fn conv(k: u64, cin: u64, cout: u64) -> u64 {
    k * k * cin * cout + cout
}
fn dense(i: u64, o: u64) -> u64 {
    i * o + o
}

#[test]
fn published_parameter_counts() {
    assert_eq!(
        analyze("mobilenetv2", 1000, "224x224x3").params(),
        3_504_872
    );
    assert_eq!(analyze("resnet18", 1000, "224x224x3").params(), 11_689_512);
    assert_eq!(analyze("resnet50", 1000, "224x224x3").params(), 25_557_032);
}

#[test]
fn published_flops_and_buffers() {
    // torchvision reports GFLOPS as multiply-adds: 1.81 (resnet18), 4.09 (resnet50).
    let r18 = analyze("resnet18", 1000, "224x224x3").flops() as f64 / 2e9;
    let r50 = analyze("resnet50", 1000, "224x224x3").flops() as f64 / 2e9;
    assert!((r18 - 1.81).abs() < 0.02, "{r18}");
    assert!((r50 - 4.09).abs() < 0.03, "{r50}");
    // ResNet-18 batch norms: 64 (stem) + 2 blocks × 2 × 64, then per later stage 2 blocks × 2
    // plus 1 in the downsample: 4800 channels, 2 running statistics each.
    let channels = 64 + 2 * 2 * 64 + (4 + 1) * 128 + (4 + 1) * 256 + (4 + 1) * 512;
    assert_eq!(channels, 4800);
    assert_eq!(
        analyze("resnet18", 1000, "224x224x3").buffers(),
        2 * channels
    );
}

#[test]
fn cnn4_parameters_by_hand() {
    let convs = conv(3, 3, 32) + conv(3, 32, 64) + conv(3, 64, 128) + conv(3, 128, 128);
    assert_eq!(convs, 896 + 18_496 + 73_856 + 147_584);
    // 256×144: four 2×2 poolings give 16×9; 1920×1080 gives 120×67 (135 / 2 floors to 67).
    assert_eq!(
        analyze("cnn4-dense512", 10, "256x144x3").params(),
        convs + dense(128 * 16 * 9, 512) + dense(512, 10)
    );
    let big = convs + dense(128 * 120 * 67, 512) + dense(512, 10);
    assert_eq!(big, 527_155_914);
    assert_eq!(analyze("cnn4-dense512", 10, "1920x1080x3").params(), big);
    // Global average pooling: the dense layer sees 128 features at any input size.
    let gap = convs + dense(128, 512) + dense(512, 10);
    assert_eq!(gap, 312_010);
    assert_eq!(analyze("cnn4-gap", 10, "256x144x3").params(), gap);
    assert_eq!(analyze("cnn4-gap", 10, "1920x1080x3").params(), gap);
}

#[test]
fn cnn4_shapes_by_hand() {
    for (input, sizes) in [
        (
            "256x144x3",
            [(256, 144), (128, 72), (64, 36), (32, 18), (16, 9)],
        ),
        (
            "1920x1080x3",
            [(1920, 1080), (960, 540), (480, 270), (240, 135), (120, 67)],
        ),
    ] {
        let a = analyze("cnn4-dense512", 10, input);
        let l = a.layers();
        let s = |i: usize| (l[i].output.width, l[i].output.height, l[i].output.channels);
        // Layers: 1 conv, 2 relu, 3 pool, 4 conv, 5 relu, 6 pool, ... 13 flatten, 14 dense.
        let chans = [32, 64, 128, 128];
        for b in 0..4 {
            let (w, h) = sizes[b];
            assert_eq!(s(1 + 3 * b), (w, h, chans[b]), "{input} block {b}");
            let (w, h) = sizes[b + 1];
            assert_eq!(s(3 + 3 * b), (w, h, chans[b]), "{input} pool {b}");
        }
        let (w, h) = sizes[4];
        assert_eq!(s(13), (1, 1, 128 * w * h));
        assert_eq!(s(14), (1, 1, 512));
        assert_eq!(s(16), (1, 1, 10));
    }
}

/// Saved bytes per sample of cnn4 in fp32: each relu output (kept by the relu and by the
/// pooling after it), each pooling's int64 indices and output (kept by the next conv or dense),
/// and the 512 outputs of the first dense's relu.
fn cnn4_saved_fp32(sizes: [(u64, u64); 5]) -> u64 {
    let chans = [32u64, 64, 128, 128];
    let mut bytes = 0;
    for b in 0..4 {
        let (w, h) = sizes[b];
        let (pw, ph) = sizes[b + 1];
        bytes += 4 * chans[b] * w * h; // relu output
        bytes += 8 * chans[b] * pw * ph; // maxpool indices
        bytes += 4 * chans[b] * pw * ph; // pooled output, the next layer's input
    }
    bytes + 4 * 512
}

/// Peak activation bytes per sample of cnn4 in fp32, at the third relu (by hand, the worst
/// layer at both sizes): the tensors the first two blocks save (relu outputs; pooling indices
/// and outputs), the third relu's output, and its input and output (or their gradients).
fn cnn4_peak_fp32(sizes: [(u64, u64); 5]) -> u64 {
    let [(w0, h0), (w1, h1), (w2, h2), ..] = sizes;
    4 * 32 * w0 * h0
        + 12 * 32 * w1 * h1
        + 4 * 64 * w1 * h1
        + 12 * 64 * w2 * h2
        + 4 * 128 * w2 * h2
        + 2 * 4 * 128 * w2 * h2
}

#[test]
fn cnn4_activations_by_hand() {
    let small = [(256, 144), (128, 72), (64, 36), (32, 18), (16, 9)];
    let big = [(1920, 1080), (960, 540), (480, 270), (240, 135), (120, 67)];
    let a = analyze("cnn4-dense512", 10, "256x144x3");
    assert_eq!(a.saved_bytes(4), cnn4_saved_fp32(small));
    assert_eq!(
        cnn4_saved_fp32(small),
        4 * (1_179_648 + 589_824 + 294_912 + 73_728 + 512)
            + 12 * (294_912 + 147_456 + 73_728 + 18_432)
    );
    let a = analyze("cnn4-dense512", 10, "1920x1080x3");
    assert_eq!(a.saved_bytes(4), cnn4_saved_fp32(big));
    // The largest output: conv1 / relu1, 32×1080×1920.
    assert_eq!(a.largest_output(), 32 * 1080 * 1920);
    // The peak of activations and their gradients, at the third relu.
    assert_eq!(cnn4_peak_fp32(big), 895_795_200);
    assert_eq!(a.peak_bytes(4), cnn4_peak_fp32(big));
    assert_eq!(cnn4_peak_fp32(small), 15_925_248);
    let g = analyze("cnn4-gap", 10, "256x144x3");
    assert_eq!(g.peak_bytes(4), cnn4_peak_fp32(small));
    // Global average pooling keeps nothing (a mean over H and W), so the last pooled map
    // (128×9×16) is no longer kept; its 128 outputs are what the dense layer keeps.
    let g = analyze("cnn4-gap", 10, "256x144x3");
    assert_eq!(
        g.saved_bytes(4),
        cnn4_saved_fp32(small) - 4 * 128 * 9 * 16 + 4 * 128
    );
    // AMP: 16-bit activations (indices stay int64) plus the 16-bit copy of the input.
    let amp = 2 * (1_179_648 + 589_824 + 294_912 + 73_728 + 512)
        + 10 * (294_912 + 147_456 + 73_728 + 18_432)
        + 2 * 3 * 256 * 144;
    assert_eq!(
        analyze("cnn4-dense512", 10, "256x144x3").saved_bytes(2),
        amp
    );
}

#[test]
fn memory_of_a_tiny_model_by_hand() {
    let a = Model::parse("conv3x3:4,relu,flatten,dense:2")
        .unwrap()
        .analyze(Shape::parse("2x2x1").unwrap())
        .unwrap();
    let p = (9 * 4 + 4) + (16 * 2 + 2);
    assert_eq!(a.params(), p);
    let s = Settings {
        batch_size: 3,
        precision: Precision::Fp32,
        optimizer: Optimizer::Momentum,
        overhead: 0,
    };
    let m = Memory::new(&a, &s);
    assert_eq!(m.weights, 4 * p);
    assert_eq!(m.gradients, 4 * p);
    assert_eq!(m.optimizer_state, 4 * p);
    assert_eq!(m.step_temporaries, 0);
    assert_eq!(m.weight_copies, 0);
    assert_eq!(m.activations, 3 * 16 * 4); // relu output, 4×2×2
    assert_eq!(m.input, 3 * (4 * 4 + 8));
    assert_eq!(m.workspace, 3 * 2 * 16 * 4 + CUDNN_WORKSPACE);
    assert_eq!(
        m.total(),
        12 * p + 3 * 16 * 4 + 3 * 24 + 3 * 2 * 16 * 4 + CUDNN_WORKSPACE
    );
    let amp = Memory::new(
        &a,
        &Settings {
            precision: Precision::AmpBf16,
            optimizer: Optimizer::AdamW,
            ..s
        },
    );
    assert_eq!(amp.activations, 3 * (16 * 2 + 4 * 2));
    assert_eq!(amp.weight_copies, 2 * p);
    assert_eq!(amp.optimizer_state, 8 * p);
    assert_eq!(amp.step_temporaries, 4 * p);
}

#[test]
fn step_temporaries_can_set_the_peak() {
    // A dense-heavy model: Adam's sqrt(v) for every parameter outweighs the activations.
    let a = Model::parse("flatten,dense:1000")
        .unwrap()
        .analyze(Shape::parse("300x300x1").unwrap())
        .unwrap();
    let m = Memory::new(&a, &Settings::default());
    let p = 90_000 * 1000 + 1000;
    assert!(CUDNN_WORKSPACE + 3 * 4 * 90_000 + 8 < 4 * p);
    assert_eq!(m.allocated(), 16 * p + 4 * p);
    assert_eq!(m.total(), 20 * p + DEFAULT_OVERHEAD);
}

#[test]
fn cnn4_dense512_1080p_adam_verdicts() {
    let model = preset("cnn4-dense512", 10).unwrap();
    let mut req = Request::new(Shape::parse("1920x1080x3").unwrap(), 12 << 30);
    req.batch_size = Some(1);
    let p = plan(&model, &req).unwrap();
    let params = 527_155_914u64;
    // Persistent: 16 bytes per parameter (weights, gradients, two Adam moments).
    assert_eq!(p.memory.persistent(), 16 * params);
    // Backward at batch 1: saved activations + input + 2×conv1 output + cuDNN workspace;
    // the Adam step's 4 bytes per parameter (2.0 GiB) exceed it, so they set the peak.
    let big = [(1920, 1080), (960, 540), (480, 270), (240, 135), (120, 67)];
    let backward = cnn4_peak_fp32(big) + (4 * 1920 * 1080 * 3 + 8) + CUDNN_WORKSPACE;
    assert!(backward < 4 * params);
    assert_eq!(p.memory.total(), 20 * params + DEFAULT_OVERHEAD);
    // 10.5 GB = 9.82 GiB + 0.49 GiB: it fits in 12 GiB but not in 10 GiB.
    assert!(p.fits);
    req.gpu_memory = 10 << 30;
    let p = plan(&model, &req).unwrap();
    assert!(!p.fits);
    assert_eq!(p.largest_batch, 0);
    let d = p.top_params.as_ref().unwrap();
    assert_eq!(d.layer, 14);
    assert_eq!(d.amount, 128 * 120 * 67 * 512 + 512);
    assert!(p.advice[0].starts_with("does not fit"), "{:?}", p.advice);
    assert!(p.advice[0].contains("layer 14 dense:512"), "{:?}", p.advice);
    assert!(p.advice.iter().any(|a| a.contains("globalavgpool")));
}

#[test]
fn largest_batch_is_the_boundary() {
    let model = preset("cnn4-gap", 10).unwrap();
    let req = Request::new(Shape::parse("256x144x3").unwrap(), 12 << 30);
    let p = plan(&model, &req).unwrap();
    let b = p.largest_batch;
    let total = |n: u64| {
        Memory::new(
            &p.analysis,
            &Settings {
                batch_size: n,
                ..p.settings
            },
        )
        .total()
    };
    assert!(total(b) <= 12 << 30 && total(b + 1) > 12 << 30);
    // By hand: per sample, the peak of activations and their gradients (at the third relu,
    // which global average pooling does not change) + input (4·3·256·144 + 8); fixed: 16 bytes
    // per parameter + cuDNN workspace + overhead (Adam's step temporaries, 4 bytes per
    // parameter, are far smaller than the backward part).
    let small = [(256, 144), (128, 72), (64, 36), (32, 18), (16, 9)];
    let per = cnn4_peak_fp32(small) + (4 * 3 * 256 * 144 + 8);
    let fixed = 16 * 312_010 + CUDNN_WORKSPACE + DEFAULT_OVERHEAD;
    assert_eq!(b, ((12u64 << 30) - fixed) / per);
}

#[test]
fn accumulation_and_epoch() {
    let model = preset("cnn4-gap", 10).unwrap();
    let mut req = Request::new(Shape::parse("256x144x3").unwrap(), 12 << 30);
    req.batch_size = Some(48);
    req.effective_batch = Some(256);
    req.samples = Some(10_000);
    req.step_ms = Some(40.0);
    let p = plan(&model, &req).unwrap();
    // ceil(256 / 48) = 6 micro-batches: effective 288.
    assert_eq!(
        p.accumulation,
        Some(Accumulation {
            micro_batch: 48,
            steps: 6,
            effective: 288
        })
    );
    let e = p.epoch.unwrap();
    assert_eq!((e.batch_size, e.steps), (48, 209)); // ceil(10000 / 48)
    assert!((e.seconds - 8.36).abs() < 1e-9);
    assert!((e.loader_images_per_s - 1200.0).abs() < 1e-9);
    // Without a batch: the largest divisor of 256 that fits (and is at least half the largest).
    req.batch_size = None;
    req.gpu_memory = 3 << 30;
    let p = plan(&model, &req).unwrap();
    let a = p.accumulation.unwrap();
    assert!(p.largest_batch < 256, "{}", p.largest_batch);
    assert_eq!(256 % a.micro_batch, 0);
    assert!(a.micro_batch <= p.largest_batch && 2 * a.micro_batch >= p.largest_batch);
    assert_eq!(a.micro_batch * a.steps, 256);
    // The epoch runs at the micro-batch: ceil(10000 / micro) steps of 40 ms.
    let e = p.epoch.unwrap();
    assert_eq!(e.batch_size, a.micro_batch);
    assert_eq!(e.steps, 10_000u64.div_ceil(a.micro_batch));
}

#[test]
fn parse_errors_name_the_token() {
    let msg = |t: &str| Model::parse(t).unwrap_err().message().to_string();
    assert_eq!(
        msg("conv3x3:32,relu,poool2"),
        "token 3 \"poool2\": unknown layer \"poool2\""
    );
    assert_eq!(msg("relu,,relu"), "token 2 \"\": empty layer");
    assert_eq!(
        msg("conv3x5:8"),
        "token 1 \"conv3x5:8\": kernel \"3x5\" is not square"
    );
    assert_eq!(
        msg("relu,add:2"),
        "token 2 \"add:2\": add:2 reaches before the input (1 layers so far)"
    );
    assert_eq!(
        msg("conv3x3:8/s2/q1"),
        "token 1 \"conv3x3:8/s2/q1\": unknown option \"q1\""
    );
    assert!(msg("dropout:1.5").contains("not in [0, 1)"));
    assert!(msg("conv3x3").contains("needs output channels"));
    // Shape errors name the layer.
    let e = Model::parse("conv3x3:8,dense:10")
        .unwrap()
        .analyze(Shape::parse("8x8x3").unwrap())
        .unwrap_err();
    assert!(e.message().contains("dense needs a flat input"), "{e}");
    let e = Model::parse("conv7x7:8/valid")
        .unwrap()
        .analyze(Shape::parse("4x4x3").unwrap())
        .unwrap_err();
    assert!(e.message().contains("smaller than the kernel"), "{e}");
}

#[test]
fn text_residual_matches_the_builder() {
    let text = Model::parse("conv3x3:8/nobias,bn,relu,conv3x3:8/nobias,bn,add:5,relu").unwrap();
    let mut b = Builder::new();
    let x = b.cursor();
    b.conv(8, 3, 1, 1, false).bn().relu();
    b.conv(8, 3, 1, 1, false).bn().add(x).relu();
    let built = b.build();
    let s = Shape::parse("16x16x8").unwrap();
    let (t, u) = (text.analyze(s).unwrap(), built.analyze(s).unwrap());
    assert_eq!(t.params(), 2 * 9 * 8 * 8 + 2 * 2 * 8);
    assert_eq!(t.params(), u.params());
    assert_eq!(text.nodes()[6].inputs, vec![5, 0]);
    assert_eq!(text.nodes().len(), built.nodes().len());
    for (a, b) in text.nodes().iter().zip(built.nodes()) {
        assert_eq!((a.op.kind(), &a.inputs), (b.op.kind(), &b.inputs));
    }
    // Strided, padded conv: floor((16 + 2 - 3) / 2) + 1 = 8; same padding: ceil(16 / 2) = 8.
    let m = Model::parse("conv3x3:4/s2/p1,conv3x3:4/s3").unwrap();
    let a = m.analyze(s).unwrap();
    assert_eq!(a.layers()[1].output.width, 8);
    assert_eq!(a.layers()[2].output.width, 3);
}

#[test]
fn relu_keeps_its_output_relu6_its_input() {
    let saved = |t: &str| {
        Model::parse(t)
            .unwrap()
            .analyze(Shape::parse("2x2x1").unwrap())
            .unwrap()
            .saved_bytes(4)
    };
    // conv (keeps the input batch: counted as the input), bn keeps the conv output (4×2×2) and
    // 2 statistics per channel; relu's output is also the second conv's input: one tensor.
    assert_eq!(
        saved("conv1x1:4,bn,relu,conv1x1:4"),
        4 * 16 + 4 * 8 + 4 * 16
    );
    // relu6 keeps its input (the bn output), and the second conv keeps relu6's output.
    assert_eq!(
        saved("conv1x1:4,bn,relu6,conv1x1:4"),
        4 * 16 + 4 * 8 + 4 * 16 + 4 * 16
    );
    // Global average pooling keeps nothing; the dense layer keeps its 4 inputs.
    assert_eq!(saved("conv1x1:4,relu,gap,dense:2"), 4 * 16 + 4 * 4);
}

#[test]
fn saved_activations_match_pytorch() {
    // Bytes autograd saves per sample in fp32, measured by tools/validate_plan.py with
    // torch.autograd.graph.saved_tensors_hooks (PyTorch 2.15, CPU; see docs/plan.md). On the
    // CPU, dropout keeps a float mask (4 bytes per element) where CUDA keeps a bool one, so
    // MobileNetV2's 1280-feature dropout reads 3 × 1280 bytes more there.
    assert_eq!(
        analyze("resnet18", 1000, "224x224x3").saved_bytes(4),
        21_616_128
    );
    assert_eq!(
        analyze("resnet50", 1000, "224x224x3").saved_bytes(4),
        85_519_872
    );
    assert_eq!(
        analyze("mobilenetv2", 1000, "224x224x3").saved_bytes(4),
        77_743_872 - 3 * 1280
    );
    assert_eq!(
        analyze("cnn4-gap", 10, "256x144x3").saved_bytes(4),
        14_895_616
    );
    assert_eq!(
        analyze("cnn4-dense512", 10, "1920x1080x3").saved_bytes(4),
        841_791_488
    );
}
