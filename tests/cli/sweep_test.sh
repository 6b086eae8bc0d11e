#!/usr/bin/env bash
# launch/sweep.sh end to end on a tiny 2-cell spec (a slice of Fashion-MNIST, a few steps per
# cell): --dry-run lists the cells, bad grids are rejected before anything runs, the sweep writes
# results.csv with finite numbers and the plots, a second run resumes (skips finished cells), and
# the collector reads the trainer's summary.json (checked on a hand-made cell directory).
# Usage: sweep_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
command -v jq >/dev/null || { echo "SKIP: jq not found (launch/setup.sh installs it)"; exit 77; }
if ! command -v mpirun >/dev/null; then
  echo "SKIP: mpirun not found; sweep cells run through launch/run_local.sh"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SELFSUP_BIN=$bin SELFSUP_LAUNCHER=local
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
sweep=$src/launch/sweep.sh
# fail MESSAGE [FILE...]: show the files, then the failure.
fail() { local message=$1; shift; cat "$@" 2>/dev/null || true; echo "FAIL: $message"; exit 1; }

# The grid: batch 32 and 64 x no queue and a queue of 256 keys (a multiple of 64 x 2 views; it
# fills within the budget, so the last step's N counts all of it).
queue_axis='"negatives.queue_size": [0, 256],' cells=4

# write_spec FILE BATCH_SIZES [QUEUE_AXIS]: a tiny spec, 512 images per cell.
write_spec() {
  cat >"$1" <<JSON
{"base": "$src/configs/fashion_mnist_simclr.json", "name": "tiny", "budget": {"images": 512},
 "grid": {"train.batch_size": $2, ${3:-} "world_size": [1]},
 "set": {"data.limit_train": 1024, "data.limit_test": 512, "optim.warmup_steps": 2,
         "train.log_every": 4, "train.threads": 1, "transfer.baselines": false,
         "transfer.linear.epochs": 5, "transfer.knn.k": 20, "transfer.finetune.enabled": false}}
JSON
}
write_spec "$tmp/spec.json" "[32, 64]" "$queue_axis"

# --dry-run: ids, names and overrides, and the Slurm array range.
"$sweep" "$tmp/spec.json" --dry-run >"$tmp/dry" 2>&1 || fail "--dry-run" "$tmp/dry"
grep -Eq "^  0  b32-.* steps 16$" "$tmp/dry" || fail "--dry-run lacks cell 0" "$tmp/dry"
grep -q "train.batch_size=64 .*train.max_steps=8 " "$tmp/dry" ||
  fail "--dry-run lacks the overrides of batch 64" "$tmp/dry"
grep -q "sbatch --array=0-$((cells - 1)) " "$tmp/dry" || fail "--dry-run lacks the array range" "$tmp/dry"
[[ ! -e "$tmp/out" ]] || fail "--dry-run created files"
echo "ok   --dry-run lists $cells cells"

# expect_error NAME PATTERN -- COMMAND...: exit status 2, PATTERN on stderr, no cell run.
expect_error() {
  local name=$1 pattern=$2 status=0; shift 3
  "$@" >"$tmp/out.txt" 2>"$tmp/err.txt" || status=$?
  if [[ $status -ne 2 ]] || ! grep -Eq "$pattern" "$tmp/err.txt" || [[ -e "$tmp/bad_out" ]]; then
    fail "$name: status $status, want 2 and /$pattern/" "$tmp/out.txt" "$tmp/err.txt"
  fi
  echo "ok   $name: $(grep -E "$pattern" "$tmp/err.txt" | head -n 1)"
}
write_spec "$tmp/nondividing.json" "[32, 48]"
expect_error non-dividing-budget "budget.images = 512 is not a multiple of train.batch_size = 48" -- \
  "$sweep" "$tmp/nondividing.json" --out "$tmp/bad_out"
write_spec "$tmp/badqueue.json" "[32]" '"negatives.queue_size": [100],'
expect_error queue-not-whole-batches "negatives.queue_size = 100 is not a multiple of .* = 64" -- \
  "$sweep" "$tmp/badqueue.json" --out "$tmp/bad_out"
# Accumulation: an optimizer step sees batch x accumulate_steps images of the budget.
write_spec "$tmp/accumulate.json" "[32]" '"train.accumulate_steps": [2],'
"$sweep" "$tmp/accumulate.json" --dry-run >"$tmp/dry_accumulate" 2>&1 || fail "--dry-run (accumulate)" "$tmp/dry_accumulate"
grep -q "train.accumulate_steps=2 .*train.max_steps=8 " "$tmp/dry_accumulate" ||
  fail "accumulation: 512 images at 32 x 2 per step should give 8 steps" "$tmp/dry_accumulate"
echo "ok   accumulation: 8 optimizer steps of 32 x 2 images"
write_spec "$tmp/badaccumulate.json" "[32]" '"train.accumulate_steps": [3],'
expect_error accumulation-not-dividing "budget.images = 512 is not a multiple of train.batch_size x train.accumulate_steps = 32 x 3" -- \
  "$sweep" "$tmp/badaccumulate.json" --out "$tmp/bad_out"
expect_error unknown-cell "no cell '7'.*ids are 0-$((cells - 1))" -- \
  "$sweep" "$tmp/spec.json" --only 7 --out "$tmp/bad_out"

# The sweep itself.
SECONDS=0
"$sweep" "$tmp/spec.json" --out "$tmp/out" >"$tmp/run.txt" 2>&1 || fail "the sweep failed" "$tmp/run.txt"
cat "$tmp/run.txt"
echo "ok   sweep of $cells cells in ${SECONDS}s"
/usr/bin/python3 - "$tmp/out/results.csv" "$cells" <<'PY'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
want = ["cell", "global_batch", "world_size", "queue_size", "negatives_per_anchor", "final_loss",
        "mi_bound", "knn_top1", "linear_top1", "images_per_s", "peak_memory_mb", "seconds"]
assert list(rows[0].keys()) == want, rows[0].keys()
assert len(rows) == int(sys.argv[2]), f"{len(rows)} rows, want {sys.argv[2]}"
for row in rows:
    for key in want[1:]:
        assert math.isfinite(float(row[key])), (row["cell"], key, row[key])
    batch, queue = int(row["global_batch"]), int(row["queue_size"])
    assert int(row["negatives_per_anchor"]) == 2 * (batch - 1) + queue, row
    assert 0 < float(row["knn_top1"]) <= 100 and 0 < float(row["linear_top1"]) <= 100, row
print("ok   results.csv:", len(rows), "rows of finite numbers")
PY
grep -Eq "^cell +global_batch +world_size" "$tmp/run.txt" || fail "no aligned table printed"
if command -v gnuplot >/dev/null; then
  for plot in mi_bound_vs_negatives accuracy_vs_negatives cost_vs_pool; do
    [[ -s "$tmp/out/plots/$plot.png" ]] || fail "plots/$plot.png missing" "$tmp/out/plots/gnuplot.log"
  done
  echo "ok   plots"
else
  echo "gnuplot not installed: plots not checked"
fi

# A second run skips the finished cells and collects again.
"$sweep" "$tmp/spec.json" --out "$tmp/out" >"$tmp/rerun.txt" 2>&1 || fail "rerun" "$tmp/rerun.txt"
skipped=$(grep -c "done already" "$tmp/rerun.txt" || true)
[[ $skipped -eq $cells ]] || fail "rerun skipped $skipped cells, want $cells" "$tmp/rerun.txt"
echo "ok   rerun skips finished cells"

# An unfinished cell (stopped after its last checkpoint, before its transfer results) resumes from
# that checkpoint: no step is trained again and nothing is moved aside.
first=$(ls "$tmp/out/cells" | head -n 1)
rows=$(wc -l <"$tmp/out/cells/$first/metrics.jsonl")
rm "$tmp/out/cells/$first/transfer/results.json"
"$sweep" "$tmp/spec.json" --out "$tmp/out" >"$tmp/resume.txt" 2>&1 || fail "resume" "$tmp/resume.txt"
grep -q "cell $first: unfinished earlier attempt resumes from its checkpoint step_" "$tmp/resume.txt" ||
  fail "the unfinished cell did not resume" "$tmp/resume.txt"
[[ -s "$tmp/out/cells/$first/transfer/results.json" && ! -e "$tmp/out/failed" ]] ||
  fail "the resumed cell has no results, or was moved aside" "$tmp/resume.txt"
[[ $(wc -l <"$tmp/out/cells/$first/metrics.jsonl") -eq $rows ]] &&
  grep -q "nothing to train: .* is already at step $rows of $rows" "$tmp/out/cells/$first/sweep.log" &&
  ! compgen -G "$tmp/out/cells/$first/checkpoints.replaced-*" >/dev/null ||
  fail "the resumed cell trained again" "$tmp/out/cells/$first/sweep.log"
grep -q "^\[sweep\] resumed " "$tmp/out/cells/$first/sweep.log" && grep -q "pretraining done" "$tmp/out/cells/$first/sweep.log" ||
  fail "the resumed attempt did not append to the first attempt's log" "$tmp/out/cells/$first/sweep.log"
echo "ok   an unfinished cell resumes from its checkpoint"
# The same unfinished cell with an edited base config starts afresh, its attempt kept in failed/.
rm "$tmp/out/cells/$first/transfer/results.json"
jq '.description = "edited"' "$src/configs/fashion_mnist_simclr.json" >"$tmp/base.json"
jq --arg base "$tmp/base.json" '.base = $base' "$tmp/spec.json" >"$tmp/spec_base.json"
"$sweep" "$tmp/spec_base.json" --out "$tmp/out" --only "$first" >"$tmp/rebase.txt" 2>&1 ||
  fail "the cell with an edited base config failed" "$tmp/rebase.txt"
grep -q "cell $first: unfinished earlier attempt (no checkpoint, or another base config or overrides) moved to" \
  "$tmp/rebase.txt" && [[ -s "$tmp/out/cells/$first/transfer/results.json" ]] &&
  compgen -G "$tmp/out/failed/$first-*" >/dev/null ||
  fail "the cell with an edited base config did not start afresh" "$tmp/rebase.txt"
echo "ok   an unfinished cell whose base config changed starts afresh"

# The collector against the trainer's summary.json, on a hand-made cell (no training): a queue
# cell of batch 64 with 256 queued negatives, so candidates per anchor = 2*64 - 1 + 256 = 383.
write_spec "$tmp/fake.json" "[64]" '"negatives.queue_size": [256],'
cell=$tmp/fake_out/cells/b64-q256-w1
mkdir -p "$cell/transfer"
cat >"$cell/summary.json" <<'JSON'
{"global_batch": 64, "world_size": 1, "views": 2, "queue_size": 256,
 "negatives_source": "batch+queue", "momentum": 0, "candidates_per_anchor": 383, "steps": 8, "images_seen": 512, "final_loss": 5.25,
 "final_mi_bound": 0.698, "images_per_s": 321.5, "seconds": 1.6, "peak_rss_mb": 612.25}
JSON
echo '{"knn": {"top1": 71.5}, "linear_probe": {"top1": 73.25}}' >"$cell/transfer/results.json"
"$sweep" "$tmp/fake.json" --out "$tmp/fake_out" --collect-only >"$tmp/fake.txt" 2>&1 ||
  fail "--collect-only" "$tmp/fake.txt"
want='"b64-q256-w1",64,1,256,382,5.25,0.698,71.5,73.25,321.5,612.3,1.6'
got=$(tail -n +2 "$tmp/fake_out/results.csv")
[[ "$got" == "$want" ]] || fail "row collected from summary.json:"$'\n'" got  $got"$'\n'" want $want"
echo "ok   collector reads summary.json"
echo "sweep test passed"
