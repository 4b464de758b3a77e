#!/usr/bin/env bash
# Instruction counts of the AVX2 and portable kernels (benches/instructions.rs: callgrind,
# through gungraun) against the committed baseline, benches/instructions.json.
#
#   tools/iai-baseline.sh            run the benches; fail when a count grew by more than 10%
#   tools/iai-baseline.sh --update   run them and write their counts as the new baseline
#
# Update the baseline on purpose only: after a change that is meant to cost instructions (say
# why in the commit message), after a change that saves them (so that the 10% guards the new
# level), or after a toolchain change. Commit benches/instructions.json with the change.
#
# Needs an x86-64 CPU with AVX2, valgrind (Debian: apt-get install valgrind; 3.19 works) and
# gungraun-runner of the version of the gungraun library in Cargo.lock
# (cargo install gungraun-runner --version VERSION --locked). Counts do not move with the
# machine's load; they do move with the toolchain: rustc, the C compiler and nasm that build
# libjpeg-turbo, glibc and valgrind. The baseline records them, and a check on another
# toolchain says so.
set -euo pipefail

update=0
case "${1:-}" in
  "") ;;
  --update) update=1 ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "iai-baseline.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
baseline=benches/instructions.json

if [ "$(uname -m)" != x86_64 ]; then
  echo "iai-baseline.sh: the benches run the AVX2 kernels: an x86-64 machine is needed" >&2
  exit 2
fi
if ! command -v valgrind >/dev/null; then
  echo "iai-baseline.sh: valgrind is not installed (Debian: apt-get install valgrind)" >&2
  exit 2
fi
version="$(awk '$0 == "name = \"gungraun\"" { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
if [ -z "$version" ]; then
  echo "iai-baseline.sh: no gungraun package in Cargo.lock" >&2
  exit 2
fi
runner="$(gungraun-runner --version 2>/dev/null | awk '{ print $2 }' || true)"
if [ "$runner" != "$version" ]; then
  echo "iai-baseline.sh: gungraun-runner ${runner:-is not installed}${runner:+ is installed, the gungraun library is $version}:" >&2
  echo "  cargo install gungraun-runner --version $version --locked" >&2
  exit 2
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# What the counts depend on besides the code (one line each).
{
  echo "rustc=$(rustc -V)"
  echo "valgrind=$(valgrind --version)"
  echo "cc=$(cc --version | head -n 1)"
  echo "nasm=$(nasm -v 2>/dev/null || echo none)"
  echo "glibc=$(ldd --version | head -n 1)"
  echo "gungraun=$version"
} >"$out/toolchain"

# One JSON line per benchmark on stdout; the build and gungraun's own lines on stderr.
if ! cargo bench -p stoker-iai --bench instructions -- --output-format=json >"$out/runs.json"; then
  echo "iai-baseline.sh: the benchmarks failed (above)" >&2
  exit 2
fi

python3 - "$out/runs.json" "$out/toolchain" "$baseline" "$update" <<'PY'
import json, sys

runs_path, toolchain_path, baseline_path, update = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
LIMIT = 10.0  # percent

counts = {}
for line in open(runs_path):
    if not line.strip():
        continue
    run = json.loads(line)
    name = f"{run['function_name']}.{run['id']}"
    counts[name] = int(run["profiles"][0]["data"]["total"]["metrics"]["Ir"]["values"]["new"])
toolchain = dict(l.rstrip("\n").split("=", 1) for l in open(toolchain_path) if "=" in l)
if not counts:
    sys.exit("iai-baseline.sh: no benchmark results")

if update:
    doc = {
        "about": "Instructions (callgrind Ir) of each benchmark in benches/instructions.rs, "
        "and the toolchain they were counted with. tools/iai-baseline.sh fails when a count "
        "grows by more than 10% over this; tools/iai-baseline.sh --update rewrites it.",
        "toolchain": toolchain,
        "instructions": dict(sorted(counts.items())),
    }
    with open(baseline_path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    for name, n in sorted(counts.items()):
        print(f"{name:<24} {n:>12,}")
    print(f"wrote {baseline_path}: commit it, and say in the message why the counts changed")
    sys.exit(0)

try:
    base = json.load(open(baseline_path))
except FileNotFoundError:
    sys.exit(f"iai-baseline.sh: no {baseline_path}: make one with tools/iai-baseline.sh --update")
old = base["instructions"]
failed = []
print(f"{'benchmark':<24} {'baseline':>12} {'now':>12} {'change':>8}")
for name in sorted(set(old) | set(counts)):
    if name not in old:
        print(f"{name:<24} {'-':>12} {counts[name]:>12,}")
        failed.append(f"{name} is not in the baseline")
        continue
    if name not in counts:
        print(f"{name:<24} {old[name]:>12,} {'-':>12}")
        failed.append(f"{name} is in the baseline but did not run")
        continue
    pct = 100.0 * (counts[name] - old[name]) / old[name]
    flag = ""
    if pct > LIMIT:
        flag = f"  over the {LIMIT:g}% allowed"
        failed.append(f"{name}: {old[name]:,} -> {counts[name]:,} instructions ({pct:+.1f}%)")
    elif pct < -LIMIT:
        flag = "  (fewer: update the baseline so that 10% guards the new count)"
    print(f"{name:<24} {old[name]:>12,} {counts[name]:>12,} {pct:>+7.1f}%{flag}")

differs = {k: (base.get("toolchain", {}).get(k), v) for k, v in toolchain.items()
           if base.get("toolchain", {}).get(k) != v}
if differs:
    print("\nThe toolchain differs from the baseline's (counts move with it):")
    for k, (was, now) in sorted(differs.items()):
        print(f"  {k}: baseline '{was}', now '{now}'")
if failed:
    print("\nFAILED: instruction counts over the baseline (benches/instructions.json):")
    for f in failed:
        print(f"  {f}")
    if differs:
        print("The toolchain changed (above): if no kernel changed, this is the toolchain's doing.\n"
              "Check by counting the parent commit with the same toolchain, then take a new\n"
              "baseline with tools/iai-baseline.sh --update and commit it, naming the toolchain.")
    else:
        print("If the growth is meant (say why in the commit message), take a new baseline with\n"
              "tools/iai-baseline.sh --update and commit benches/instructions.json.")
    sys.exit(1)
print(f"\nok: no count grew by more than {LIMIT:g}% over {baseline_path}")
PY
