#!/usr/bin/env bash
# Two ranks under mpirun train end to end on a slice of Fashion-MNIST (MPI backend chosen by
# dist.backend=auto), and a failing run ends every rank with a non-zero status instead of hanging.
# Usage: mpi_train_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
info=$("$bin" info)
[[ "$info" == *"MPI        Open MPI"* ]] || { echo "SKIP: selfsup built without MPI"; exit 77; }
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (install openmpi-bin: launch/setup.sh)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpi=(mpirun -np 2 --oversubscribe)

# Through the workstation wrapper (it adds --oversubscribe / --allow-run-as-root as needed).
SELFSUP_BIN=$bin "$src/launch/run_local.sh" -n 2 "$src/configs/fashion_mnist_simclr.json" \
  --run-dir "$tmp/run" --no-transfer \
  --set data.limit_train=512 train.batch_size=64 train.epochs=1 optim.warmup_steps=2 \
  >"$tmp/out" 2>&1 || { cat "$tmp/out"; echo "FAIL: 2-rank training failed"; exit 1; }
grep -Eq "^ +1  .*  1 +cpu" "$tmp/run/logs/rank0.log" || { cat "$tmp/run/logs/rank0.log"; echo "FAIL: no rank table with rank 1"; exit 1; }
grep -q "2 ranks, backend mpi" "$tmp/run/logs/rank0.log" || { echo "FAIL: rank 0 log lacks the world"; exit 1; }
[[ -s "$tmp/run/logs/rank1.log" ]] || { echo "FAIL: no rank 1 log"; exit 1; }
[[ -s "$tmp/run/checkpoints/latest" ]] || { echo "FAIL: no checkpoint"; exit 1; }
lines=$(wc -l <"$tmp/run/metrics.jsonl")
[[ $lines -eq 8 ]] || { echo "FAIL: metrics.jsonl has $lines lines, expected 8 (512/64 steps, rank 0 only)"; exit 1; }
echo "ok   2-rank training: $(tail -1 "$tmp/run/metrics.jsonl" | cut -c1-120)"

# The transfer stage on 2 ranks from that run's checkpoint: features and fine-tuning shared out
# over the ranks, the probes and the report on rank 0.
"${mpi[@]}" "$bin" transfer --run "$tmp/run" \
  --set data.limit_test=256 transfer.linear.epochs=2 transfer.knn.k=10 \
        transfer.finetune.max_steps=2 transfer.finetune.batch_size=32 \
  >"$tmp/out_transfer" 2>&1 || { cat "$tmp/out_transfer"; echo "FAIL: 2-rank transfer failed"; exit 1; }
grep -q "SimCLR encoder, fine-tuned" "$tmp/out_transfer" || { cat "$tmp/out_transfer"; echo "FAIL: no fine-tuning table"; exit 1; }
/usr/bin/python3 - "$tmp/run/transfer/results.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
assert results["world_size"] == 2 and results["test_samples"] == 256, results
for f in results["finetune"]["fractions"]:
    assert f["pretrained"]["steps"] == 2 and f["pretrained"]["global_batch"] % 2 == 0, f
    assert 0.0 <= f["pretrained"]["top1"] <= 100.0, f
PY
echo "ok   2-rank transfer: $(grep -m1 "SimCLR encoder, fine-tuned" "$tmp/out_transfer")"

# A runtime error on every rank (no dataset) ends the job quickly with a non-zero status.
status=0
timeout 120 "${mpi[@]}" "$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/run2" \
  --set data.root="$tmp/nowhere" >"$tmp/out2" 2>&1 || status=$?
if [[ $status -eq 0 || $status -eq 124 ]]; then
  cat "$tmp/out2"; echo "FAIL: failing 2-rank run exited with $status (want non-zero, no timeout)"; exit 1
fi
grep -q "selfsup: error: \[rank [01]\] cannot find" "$tmp/out2" || { cat "$tmp/out2"; echo "FAIL: no rank-prefixed error"; exit 1; }
echo "ok   failing 2-rank run ended with status $status"
echo "mpi train test passed"
