#!/usr/bin/env bash
# Non-finite values: rank 1 of a 2-rank run (rank 0 without MPI) gets a NaN loss at steps 3, 4 and
# 5 (SELFSUP_INJECT_NONFINITE). Every rank skips those steps together, the metrics and summary
# count them, and the run finishes; with train.max_skipped_steps=3 it stops at the third skip in a
# row with a message naming the steps and the key.
# Usage: nonfinite_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: Fashion-MNIST not installed"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq not installed (launch/setup.sh installs it)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
if [[ "$("$bin" info)" == *"MPI        Open MPI"* ]] && command -v mpirun >/dev/null; then
  launcher=(mpirun -np 2 --oversubscribe) victim=1
else
  launcher=() victim=0
fi
settings=(data.limit_train=512 train.batch_size=64 model.width=8 train.max_steps=8 train.threads=1
          optim.warmup_steps=2)

SELFSUP_INJECT_NONFINITE="$victim:3,4,5" "${launcher[@]}" "$bin" train \
  "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/skip" --no-transfer \
  --set "${settings[@]}" train.max_skipped_steps=4 >"$tmp/skip.out" 2>&1 \
  || { cat "$tmp/skip.out"; echo "FAIL: the run with 3 skipped steps failed"; exit 1; }
[[ "$(jq -c '[.step, .skipped]' "$tmp/skip/metrics.jsonl" | tr -d '\n')" == \
   "[1,0][2,0][3,1][4,1][5,1][6,0][7,0][8,0]" ]] \
  || { jq -c '[.step, .skipped, .loss]' "$tmp/skip/metrics.jsonl"; echo "FAIL: skipped column"; exit 1; }
[[ "$(jq .skipped_steps "$tmp/skip/summary.json")" == 3 ]] || { echo "FAIL: summary.skipped_steps"; exit 1; }
[[ "$(jq '.loss | . != null' "$tmp/skip/metrics.jsonl" | tail -1)" == true ]] \
  || { echo "FAIL: the loss is not finite after the skips"; exit 1; }
grep -q "step 5: non-finite loss, step skipped on every rank (3 in a row)" "$tmp/skip.out" \
  || { cat "$tmp/skip.out"; echo "FAIL: no skip warning"; exit 1; }
echo "ok   3 skipped steps counted, the run finished"

status=0
SELFSUP_INJECT_NONFINITE="$victim:3,4,5" "${launcher[@]}" "$bin" train \
  "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/stop" --no-transfer \
  --set "${settings[@]}" train.max_skipped_steps=3 >"$tmp/stop.out" 2>&1 || status=$?
[[ $status -ne 0 ]] || { cat "$tmp/stop.out"; echo "FAIL: 3 skips in a row did not stop the run"; exit 1; }
grep -q "not finite for 3 consecutive steps (steps 3 to 5).*train.max_skipped_steps" "$tmp/stop.out" \
  || { cat "$tmp/stop.out"; echo "FAIL: the stop message does not name the steps and the key"; exit 1; }
echo "ok   stopped at the third skip in a row (status $status)"
echo "nonfinite test passed"
