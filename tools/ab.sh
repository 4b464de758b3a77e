#!/usr/bin/env bash
# A/B runs of `stoker bench`: two variants, alternately, on one machine, and the median ratio.
#
#   tools/ab.sh [-n PAIRS] [--json] A B -- BENCH_ARGS...
#
# A variant is a quoted list of words: a word that starts with '-' is a bench argument of that
# variant only (write --flag=value), a NAME=VALUE word an environment setting, and any other
# word the stoker binary to run (default: target/release/stoker). So
#
#   tools/ab.sh 'STOKER_VBMI=on' 'STOKER_VBMI=off' -- DIR --workers 1 --augment default
#   tools/ab.sh /tmp/old/stoker target/release/stoker -- DIR --augment default
#   tools/ab.sh --augment=default --augment=none -- DIR --workers 2
#
# Each pair runs both variants, A first in odd pairs and B first in even ones (so that a slow
# drift of the machine falls on both), and prints images/s, their ratio A/B, and the ratio of
# each stage's time per image (A/B: below 1, A is faster there). Then the medians over the
# pairs, and the CPU model. --json prints one JSON object instead (the pairs, the medians, the
# CPU and the variants). Default: 5 pairs.
set -euo pipefail

pairs=5
json=0
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) pairs="$2"; shift 2 ;;
    --json) json=1; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) if [ ${#variants[@]} -lt 2 ] && [[ "$1" == --*=* ]]; then variants+=("$1"); shift
        else echo "ab.sh: unknown option $1 (see --help)" >&2; exit 2; fi ;;
    *) variants+=("$1"); shift ;;
  esac
done
if [ ${#variants[@]} -ne 2 ]; then
  echo "ab.sh: need two variants, then --, then the bench arguments (see --help)" >&2
  exit 2
fi
if ! [[ "$pairs" =~ ^[1-9][0-9]*$ ]]; then
  echo "ab.sh: -n wants a positive count of pairs, not '$pairs'" >&2
  exit 2
fi
bench_args=("$@")
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Runs variant $1 (its words) for pair $2: its JSON report goes to $out/$2-<A|B>.json.
run() {
  local words=($1) tag="$2" bin="$root/target/release/stoker" envs=() args=() w
  for w in "${words[@]}"; do
    if [[ "$w" == -* ]]; then args+=("$w")
    elif [[ "$w" == *=* ]]; then envs+=("$w")
    else bin="$w"; fi
  done
  if [ ! -x "$bin" ]; then
    echo "ab.sh: $bin is not an executable (build it with cargo build --release -p stoker-tools)" >&2
    exit 2
  fi
  if ! env ${envs[@]+"${envs[@]}"} "$bin" bench "${bench_args[@]}" ${args[@]+"${args[@]}"} --json >"$out/$tag.json" 2>"$out/$tag.err"; then
    echo "ab.sh: variant '$1' failed:" >&2
    cat "$out/$tag.err" >&2
    exit 1
  fi
}

for ((p = 1; p <= pairs; p++)); do
  if ((p % 2 == 1)); then
    run "${variants[0]}" "$p-A"; run "${variants[1]}" "$p-B"
  else
    run "${variants[1]}" "$p-B"; run "${variants[0]}" "$p-A"
  fi
  [ "$json" = 1 ] || echo "pair $p done" >&2
done

python3 - "$out" "$pairs" "$json" "${variants[0]}" "${variants[1]}" <<'PY'
import json, statistics, sys

out, pairs, as_json, va, vb = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
stages = ["read", "decode", "transform", "write"]

def ratio(a, b):
    # A stage that one variant does not run (the transform of --augment=none: the timer's
    # own cost, well under 1 us per image) has no ratio.
    return a / b if a >= 1e-3 and b >= 1e-3 else None

rows = []
for p in range(1, pairs + 1):
    a = json.load(open(f"{out}/{p}-A.json"))
    b = json.load(open(f"{out}/{p}-B.json"))
    row = {
        "pair": p,
        "first": "A" if p % 2 == 1 else "B",
        "a_images_per_s": a["images_per_s"],
        "b_images_per_s": b["images_per_s"],
        "images_per_s_ratio": a["images_per_s"] / b["images_per_s"],
        "a_stage_ms": a["stage_ms_per_image"],
        "b_stage_ms": b["stage_ms_per_image"],
        "stage_ratio": {s: ratio(a["stage_ms_per_image"][s], b["stage_ms_per_image"][s]) for s in stages},
        "a_cpu": a.get("cpu"),
        "b_cpu": b.get("cpu"),
    }
    rows.append(row)

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

medians = {
    "images_per_s_ratio": med(r["images_per_s_ratio"] for r in rows),
    "a_images_per_s": med(r["a_images_per_s"] for r in rows),
    "b_images_per_s": med(r["b_images_per_s"] for r in rows),
    "stage_ratio": {s: med(r["stage_ratio"][s] for r in rows) for s in stages},
    "a_stage_ms": {s: med(r["a_stage_ms"][s] for r in rows) for s in stages},
    "b_stage_ms": {s: med(r["b_stage_ms"][s] for r in rows) for s in stages},
}
model = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
report = {"a": va, "b": vb, "cpu_model": model, "pairs": rows, "median": medians}
if as_json:
    print(json.dumps(report))
    sys.exit(0)

def f(x, spec=".3f"):
    return "-" if x is None else format(x, spec)

print(f"A: {va}")
print(f"B: {vb}")
print(f"cpu: {model}")
print("pair first  A images/s  B images/s   A/B  " + "  ".join(f"{s:>9}" for s in stages))
for r in rows:
    print(f"{r['pair']:>4} {r['first']:>5} {r['a_images_per_s']:>11.0f} {r['b_images_per_s']:>11.0f} "
          f"{f(r['images_per_s_ratio']):>6}  " + "  ".join(f"{f(r['stage_ratio'][s]):>9}" for s in stages))
m = medians
print(f"median     {m['a_images_per_s']:>11.0f} {m['b_images_per_s']:>11.0f} "
      f"{f(m['images_per_s_ratio']):>6}  " + "  ".join(f"{f(m['stage_ratio'][s]):>9}" for s in stages))
print("median stage ms per image, A: " + ", ".join(f"{s} {f(m['a_stage_ms'][s])}" for s in stages))
print("median stage ms per image, B: " + ", ".join(f"{s} {f(m['b_stage_ms'][s])}" for s in stages))
PY
