#!/usr/bin/env bash
# A rank of a 3-rank run killed with SIGKILL at random points, 20 times in a row, half of them
# while rank 0 writes a checkpoint: every time the other ranks exit non-zero, and the next start
# with `--resume auto` loads the newest `latest` checkpoint and trains on from it. Finally the run
# finishes with status 0.
# Usage: kill_resume_test.sh SELFSUP_BINARY SOURCE_DIR [ROUNDS]
set -euo pipefail
bin=$1
src=$2
rounds=${3:-20}
[[ "$("$bin" info)" == *"MPI        Open MPI"* ]] || { echo "SKIP: selfsup built without MPI"; exit 77; }
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found (install openmpi-bin: launch/setup.sh)"; exit 1; }
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: Fashion-MNIST not installed"; exit 77; }
tmp=$(mktemp -d)
cleanup() {
  pkill -KILL -f "^$bin train .*$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
run=$tmp/run
ckpt=$run/checkpoints
RANDOM=${SELFSUP_TEST_SEED:-$$}
echo "random seed $RANDOM (set SELFSUP_TEST_SEED to repeat)"

# A checkpoint every 2 steps, so that kills often land in a write.
start() {
  mpirun -np 3 --oversubscribe "$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$run" \
    --no-transfer --resume auto \
    --set data.limit_train=2400 train.batch_size=48 train.max_steps=100000 model.width=16 \
    optim.warmup_steps=2 train.threads=1 train.log_every=1 checkpoint.every_steps=2 checkpoint.keep=2 \
    monitor.every_epochs=0 "$@" \
    >"$run.out" 2>&1 &
  launcher=$!
}

# The step `latest` names (0 when there is none).
latest_step() { [[ -f "$ckpt/latest" ]] && sed 's/step_//' "$ckpt/latest" || echo 0; }

mkdir -p "$run"
mid_write=0
for round in $(seq 1 "$rounds"); do
  from=$(latest_step)
  SECONDS=0
  start
  # Wait until this start has resumed (or started) and trained two steps past its checkpoint, as
  # its own log says (metrics.jsonl may still hold rows of the killed run).
  expect="objective simclr"
  ((from > 0)) && expect="resumed from $ckpt/step_$from (step $from"
  for _ in $(seq 1 900); do
    if grep -q "$expect" "$run.out" && grep -q "step $((from + 2))/" "$run.out"; then break; fi
    kill -0 "$launcher" 2>/dev/null || { cat "$run.out"; echo "FAIL: round $round: the run ended before training (expected: $expect)"; exit 1; }
    sleep 0.1
  done
  grep -q "step $((from + 2))/" "$run.out" || { cat "$run.out"; echo "FAIL: round $round: no step $((from + 2)) after 90 s"; exit 1; }
  grep -q "$expect" "$run.out" || { cat "$run.out"; echo "FAIL: round $round: no '$expect'"; exit 1; }
  t_ready=$SECONDS
  ranks=($(pgrep -f "^$bin train .*$run" || true))
  [[ ${#ranks[@]} -eq 3 ]] || { echo "FAIL: round $round: ${#ranks[@]} rank processes, expected 3"; exit 1; }
  if ((round % 2 == 1)); then
    # During a checkpoint write: wait for rank 0's temporary directory, then kill rank 0 at once.
    victim=$(pgrep -f "^$bin train .*$run" | head -1)  # the lowest pid: rank 0 in practice
    end=$((SECONDS + 30))
    while ((SECONDS < end)); do compgen -G "$ckpt/.tmp_step_*" >/dev/null && break; sleep 0.002; done
    kill -KILL "$victim"
    compgen -G "$ckpt/.tmp_step_*" >/dev/null && mid_write=$((mid_write + 1))
    when="during a checkpoint write"
  else
    sleep "0.$((RANDOM % 10))"
    victim=${ranks[$((RANDOM % 3))]}
    kill -KILL "$victim"
    when="during training"
  fi
  status=0
  for _ in $(seq 1 300); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$launcher" 2>/dev/null && { cat "$run.out"; echo "FAIL: round $round: the job still runs 60 s after the kill"; exit 1; }
  wait "$launcher" || status=$?
  [[ $status -ne 0 ]] || { cat "$run.out"; echo "FAIL: round $round: the job exited 0 after a kill"; exit 1; }
  sleep 0.5
  left=$(pgrep -f "^$bin train .*$run" || true)
  [[ -z "$left" ]] || { echo "FAIL: round $round: ranks left running: $left"; exit 1; }
  echo "round $round: killed pid $victim $when; job status $status; latest step_$(latest_step) (ready after ${t_ready}s, done after ${SECONDS}s)"
  cat "$run.out" >>"$tmp/all.out"
done
((mid_write > 0)) || echo "note: no kill landed inside a write this time (timing); the kills still hit steps"

# The last start must load the newest checkpoint and finish cleanly.
from=$(latest_step)
start train.max_steps=$((from + 2))
wait "$launcher" || { cat "$run.out"; echo "FAIL: the final resume from step_$from failed"; exit 1; }
grep -q "resumed from $ckpt/step_$from" "$run.out" || { cat "$run.out"; echo "FAIL: final run did not resume"; exit 1; }
echo "kill/resume test passed: $rounds kills, $mid_write of them inside a checkpoint write; finished at step $((from + 2))"
