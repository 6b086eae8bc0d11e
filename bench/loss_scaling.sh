#!/usr/bin/env bash
# Loss forward+backward time and peak memory against the pool size (issue 4): the dense InfoNCE
# (info_nce) and the tiled one (info_nce_tiled), side by side in one run, B_local = 1024, V = 2,
# D = 128, the pool beyond the 2 048 gathered columns being a queue of recycled negatives.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/loss_scaling.sh [--help] [--quick] [--max-pool N] [--threads T] [--block-size N]

Builds the selfsup_bench_loss target (outside `all`) in $SELFSUP_BUILD_DIR (default build/, with
$SELFSUP_JOBS jobs, default all cores), then, for pool sizes 2k, 4k, 16k, 64k, 256k and 1M columns
(2^11 ... 2^20; --quick: up to 16k; --max-pool N: up to N), runs one process for the dense loss and
one for the tiled loss (one point per process: the peak-memory mark is per process). Each prints a
JSON line (kept in the printed file); the script then prints a markdown table.

Repetitions (median reported): up to 16k columns 1 warm-up + 5 timed passes, 64k and 256k 1 + 3,
1M 0 + 2 (the tiled loss reuses its block memory from the first block on, so a warm-up pass adds
little there). The full run should take about 8-10 minutes on 2 cores (extrapolated from 64k). Dense points whose estimated memory exceeds 60 % of RAM are not run; their estimate is
shown instead. The smallest pool is 2k, not 1k: B_local = 1024 with 2 views already gathers 2 048
columns.

  --quick         pool sizes up to 16k only (1-2 minutes)
  --max-pool N    largest pool size in columns (default 1048576)
  --threads T     intra-op threads (default: all cores)
  --block-size N  columns per block of the tiled loss (default 4096, the library default)
USAGE
}

max_pool=1048576
threads=0
block_size=4096
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --quick) max_pool=16384; shift ;;
    --max-pool) max_pool=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --block-size) block_size=$2; shift 2 ;;
    *) echo "loss_scaling.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SELFSUP_BUILD_DIR:-$root/build}
jobs=${SELFSUP_JOBS:-$(nproc)}
bin=$build_dir/selfsup_bench_loss

if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  echo "[bench] configuring $build_dir"
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >"$build_dir.cmake.log" 2>&1 \
    || { cat "$build_dir.cmake.log" >&2; echo "[bench] cmake failed" >&2; exit 1; }
fi
echo "[bench] building selfsup_bench_loss in $build_dir ($jobs jobs; a no-op when up to date)"
build_log=$(mktemp)
cmake --build "$build_dir" --target selfsup_bench_loss -j "$jobs" >"$build_log" 2>&1 \
  || { cat "$build_log" >&2; rm -f "$build_log"; echo "[bench] build failed" >&2; exit 1; }
rm -f "$build_log"

results=$(mktemp --suffix=.jsonl /tmp/loss_scaling.XXXXXX)
echo "[bench] JSON lines in $results"
for pool in 2048 4096 16384 65536 262144 1048576; do
  ((pool > max_pool)) && break
  if ((pool <= 16384)); then warmup=1 reps=5
  elif ((pool <= 262144)); then warmup=1 reps=3
  else warmup=0 reps=2
  fi
  for mode in dense tiled; do
    echo "[bench] pool $pool, $mode: $warmup warm-up + $reps timed"
    "$bin" --mode "$mode" --pool "$pool" --block-size "$block_size" --threads "$threads" \
      --warmup "$warmup" --reps "$reps" | tee -a "$results"
  done
done

/usr/bin/python3 - "$results" <<'PY'
import json, statistics, sys
points = [json.loads(line) for line in open(sys.argv[1])]
by_pool = {}
for p in points:
    by_pool.setdefault(p["pool"], {})[p["mode"]] = p
timed = [p for p in points if "seconds" in p]
first = points[0]
print(f"\nrows {first['rows']} (B_local x V), D {first['dim']}, gathered columns {first['cols']}, "
      f"the rest of the pool a queue; tiled block {first['block_size']} columns; "
      f"{first['threads']} threads; allocator: {first['allocator']}")
if timed:
    rate = statistics.median(p["gemm_gflops"] for p in timed)
    print(f"GEMM [{first['rows']}, {first['dim']}] x [{first['dim']}, {first['block_size']}]: "
          f"{rate:.1f} GFLOP/s (median over the processes; each point's "
          f"FLOP-bound time is its GFLOP over the rate measured in its own process)\n")

def label(n):
    return f"{n >> 20}M" if n >= 1 << 20 else f"{n >> 10}k"

print("| pool | dense ms | dense peak MB | tiled ms | tiled peak MB | tiled/dense time "
      "| tiled peak / dense need | tiled / FLOP-bound |")
print("|---|---|---|---|---|---|---|---|")
for pool, modes in sorted(by_pool.items()):
    dense, tiled = modes.get("dense"), modes.get("tiled")
    cells = [f"{label(pool)} ({pool})"]
    dense_need = None
    if dense is None:
        cells += ["-", "-"]
    elif "skipped" in dense:
        dense_need = dense["dense_estimate_mb"]
        cells += ["not run", f"needs ~{dense_need:,.0f} (estimate)"]
    else:
        dense_need = dense["peak_extra_mb"]
        cells += [f"{1e3 * dense['seconds']:,.1f}", f"{dense_need:,.0f}"]
    if tiled is None:
        cells += ["-", "-", "-", "-", "-"]
    else:
        cells += [f"{1e3 * tiled['seconds']:,.1f}", f"{tiled['peak_extra_mb']:,.0f}"]
        cells.append(f"{tiled['seconds'] / dense['seconds']:.2f}x"
                     if dense is not None and "seconds" in dense else "-")
        cells.append(f"{100 * tiled['peak_extra_mb'] / dense_need:.2f} %"
                     if dense_need else "-")
        cells.append(f"{tiled['ratio_to_flop_bound']:.2f}x")
    print("| " + " | ".join(c.replace(",", " ") for c in cells) + " |")
PY
