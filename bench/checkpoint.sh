#!/usr/bin/env bash
# Checkpoint cost: write and load time and size of a full training checkpoint (model, Adam state,
# RNG states) for the ConvNet and ResNet-18 configs, against torch.save / torch.load of the same
# tensors in Python PyTorch (/usr/bin/python3) on the same disk, in one run; and the coordinator's
# per-step cost when no checkpoint is due, against the step time.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/checkpoint.sh [--help] [--steps N]

For each of configs/fashion_mnist_simclr.json (ConvNet) and configs/fashion_mnist_resnet18.json
(ResNet-18): trains N steps (default 40 for the ConvNet, 4 for ResNet-18) with a checkpoint every
step, resumes once to time a load, and times Python's torch.save (+ fsync) and torch.load of the
same tensors. Writes go to a temporary directory under $TMPDIR (default /tmp).
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
steps_override=""
[[ "${1:-}" == "--steps" ]] && steps_override=$2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SELFSUP_BIN:-$root/build/selfsup}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf "%-10s %9s %12s %12s %12s %12s %12s %14s\n" encoder "size MiB" "write ms" "py save ms" \
  "load ms" "py load ms" "step ms" "coordinator ms"
for pair in convnet:configs/fashion_mnist_simclr.json:40 resnet18:configs/fashion_mnist_resnet18.json:4; do
  IFS=: read -r name config steps <<<"$pair"
  steps=${steps_override:-$steps}
  run=$tmp/$name
  common=(data.limit_train=2048 train.batch_size=64 train.max_steps=$steps train.log_every=1000)
  "$bin" train "$root/$config" --run-dir "$run" --no-transfer \
    --set "${common[@]}" checkpoint.every_steps=1 checkpoint.keep=2 >"$run.out" 2>&1 \
    || { cat "$run.out"; exit 1; }
  # Write: the median over the checkpoints after the first (page cache warm, as in a long run).
  write_ms=$(grep -o "MiB) written in [0-9]* ms" "$run/logs/rank0.log" | awk '{print $4}' | tail -n +2 \
    | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  size=$(du -sb "$run/checkpoints/step_$steps" | awk '{printf "%.1f", $1 / 1048576}')
  # Load: resume at the end (nothing left to train).
  "$bin" train "$root/$config" --run-dir "$run" --no-transfer --resume auto \
    --set "${common[@]}" >"$run.resume.out" 2>&1 || { cat "$run.resume.out"; exit 1; }
  load_ms=$(grep -o "position [0-9]* in the epoch.*) in [0-9]* ms" "$run/logs/rank0.log" | tail -1 \
    | grep -o "in [0-9]* ms$" | awk '{print $2}')
  step_ms=$(jq '1000 * .seconds / .steps' "$run/summary.json")
  coord_ms=$(jq '.coordinator_ms_per_step' "$run/summary.json")
  read -r py_save py_load < <(/usr/bin/python3 - "$run/checkpoints/step_$steps" <<'PY'
import os, sys, time, statistics, torch
ckpt = sys.argv[1]
# The same training state as selfsup's checkpoint: the model's tensors (its archive is a
# TorchScript module), Adam's two moments and step of every trained parameter, the RNG state.
model = torch.jit.load(os.path.join(ckpt, "model.pt"), map_location="cpu")
tensors = {n: t.detach().clone() for n, t in model.state_dict().items()}
adam = {n: {"step": torch.tensor(1.0), "exp_avg": t.detach().clone(),
            "exp_avg_sq": t.detach().clone()}
        for n, t in model.named_parameters() if not n.startswith("key_")}
state = {"model": tensors, "optimizer": adam, "rng": torch.get_rng_state()}
out = os.path.join(os.path.dirname(ckpt), "py.pt")
saves, loads = [], []
for _ in range(5):
    t = time.perf_counter()
    with open(out, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    saves.append(time.perf_counter() - t)
    t = time.perf_counter()
    torch.load(out)
    loads.append(time.perf_counter() - t)
print(f"{1e3 * statistics.median(saves):.0f} {1e3 * statistics.median(loads):.0f}")
PY
)
  printf "%-10s %9s %12s %12s %12s %12s %12.1f %14.3f\n" "$name" "$size" "$write_ms" "$py_save" \
    "$load_ms" "$py_load" "$step_ms" "$coord_ms"
done
echo "write/load: selfsup's checkpoint includes CRC-32 of every file, fsync of files and directory"
echo "and the atomic rename; Python's figure is torch.save + fsync of one file, torch.load."
