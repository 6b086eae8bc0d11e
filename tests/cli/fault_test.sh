#!/usr/bin/env bash
# Faults in a 3-rank run end every rank with a non-zero status instead of hanging:
#  1. a rank killed mid-run (SIGKILL): the launcher ends the others;
#  2. a rank stalled mid-run (SIGSTOP): the others' collective watchdog fires after dist.timeout_s,
#     names the collective it waited in, and the job ends.
# Usage: fault_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
[[ "$("$bin" info)" == *"MPI        Open MPI"* ]] || { echo "SKIP: selfsup built without MPI"; exit 77; }
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (install openmpi-bin: launch/setup.sh)"; exit 1; }
tmp=$(mktemp -d)
cleanup() {
  pkill -KILL -f "^$bin train .*$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

# Starts a long 3-rank run in the background; sets `launcher` (mpirun's pid).
start_run() {
  local run=$1
  shift
  mpirun -np 3 --oversubscribe "$bin" train "$src/configs/fashion_mnist_simclr.json" \
    --run-dir "$run" --no-transfer \
    --set data.limit_train=2400 train.batch_size=48 train.epochs=100 model.width=8 \
    optim.warmup_steps=2 "$@" >"$run.out" 2>&1 &
  launcher=$!
}

# Waits until rank 0 has logged `steps` training steps (the run is mid-training).
wait_for_steps() {
  local run=$1 steps=$2
  for _ in $(seq 1 600); do
    if [[ -f "$run/metrics.jsonl" ]] && (($(wc -l <"$run/metrics.jsonl") >= steps)); then return 0; fi
    kill -0 "$launcher" 2>/dev/null || { cat "$run.out"; echo "FAIL: the run ended before step $steps"; exit 1; }
    sleep 0.2
  done
  cat "$run.out"; echo "FAIL: no training step after 120 s"; exit 1
}

# The pids of the ranks (not mpirun) of the run in `run`.
rank_pids() { pgrep -f "^$bin train .*$1" || true; }

# Waits up to `limit` seconds for mpirun to end; checks a non-zero status and that no rank is left.
expect_all_exit() {
  local run=$1 limit=$2 what=$3 status=0
  for _ in $(seq 1 $((limit * 5))); do
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$launcher" 2>/dev/null; then
    cat "$run.out"; echo "FAIL: $what: the job still runs after ${limit}s"; exit 1
  fi
  wait "$launcher" || status=$?
  [[ $status -ne 0 ]] || { cat "$run.out"; echo "FAIL: $what: the job exited with status 0"; exit 1; }
  sleep 1
  local left
  left=$(rank_pids "$run")
  [[ -z "$left" ]] || { ps -o pid,stat,args -p $left; echo "FAIL: $what: ranks left running"; exit 1; }
  echo "ok   $what: every rank ended, status $status, in ${SECONDS}s"
}

# 1. A rank dies.
SECONDS=0
start_run "$tmp/killed"
wait_for_steps "$tmp/killed" 2
victim=$(rank_pids "$tmp/killed" | tail -1)
[[ -n "$victim" ]] || { echo "FAIL: no rank process found"; exit 1; }
kill -KILL "$victim"
expect_all_exit "$tmp/killed" 60 "rank killed (pid $victim)"

# 2. A rank stalls: the others wait in a collective until the 5 s timeout.
SECONDS=0
start_run "$tmp/stalled" dist.timeout_s=5
wait_for_steps "$tmp/stalled" 2
victim=$(rank_pids "$tmp/stalled" | tail -1)
kill -STOP "$victim"
expect_all_exit "$tmp/stalled" 90 "rank stalled (pid $victim)"
grep -Eq "selfsup: error: \[rank [0-2]\] MPI_[A-Za-z_]+ \(.*\) did not complete within 5 s" "$tmp/stalled.out" || {
  cat "$tmp/stalled.out"; echo "FAIL: no watchdog message naming the rank and the collective"; exit 1; }
echo "fault test passed"
