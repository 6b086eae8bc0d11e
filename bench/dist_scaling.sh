#!/usr/bin/env bash
# Step time of one fixed global batch on 1, 2 and 4 CPU ranks of this machine (MPI backend), and
# what each collective moves per step. On a machine with fewer cores than ranks the ranks share
# the cores, so the step time shows the overhead of distribution (collectives, synchronized batch
# norm, waiting for the slowest rank), not a speed-up.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/dist_scaling.sh [--help] [--ranks "1 2 4"] [--steps N] [CONFIG] [--set key.path=value ...]

For each world size N: launch/run_local.sh -n N CONFIG --no-transfer for N steps (default 30; the
first 5 are not timed), with the same global batch (train.batch_size) and every core in use
(train.threads = cores / N, at least 1). Prints, per world size: the median step time, its ratio to
one rank, and per collective: calls, bytes of the full buffer and milliseconds per step (from the
run's collectives.json).
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=$root/configs/fashion_mnist_simclr.json
ranks_list="1 2 4"
steps=30
sets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --ranks) ranks_list=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --set) shift; while [[ $# -gt 0 && "$1" != --* ]]; do sets+=("$1"); shift; done ;;
    *) config=$1; shift ;;
  esac
done
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for n in $ranks_list; do
  echo "[bench] $n rank(s): $config, $steps steps ${sets[*]:-}"
  "$root/launch/run_local.sh" -n "$n" "$config" --run-dir "$tmp/np$n" --no-transfer \
    --set train.max_steps="$steps" train.log_every=1000 optim.warmup_steps=1 "${sets[@]}" \
    >"$tmp/np$n.out" 2>&1 || { cat "$tmp/np$n.out"; exit 1; }
done

/usr/bin/python3 - "$tmp" $ranks_list <<'PY'
import json, statistics, sys
tmp, ranks = sys.argv[1], [int(r) for r in sys.argv[2:]]
rows = {}
for n in ranks:
    config = json.load(open(f"{tmp}/np{n}/config.json"))
    batch = config["train"]["batch_size"]
    metrics = [json.loads(l) for l in open(f"{tmp}/np{n}/metrics.jsonl")][5:]
    step_ms = statistics.median(1e3 * batch / r["images_per_s"] for r in metrics)
    rows[n] = (batch, step_ms, json.load(open(f"{tmp}/np{n}/collectives.json")))
base = rows[ranks[0]][1]
print(f"\n{'ranks':>5} {'global batch':>12} {'step ms':>9} {'vs ' + str(ranks[0]) + ' rank':>10}  collectives per step: calls x KiB (ms)")
for n, (batch, step_ms, coll) in rows.items():
    parts = ", ".join(f"{k} {v['calls']:.3g} x {v['bytes'] / max(v['calls'], 1e-9) / 1024:.1f} ({v['ms']:.2f})"
                      for k, v in coll.items())
    print(f"{n:>5} {batch:>12} {step_ms:>9.1f} {step_ms / base:>9.2f}x  {parts}")
PY
