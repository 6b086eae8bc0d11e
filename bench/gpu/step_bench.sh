#!/usr/bin/env bash
# SimCLR training-step throughput on one GPU: selfsup's C++ step benchmark against the same model,
# batch, precision, loss and optimizer in Python PyTorch (bench/gpu/simclr_step_reference.py),
# in one run on one machine, with model FLOP utilisation against the GPU's measured bf16 rate and
# peak memory. Every run is under `timeout`; it never waits for input.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash bench/gpu/step_bench.sh [--help] [--selfsup-bench BIN [--selfsup-bench-arg ARG ...]]
                                    [--python PATH] [--steps N] [--warmup N]
                                    [--timeout-per-run SECONDS] [--out DIR] [--cpu-dry-run]

Runs, in order:
  peak      the dense bf16 matmul rate (8192^3 torch.matmul, median of 10): the MFU denominator
  for each configuration
              resnet50, imagenet stem, 224x224, batch 256 per GPU, bf16, channels-last
              resnet18, small stem,    32x32,   batch 512 per GPU, bf16, channels-last
            the Python reference, then BIN with the same flags:
              --model M --stem S --image-size N --batch B --precision P --channels-last
              --device D --warmup W --steps N --json
            (BIN prints one JSON line, impl "selfsup", with the fields of the Python line)
then prints a markdown table: images/s of each, the ratio selfsup/PyTorch, MFU of each
(images/s * counted training FLOPs per image / measured peak) and peak GPU memory of each.
"batch" counts images; the step sees 2*batch views, and the FLOPs per image cover both views.

Options:
  --selfsup-bench BIN     selfsup's step benchmark executable. When it is missing (or not given)
                          selfsup is recorded as "not built" and the Python side still runs
  --selfsup-bench-arg ARG an argument put before the flags, e.g. a subcommand (repeatable)
  --python PATH           Python with PyTorch (default python3)
  --steps N, --warmup N   timed and untimed steps per run (default 30 and 10; dry run 1 and 0)
  --timeout-per-run SEC   limit for each run (default 240)
  --out DIR               where the results go; default $OUT when set, else a new temporary folder
  --cpu-dry-run           on a CPU machine: device cpu, resnet18 small stem 32x32, batch 4, fp32,
                          no peak measurement, and selfsup only when --selfsup-bench is given
Results: DIR/step_bench.jsonl (every JSON line, with an "error" line for a run that failed or was
not built), DIR/step_bench.log (each run's output), DIR/step_bench.md (the table).
Exit status: 0 when every run that was started succeeded, 1 otherwise, 2 for bad arguments.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
reference=$root/bench/gpu/simclr_step_reference.py
python=python3
selfsup_bench=""
selfsup_args=()
steps=""
warmup=""
timeout_per_run=240
out_dir=""
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --selfsup-bench) selfsup_bench=${2:?--selfsup-bench needs a path}; shift 2 ;;
    --selfsup-bench-arg) selfsup_args+=("${2:?--selfsup-bench-arg needs a value}"); shift 2 ;;
    --python) python=${2:?--python needs a path}; shift 2 ;;
    --steps) steps=${2:?--steps needs a number}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs a number}; shift 2 ;;
    --timeout-per-run) timeout_per_run=${2:?--timeout-per-run needs seconds}; shift 2 ;;
    --out) out_dir=${2:?--out needs a folder}; shift 2 ;;
    --cpu-dry-run) dry_run=1; shift ;;
    *) echo "step_bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ $dry_run -eq 1 ]]; then
  device=cpu
  steps=${steps:-1}
  warmup=${warmup:-0}
  configs=("resnet18 small 32 4 fp32 channels-last")
else
  device=cuda
  steps=${steps:-30}
  warmup=${warmup:-10}
  configs=("resnet50 imagenet 224 256 bf16 channels-last"
           "resnet18 small 32 512 bf16 channels-last")
fi
[[ "$steps" =~ ^[1-9][0-9]*$ && "$warmup" =~ ^[0-9]+$ && "$timeout_per_run" =~ ^[1-9][0-9]*$ ]] \
  || { echo "step_bench.sh: --steps and --timeout-per-run take positive numbers, --warmup >= 0" >&2; exit 2; }
command -v "$python" >/dev/null || { echo "step_bench.sh: no Python at '$python' (--python)" >&2; exit 2; }

# An explicit --out wins over $OUT: a test run inside a device session must not write its results
# where the session's own results go.
dest=${out_dir:-${OUT:-}}
[[ -n "$dest" ]] || dest=$(mktemp -d "${TMPDIR:-/tmp}/step_bench.XXXXXX")
mkdir -p "$dest"
jsonl=$dest/step_bench.jsonl
log=$dest/step_bench.log
table=$dest/step_bench.md
: >"$jsonl"
: >"$log"

say() { echo "$*" | tee -a "$log"; }
failed=0

# record_error IMPL MODEL STEM SIZE BATCH PRECISION CHANNELS_LAST MESSAGE: a JSON line in place of
# a result, so the table shows why a cell is empty. Every value is one of ours: no quoting needed.
record_error() {
  printf '{"impl": "%s", "model": "%s", "stem": "%s", "image_size": %s, "batch": %s, "precision": "%s", "channels_last": %s, "device": "%s", "error": "%s"}\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$device" "$8" >>"$jsonl"
}

# run_one LABEL COMMAND...: runs COMMAND under the time limit, its output to the log, and appends
# its last JSON line to the jsonl. Prints nothing to stdout except the summary line.
# Returns 1 (and logs the output's end) when the command failed or printed no JSON.
run_one() {
  local label=$1
  shift
  local output rc=0 start=$SECONDS line
  output=$(mktemp)
  {
    echo "===== $label"
    printf '$'; printf ' %q' "$@"; echo
  } >>"$log"
  PYTHONUNBUFFERED=1 timeout -k 10 "$timeout_per_run" "$@" >"$output" 2>&1 </dev/null || rc=$?
  cat "$output" >>"$log"
  line=$(grep '^{' "$output" | tail -n 1 || true)
  if [[ $rc -eq 0 && -n "$line" ]]; then
    echo "$line" >>"$jsonl"
    say "[step_bench] $label: ok in $(( SECONDS - start ))s"
    rm -f "$output"
    return 0
  fi
  case $rc in
    0) run_error="printed no JSON line" ;;
    124|137) run_error="timed out after ${timeout_per_run}s" ;;
    *) run_error="exit $rc" ;;
  esac
  say "[step_bench] $label: FAILED ($run_error) in $(( SECONDS - start ))s; its output ends:"
  tail -n 20 "$output" | sed 's/^/  | /' | tee -a "$log"
  rm -f "$output"
  return 1
}

say "[step_bench] $(date -u +%Y-%m-%dT%H:%M:%SZ) device=$device steps=$steps warmup=$warmup" \
    "timeout=${timeout_per_run}s python=$python results=$dest"
if [[ $device == cuda ]] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv,noheader \
    2>/dev/null | sed 's/^/[step_bench] gpu: /' | tee -a "$log" || true
fi

if [[ $dry_run -eq 0 ]]; then
  run_one "peak bf16 matmul" "$python" "$reference" --peak-bf16 --device cuda --json \
    || { failed=1; echo '{"impl": "peak", "error": "'"$run_error"'"}' >>"$jsonl"; }
fi

selfsup_state=run
if [[ -z "$selfsup_bench" ]]; then
  if [[ $dry_run -eq 1 ]]; then selfsup_state=skip; else selfsup_state="not built"; fi
elif [[ ! -x "$selfsup_bench" ]]; then
  selfsup_state="not built"
fi
if [[ $selfsup_state == "not built" ]]; then
  say "[step_bench] selfsup: not built (${selfsup_bench:-no --selfsup-bench given}); running the Python side only"
fi

for config in "${configs[@]}"; do
  read -r model stem size batch precision layout <<<"$config"
  channels_last=$([[ $layout == channels-last ]] && echo true || echo false)
  flags=(--model "$model" --stem "$stem" --image-size "$size" --batch "$batch"
         --precision "$precision" "--$layout" --device "$device"
         --warmup "$warmup" --steps "$steps" --json)
  name="$model/$stem/$size b$batch $precision $layout"
  run_one "pytorch $name" "$python" "$reference" "${flags[@]}" || {
    failed=1
    record_error pytorch "$model" "$stem" "$size" "$batch" "$precision" "$channels_last" "$run_error"
  }
  case $selfsup_state in
    run)
      run_one "selfsup $name" "$selfsup_bench" ${selfsup_args[@]+"${selfsup_args[@]}"} "${flags[@]}" || {
        failed=1
        record_error selfsup "$model" "$stem" "$size" "$batch" "$precision" "$channels_last" "$run_error"
      } ;;
    "not built")
      record_error selfsup "$model" "$stem" "$size" "$batch" "$precision" "$channels_last" "not built" ;;
  esac
done

# The table: only json from the standard library, so any Python does.
"$python" - "$jsonl" >"$table" <<'PY'
import json
import sys

rows = []
for text in open(sys.argv[1]):
    text = text.strip()
    if text:
        try:
            rows.append(json.loads(text))
        except ValueError:
            rows.append({"impl": "?", "error": "unreadable line: " + text[:80]})

peak = next((r for r in rows if r.get("impl") == "peak"), None)
peak_tflops = peak.get("bf16_tflops") if peak else None
configs, by_key = [], {}
for r in rows:
    if r.get("impl") not in ("pytorch", "selfsup"):
        continue
    key = (r.get("model"), r.get("stem"), r.get("image_size"), r.get("batch"), r.get("precision"),
           r.get("channels_last"))
    try:  # "224" and 224, "true" and true: one row for the two sides of a configuration
        key = (str(key[0]), str(key[1]), int(key[2]), int(key[3]), str(key[4]),
               str(key[5]).lower() == "true")
    except (TypeError, ValueError):
        pass
    if key not in by_key:
        by_key[key] = {}
        configs.append(key)
    by_key[key][r["impl"]] = r

def rate(r):
    return r.get("images_per_s") if r and "error" not in r else None

def num(value, fmt):
    return "—" if value is None else format(value, fmt)

def cell(r, value, fmt):
    if r is None:
        return "—"
    if "error" in r:
        return r["error"]
    return num(value, fmt)

if peak_tflops:
    print(f"Peak dense bf16 matmul: {peak_tflops:.1f} TFLOP/s ({peak.get('matmul_size')}^3, "
          f"{peak.get('gpu_name')}, torch {peak.get('torch_version')})")
elif peak and "error" in peak:
    print(f"Peak dense bf16 matmul: {peak['error']} (no MFU)")
else:
    print("Peak dense bf16 matmul: not measured (no MFU)")
print()
print("| config | PyTorch images/s | selfsup images/s | selfsup/PyTorch | PyTorch MFU | selfsup MFU "
      "| PyTorch peak mem GiB | selfsup peak mem GiB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
notes = []
for key in configs:
    model, stem, size, batch, precision, channels_last = key
    py, ss = by_key[key].get("pytorch"), by_key[key].get("selfsup")
    # One FLOP count for both sides (the model is the same), the reference's when it ran.
    flops = next((r.get("flops_per_image_train") for r in (py, ss)
                  if r and "error" not in r and r.get("flops_per_image_train")), None)
    if py and ss and "error" not in py and "error" not in ss:
        a, b = py.get("flops_per_image_train"), ss.get("flops_per_image_train")
        if a and b and abs(b / a - 1) > 0.03:
            notes.append(f"{model}/{stem}/{size}: selfsup counts {b / 1e9:.2f} GFLOP/image, "
                         f"PyTorch {a / 1e9:.2f}; MFU uses PyTorch's for both")
    def mfu(r):
        ips = rate(r)
        if ips is None or not flops or not peak_tflops:
            return None
        return 100 * ips * flops / (peak_tflops * 1e12)
    ratio = rate(ss) / rate(py) if rate(py) and rate(ss) else None
    label = f"{model} {stem} {size}px b{batch} {precision}{' CL' if channels_last else ''}"
    mfu_py, mfu_ss = mfu(py), mfu(ss)
    print(f"| {label} | {cell(py, rate(py), '.1f')} | {cell(ss, rate(ss), '.1f')} | {num(ratio, '.3f')} "
          f"| {num(mfu_py, '.1f') + ('%' if mfu_py is not None else '')} "
          f"| {num(mfu_ss, '.1f') + ('%' if mfu_ss is not None else '')} "
          f"| {num(py and py.get('peak_mem_gib'), '.2f')} | {num(ss and ss.get('peak_mem_gib'), '.2f')} |")
    if flops:
        notes.append(f"{model}/{stem}/{size}: {flops / 1e9:.2f} GFLOP per image trained "
                     "(2 views x 3 x forward, convolutions and linears)")
if notes:
    print()
    for n in notes:
        print("- " + n)
PY
say ""
tee -a "$log" <"$table"
say ""
say "[step_bench] results: $jsonl, $table, $log"
exit $failed
