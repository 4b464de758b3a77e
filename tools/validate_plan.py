#!/usr/bin/env python3
"""Check `stoker plan` against PyTorch.

Builds stoker's presets in PyTorch (torchvision's mobilenet_v2, resnet18 and resnet50; the
cnn4 models as nn.Sequential, layer for layer as stoker defines them) and compares:

- always (CPU is enough): parameter and buffer counts, the output elements of every layer type
  (conv, dense, batch norm, max pooling, relu) and the bytes autograd saves for the backward pass
  per sample in fp32, measured with torch.autograd.graph.saved_tensors_hooks;
- with CUDA: torch.cuda.max_memory_allocated of a training step (forward, loss, backward,
  optimizer step) at several batch sizes, precisions (fp32; amp-fp16 and amp-bf16 through
  torch.autocast with fp32 master weights) and optimizers (sgd, momentum, adam), next to the
  `allocated` figure of `stoker plan --json` (the peak in PyTorch's allocator, without the CUDA
  context overhead, which max_memory_allocated does not see).

Prints markdown tables. Usage:

    cargo build --release -p stoker-tools
    python3 tools/validate_plan.py target/release/stoker
    python3 tools/validate_plan.py target/release/stoker --presets resnet50 --batch-sizes 1,64

Exit status: 0 when every CPU check matches and every GPU row is within --tolerance (15%);
1 otherwise; 2 when torch is missing.
"""

import argparse
import json
import subprocess
import sys

# (preset, classes, input WxHxC, batch sizes for the GPU comparison or None for the default)
CASES = [
    ("cnn4-dense512", 10, "256x144x3", None),
    ("cnn4-dense512", 10, "1920x1080x3", [1]),
    ("cnn4-gap", 10, "256x144x3", None),
    ("cnn4-gap", 10, "1920x1080x3", [1, 8]),
    ("mobilenetv2", 1000, "224x224x3", None),
    ("resnet18", 1000, "224x224x3", None),
    ("resnet50", 1000, "224x224x3", None),
]


def parse_input(s):
    w, h, c = (int(v) for v in s.lower().split("x"))
    return w, h, c


def stoker_plan(binary, preset, classes, inp, batch=1, precision="fp32", optimizer="sgd",
                gpu_memory="1TiB"):
    cmd = [binary, "plan", "--preset", preset, "--classes", str(classes), "--input", inp,
           "--batch-size", str(batch), "--precision", precision, "--optimizer", optimizer,
           "--gpu-memory", gpu_memory, "--overhead", "0", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def build(torch, preset, classes, inp):
    """The preset as a torch.nn.Module, exactly as stoker defines it."""
    nn = torch.nn
    w, h, c = parse_input(inp)
    if preset in ("cnn4-dense512", "cnn4-gap"):
        layers = []
        cin = c
        for cout in (32, 64, 128, 128):
            # conv3x3 'same' (padding 1) with bias, relu, 2x2 max pooling (floor).
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            cin = cout
            w, h = w // 2, h // 2
        if preset == "cnn4-dense512":
            layers += [nn.Flatten(), nn.Linear(128 * w * h, 512)]
        else:
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 512)]
        layers += [nn.ReLU(), nn.Linear(512, classes)]
        return nn.Sequential(*layers)
    import torchvision

    ctor = {
        "mobilenetv2": torchvision.models.mobilenet_v2,
        "resnet18": torchvision.models.resnet18,
        "resnet50": torchvision.models.resnet50,
    }[preset]
    return ctor(weights=None, num_classes=classes)


# stoker layer kinds -> torch module types whose outputs they correspond to
KINDS = {
    "conv": ("Conv2d",),
    "dense": ("Linear",),
    "batchnorm": ("BatchNorm2d",),
    "maxpool": ("MaxPool2d",),
    "relu": ("ReLU", "ReLU6"),
}


def torch_cpu_facts(torch, model, inp):
    """Parameters, buffers, output elements per layer type and saved bytes for one sample."""
    w, h, c = parse_input(inp)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    elems = {k: 0 for k in KINDS}
    hooks = []
    for m in model.modules():
        name = type(m).__name__
        for k, types in KINDS.items():
            if name in types:
                def hook(_m, _i, out, k=k):
                    elems[k] += out.numel()
                hooks.append(m.register_forward_hook(hook))
    own = {p.untyped_storage().data_ptr() for p in model.parameters()}
    own |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    x = torch.randn(1, c, h, w)
    own.add(x.untyped_storage().data_ptr())
    saved = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in own:
            saved[s.data_ptr()] = s.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    for hk in hooks:
        hk.remove()
    return params, buffers, elems, sum(saved.values())


def stoker_elems(plan):
    elems = {k: 0 for k in KINDS}
    for layer in plan["layers"]:
        kind = {"depthwise": "conv", "relu6": "relu"}.get(layer["kind"], layer["kind"])
        if kind in elems:
            ch, hh, ww = layer["output"]
            elems[kind] += ch * hh * ww
    return elems


def cpu_checks(torch, binary, cases):
    print("## CPU checks: parameters, buffers, layer outputs, saved activations (fp32, per sample)\n")
    print("| model | input | params stoker | params torch | buffers stoker | buffers torch "
          "| layer outputs | saved B/sample stoker | saved B/sample torch | error |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
    ok = True
    for preset, classes, inp, _ in cases:
        plan = stoker_plan(binary, preset, classes, inp)
        torch.manual_seed(0)
        model = build(torch, preset, classes, inp)
        params, buffers, elems, saved = torch_cpu_facts(torch, model, inp)
        del model
        se = stoker_elems(plan)
        same = params == plan["params"] and buffers == plan["buffers"]
        diff = [k for k in KINDS if se[k] != elems[k]]
        outputs = "equal" if not diff else "differ: " + ", ".join(
            f"{k} {se[k]} vs {elems[k]}" for k in diff)
        ok &= same and not diff
        pred = plan["saved_bytes_per_sample"]
        err = 100.0 * (pred - saved) / saved if saved else 0.0
        print(f"| {preset} | {inp} | {plan['params']:,} | {params:,} | {plan['buffers']:,} "
              f"| {buffers:,} | {outputs} | {pred:,} | {saved:,} | {err:+.1f}% |")
    print()
    return ok


def train_step_peak(torch, model, opt, scaler, x, y, precision):
    F = torch.nn.functional
    dtype = {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}.get(precision)
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        loss = F.cross_entropy(model(x), y)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    del loss


def gpu_rows(torch, binary, cases, batches, precisions, optimizers, tolerance):
    dev = torch.device("cuda")
    total_mem = torch.cuda.get_device_properties(dev).total_memory
    name = torch.cuda.get_device_name(dev)
    print(f"## GPU: torch.cuda.max_memory_allocated of a training step on {name} "
          f"({total_mem / 2**30:.1f} GiB), torch {torch.__version__}\n")
    print("Each row: build the model, run one step to create the optimizer state, reset the peak, "
          "run a second step and read the peak. `predicted` is `memory.allocated` of "
          "`stoker plan --json` (no CUDA context overhead).\n")
    print("| model | input | batch | precision | optimizer | predicted | measured | error |")
    print("|---|---|---:|---|---|---:|---:|---:|")
    ok = True
    for preset, classes, inp, case_batches in cases:
        w, h, c = parse_input(inp)
        for batch in case_batches or batches:
            for precision in precisions:
                if precision == "amp-bf16" and not torch.cuda.is_bf16_supported():
                    continue
                for optimizer in optimizers:
                    plan = stoker_plan(binary, preset, classes, inp, batch, precision, optimizer,
                                       gpu_memory=str(total_mem))
                    pred = plan["memory"]["allocated"]
                    torch.cuda.empty_cache()
                    torch.manual_seed(0)
                    measured = None
                    try:
                        model = build(torch, preset, classes, inp).to(dev).train()
                        if optimizer == "adam":
                            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                        else:
                            momentum = 0.9 if optimizer == "momentum" else 0.0
                            opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=momentum)
                        scaler = torch.cuda.amp.GradScaler() if precision == "amp-fp16" else None
                        x = torch.randn(batch, c, h, w, device=dev)
                        y = torch.randint(0, classes, (batch,), device=dev)
                        train_step_peak(torch, model, opt, scaler, x, y, precision)
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats(dev)
                        train_step_peak(torch, model, opt, scaler, x, y, precision)
                        torch.cuda.synchronize()
                        measured = torch.cuda.max_memory_allocated(dev)
                    except torch.cuda.OutOfMemoryError:
                        pass
                    finally:
                        model = opt = scaler = x = y = None
                        torch.cuda.empty_cache()
                    if measured is None:
                        print(f"| {preset} | {inp} | {batch} | {precision} | {optimizer} "
                              f"| {pred / 2**20:,.0f} MiB | out of memory | |")
                        continue
                    err = 100.0 * (pred - measured) / measured
                    ok &= abs(err) <= tolerance
                    print(f"| {preset} | {inp} | {batch} | {precision} | {optimizer} "
                          f"| {pred / 2**20:,.0f} MiB | {measured / 2**20:,.0f} MiB | {err:+.1f}% |",
                          flush=True)
    print()
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stoker", help="path to the stoker binary (cargo build --release -p stoker-tools)")
    ap.add_argument("--presets", default=None, help="comma-separated presets (default: all)")
    ap.add_argument("--batch-sizes", default="1,32,128")
    ap.add_argument("--precisions", default="fp32,amp-fp16,amp-bf16")
    ap.add_argument("--optimizers", default="sgd,momentum,adam")
    ap.add_argument("--tolerance", type=float, default=15.0, help="GPU rows: allowed error in %%")
    ap.add_argument("--cpu-only", action="store_true", help="skip the GPU comparison")
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        print("torch is not installed: pip install torch torchvision", file=sys.stderr)
        return 2
    cases = CASES
    if args.presets:
        want = args.presets.split(",")
        unknown = set(want) - {c[0] for c in CASES}
        if unknown:
            ap.error(f"unknown presets {sorted(unknown)}")
        cases = [c for c in CASES if c[0] in want]
    # One entry per (preset, input) for the CPU checks.
    ok = cpu_checks(torch, args.stoker, cases)
    if args.cpu_only:
        return 0 if ok else 1
    if not torch.cuda.is_available():
        print("No CUDA device: the memory comparison (torch.cuda.max_memory_allocated against "
              "`stoker plan`) needs an NVIDIA GPU; only the CPU checks above ran.")
        return 0 if ok else 1
    batches = [int(b) for b in args.batch_sizes.split(",")]
    ok &= gpu_rows(torch, args.stoker, cases, batches, args.precisions.split(","),
                   args.optimizers.split(","), args.tolerance)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
