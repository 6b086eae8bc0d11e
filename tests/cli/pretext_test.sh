#!/usr/bin/env bash
# Every pretext task of configs/pretext/ end to end, on a few steps of tiny settings:
#  1. one rank trains 4 steps with checkpoints at steps 2 and 4, then the transfer stage runs on
#     the encoder alone (the exported encoder holds no head, decoder, generator or discriminator
#     tensor);
#  2. two ranks under mpirun, each with half of every global batch, log the same losses (1e-5);
#  3. a run resumed from the step-2 checkpoint logs bitwise the same losses for steps 3-4 (the
#     optimizers of the GAN's generator and of the in-painting discriminator included).
# Usage: pretext_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$(realpath "$1")
src=$(realpath "$2")
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "SKIP: Fashion-MNIST not installed"; exit 77; }
command -v jq >/dev/null || { echo "FAIL: jq not found (launch/setup.sh installs it)"; exit 1; }
mpi=0
if [[ "$("$bin" info)" == *"MPI        Open MPI"* ]] && command -v mpirun >/dev/null; then mpi=1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

tiny=(data.limit_train=256 data.limit_test=128 data.synthetic.train_size=256
      data.synthetic.test_size=128 train.batch_size=32 train.max_steps=4 train.log_every=100
      train.threads=1 optim.warmup_steps=1 checkpoint.every_steps=2 model.width=8
      model.head_hidden=32 pretext.decoder_width=16 pretext.jigsaw.permutations=24
      monitor.every_epochs=0 transfer.linear.epochs=2 transfer.knn.k=5 transfer.baselines=false
      transfer.finetune.enabled=false)

# "step loss" of the steps after $2 (default 0) in metrics.jsonl $1, exactly as written.
losses() { jq -r --argjson k "${2:-0}" 'select(.step > $k) | "\(.step) \(.loss)"' "$1"; }

for config in "$src"/configs/pretext/*.json; do
  name=$(basename "$config" .json)
  task=$(jq -r '.pretext.task // "simclr"' "$config")
  [[ $task == simclr ]] && continue  # SimCLR has tests of its own (resume_test, mpi_train_test)
  run=$tmp/$name
  # 1. One rank, pretraining and transfer.
  "$bin" train "$config" --run-dir "$run" --set "${tiny[@]}" >"$run.out" 2>&1 \
    || { cat "$run.out"; echo "FAIL: $name: training failed"; exit 1; }
  [[ $(wc -l <"$run/metrics.jsonl") -eq 4 && -d "$run/checkpoints/step_2" ]] \
    || { cat "$run.out"; echo "FAIL: $name: expected 4 metrics rows and checkpoint step_2"; exit 1; }
  jq -e --arg task "$task" '.pretext == $task and .final_mi_bound == null' "$run/summary.json" >/dev/null \
    || { cat "$run/summary.json"; echo "FAIL: $name: summary.json does not name the task"; exit 1; }
  jq -e '.linear_probe.top1 > 0 and .knn.top1 > 0' "$run/transfer/results.json" >/dev/null \
    || { echo "FAIL: $name: no transfer results"; exit 1; }
  [[ -f "$run/plots/loss.png" ]] || { echo "FAIL: $name: no loss plot"; exit 1; }
  "$bin" export --run "$run" >"$run.export.out" 2>&1 \
    || { cat "$run.export.out"; echo "FAIL: $name: export failed"; exit 1; }
  # The safetensors header: 8 bytes of length, then JSON naming every tensor.
  header_bytes=$(od -An -t u8 -N 8 "$run/encoder.safetensors" | tr -d ' ')
  names=$(head -c "$((8 + header_bytes))" "$run/encoder.safetensors" | tail -c "$header_bytes" |
    jq -r 'keys[] | select(. != "__metadata__")')
  [[ -n "$names" ]] || { echo "FAIL: $name: the exported encoder is empty"; exit 1; }
  if grep -Eq '^(head|decoder|generator|discriminator|time|encoder\.)' <<<"$names"; then
    echo "FAIL: $name: the exported encoder holds pretext tensors:"; grep -E '^(head|decoder|generator|discriminator|time)' <<<"$names"; exit 1
  fi
  echo "ok   $name: 4 steps, transfer (linear $(jq .linear_probe.top1 "$run/transfer/results.json") %), encoder exported with $(wc -l <<<"$names") tensors"

  # 2. Two ranks: the same losses.
  if [[ $mpi -eq 1 ]]; then
    mpirun -np 2 --oversubscribe "$bin" train "$config" --run-dir "$run-2" --no-transfer \
      --set "${tiny[@]}" >"$run-2.out" 2>&1 \
      || { cat "$run-2.out"; echo "FAIL: $name: 2-rank training failed"; exit 1; }
    paste -d' ' <(losses "$run/metrics.jsonl") <(losses "$run-2/metrics.jsonl") | awk -v name="$name" '
      { d = $2 - $4; if (d < 0) d = -d; s = ($2 < 0 ? -$2 : $2); if (s < 1) s = 1
        if ($1 != $3 || d > 1e-5 * s) { print "FAIL: " name ": step " $1 " loss " $2 " on 1 rank, " $4 " on 2"; bad = 1 } }
      END { exit bad }' || exit 1
    echo "ok   $name: 2 ranks give the 1-rank losses within 1e-5"
  fi

  # 3. Resume from step 2: steps 3 and 4 bitwise as in the uninterrupted run.
  "$bin" train "$config" --run-dir "$run-resumed" --no-transfer --set "${tiny[@]}" \
    --resume "$run/checkpoints/step_2" >"$run-resumed.out" 2>&1 \
    || { cat "$run-resumed.out"; echo "FAIL: $name: the resumed run failed"; exit 1; }
  diff <(losses "$run/metrics.jsonl" 2) <(losses "$run-resumed/metrics.jsonl" 2) \
    || { echo "FAIL: $name: steps 3-4 differ after resuming from step 2"; exit 1; }
  echo "ok   $name: resumed from step 2, steps 3-4 bitwise identical"
done
echo "pretext test passed"
