#!/usr/bin/env bash
# Training throughput of selfsup against the same model, batch and loss in Python PyTorch, measured
# in one run on this machine. Prints both numbers and the ratio.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/throughput.sh [--help] [CONFIG] [--steps N] [--set key.path=value ...]

Runs `selfsup train CONFIG --no-transfer` for N steps (default 30; the first 3 are not timed) and
bench/simclr_reference.py (Python PyTorch, /usr/bin/python3) on the resolved config of that run,
with the same threads. selfsup's figure includes data loading and augmentation (the loader runs
in worker threads); the Python figure is the model step alone on a pre-made batch, run twice: as
is, and with the glibc allocator settings selfsup applies to itself.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SELFSUP_BIN:-$root/build/selfsup}
config=$root/configs/fashion_mnist_simclr.json
steps=30
sets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --steps) steps=$2; shift 2 ;;
    --set) shift; while [[ $# -gt 0 && "$1" != --* ]]; do sets+=("$1"); shift; done ;;
    *) config=$1; shift ;;
  esac
done
[[ -x "$bin" ]] || { echo "bench: $bin not built; run launch/build.sh first" >&2; exit 1; }

run=$(mktemp -d)/run
trap 'rm -rf "$(dirname "$run")"' EXIT
echo "[bench] selfsup: $config, $steps steps ${sets[*]:-}"
"$bin" train "$config" --run-dir "$run" --no-transfer \
  --set train.max_steps="$steps" train.log_every=10 optim.warmup_steps=1 "${sets[@]}" >/dev/null
threads=$(awk '/ threads$/ && !n++ {print $(NF-1)}' "$run/logs/rank0.log")

selfsup_json=$(/usr/bin/python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][3:]
import statistics
batch = None
seconds = sum(1.0 / r["images_per_s"] for r in rows)  # per image; batch cancels below
print(json.dumps({"impl": "selfsup", "images_per_s": len(rows) / seconds,
                  "data_wait_ms_mean": statistics.mean(r["data_wait_ms"] for r in rows)}))
PY
)
echo "[bench] PyTorch reference ($threads threads)"
reference_json=$(/usr/bin/python3 "$root/bench/simclr_reference.py" "$run/config.json" \
  --steps "$steps" --threads "$threads")
# The same reference with the allocator policy selfsup sets for itself (src/cli/main.cpp), so the
# ratio also shows what is left once both keep freed memory for reuse.
tuned_json=$(MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \
  MALLOC_TOP_PAD_=268435456 /usr/bin/python3 "$root/bench/simclr_reference.py" "$run/config.json" \
  --steps "$steps" --threads "$threads")

/usr/bin/python3 - "$selfsup_json" "$reference_json" "$run/config.json" "$tuned_json" <<'PY'
import json, sys
ours, ref, cfg = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.load(open(sys.argv[3]))
tuned = json.loads(sys.argv[4])
m = cfg["model"]
print(f"model {m['encoder']} width {m['width']} stem_stride {m.get('stem_stride')} "
      f"channels_last {m.get('channels_last')} | batch {cfg['train']['batch_size']} x "
      f"{cfg['augment']['views']} views | {ref['threads']} threads")
print(f"  selfsup (C++, with data loading)  {ours['images_per_s']:8.1f} images/s "
      f"(mean wait for data {ours['data_wait_ms_mean']:.1f} ms/step)")
print(f"  PyTorch {ref['torch']} (model step)     {ref['images_per_s']:8.1f} images/s")
print(f"  PyTorch, same allocator settings  {tuned['images_per_s']:8.1f} images/s")
print(f"  ratio selfsup / PyTorch           {ours['images_per_s'] / ref['images_per_s']:8.2f}x")
print(f"  ratio selfsup / PyTorch (same allocator settings) "
      f"{ours['images_per_s'] / tuned['images_per_s']:.2f}x")
PY
