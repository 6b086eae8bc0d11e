#!/usr/bin/env bash
# Every ready config in configs/ parses and trains: two steps each on a slice of Fashion-MNIST
# (small batch, no transfer), checking summary.json. For the queue configs the last step's N must
# count the queue's keys (two steps of 16 images x 2 views = 32 keys enqueued after step 1).
# The cluster recipes (configs/recipes: ResNet-50 on ImageNet, CUDA, bf16, NCCL) train the same way
# with their data, device and size moved to this machine: Fashion-MNIST at 32 px on the CPU, the
# model, head, loss and optimizer as written.
# Usage: configs_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
if [[ ! -s /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Fashion-MNIST not installed (launch/setup.sh installs dataset-fashion-mnist)"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

count=0
for config in "$src"/configs/*.json "$src"/configs/ablations/*.json "$src"/configs/recipes/*.json; do
  name=$(basename "$config" .json)
  run=$tmp/$name
  here=()
  if [[ $config == */recipes/* ]]; then
    here=(device=cpu train.precision=auto dist.backend=auto augment.backend=cpu data.dataset=idx
          data.root=/usr/share/datasets/fashion-mnist data.name=fashion-mnist data.workers=1
          augment.size=32 "augment.mean=[0.286]" "augment.std=[0.353]" model.stem=small)
  fi
  if ! "$bin" train "$config" --run-dir "$run" --no-transfer \
       --set data.limit_train=64 data.limit_test=32 train.batch_size=16 train.max_steps=2 \
             train.log_every=1 optim.warmup_steps=1 train.threads=1 "${here[@]}" \
             >"$tmp/$name.log" 2>&1; then
    cat "$tmp/$name.log"; echo "FAIL: configs/$name.json does not train"; exit 1
  fi
  /usr/bin/python3 - "$run/summary.json" "$name" <<'PY'
import json, math, sys
summary = json.load(open(sys.argv[1]))
assert summary["steps"] == 2, summary
assert math.isfinite(summary["final_loss"]), summary
batch, queue = summary["global_batch"], summary["queue_size"]
views = summary["views"] + summary["local_views"]
# After one applied step the queue holds one step of keys (32 here), the whole queue if smaller.
filled = min(queue, batch * views)
expected = {"batch": batch * views - 1, "batch+queue": batch * views - 1 + filled,
            "queue": views - 1 + filled}[summary["negatives_source"]]
assert summary["candidates_per_anchor"] == expected, (summary, expected)
print(f"ok   {sys.argv[2]}: {summary['negatives_source']}, N = {expected}, "
      f"loss {summary['final_loss']:.3f}")
PY
  count=$((count + 1))
done
[[ $count -ge 3 ]] || { echo "FAIL: only $count configs found in $src/configs"; exit 1; }
echo "configs test passed ($count configs)"
