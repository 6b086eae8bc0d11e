#!/usr/bin/env bash
# Bad files in an image folder: a zero-byte file, a truncated JPEG, a text file named .jpg, a
# dangling link (unreadable) and a 2x2 image (smaller than any crop) among 91 good images. Training
# runs; every bad file is replaced by the same substitute on every rank (1 and 2 ranks give the same
# losses), counted (5 per epoch), and logged once; above data.max_bad_fraction the run stops and
# lists the files.
# Usage: bad_files_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

# 91 good 16x16 images in two classes (JPEG and PNG), then the 5 bad files: 96 = 4 batches of 24,
# so every file is read once per epoch.
/usr/bin/python3 - "$tmp/data" <<'PY'
import os, sys
import numpy as np
from PIL import Image
root = sys.argv[1]
rng = np.random.default_rng(0)
for split, count in (("train", 91), ("val", 20)):
    for i in range(count):
        label = i % 2
        folder = os.path.join(root, split, f"class{label}")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        pixels[:, :, label] //= 4  # the class shows in the colour
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:03d}.{'jpg' if i % 3 else 'png'}"))
train = os.path.join(root, "train")
good_jpeg = open(os.path.join(train, "class1", "001.jpg"), "rb").read()
open(os.path.join(train, "class0", "zero.jpg"), "wb").close()
open(os.path.join(train, "class0", "truncated.jpg"), "wb").write(good_jpeg[: len(good_jpeg) // 2])
open(os.path.join(train, "class1", "text.jpg"), "w").write("this is not an image\n")
os.symlink(os.path.join(train, "nowhere.png"), os.path.join(train, "class1", "unreadable.png"))
Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(os.path.join(train, "class0", "tiny.png"))
PY
bad_files=(class0/zero.jpg class0/truncated.jpg class1/text.jpg class1/unreadable.png class0/tiny.png)

common=(--no-transfer --set data.dataset=folder "data.root=$tmp/data" augment.size=16
        model.width=4 model.head_hidden=32 model.proj_dim=16 train.batch_size=24 train.epochs=2
        train.log_every=1 optim.warmup_steps=1 train.threads=1 data.workers=2
        data.max_bad_fraction=0.1 optim.name=sgd optim.lr=0.05)

"$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/one" "${common[@]}" \
  >"$tmp/one.out" 2>&1 || { cat "$tmp/one.out"; echo "FAIL: training with bad files failed"; exit 1; }
/usr/bin/python3 - "$tmp/one" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1] + "/summary.json"))
assert summary["steps"] == 8, summary
assert summary["bad_samples"] == 10, f"5 bad files x 2 epochs, got {summary['bad_samples']}"
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
assert sum(r["bad_samples"] for r in rows) == 10, rows
PY
for file in "${bad_files[@]}"; do
  count=$(grep -c "$file" "$tmp/one/logs/rank0.log" || true)
  [[ $count -eq 1 ]] || { cat "$tmp/one/logs/rank0.log"; echo "FAIL: $file logged $count times, want once"; exit 1; }
done
echo "ok   1 rank: 10 bad samples in 2 epochs, each of the 5 files logged once"

# The same run on 2 ranks: the substitutes are the same everywhere, so the losses match 1 rank.
if [[ "$("$bin" info)" == *"MPI        Open MPI"* ]] && command -v mpirun >/dev/null; then
  mpirun -np 2 --oversubscribe "$bin" train "$src/configs/fashion_mnist_simclr.json" \
    --run-dir "$tmp/two" "${common[@]}" >"$tmp/two.out" 2>&1 ||
    { cat "$tmp/two.out"; echo "FAIL: 2-rank training with bad files failed"; exit 1; }
  /usr/bin/python3 - "$tmp/one" "$tmp/two" <<'PY'
import json, sys
def losses(run):
    return [json.loads(line)["loss"] for line in open(run + "/metrics.jsonl")]
one, two = losses(sys.argv[1]), losses(sys.argv[2])
assert len(one) == len(two) == 8, (one, two)
for step, (a, b) in enumerate(zip(one, two), 1):
    assert abs(a - b) <= 1e-5 * abs(a), f"step {step}: 1 rank {a}, 2 ranks {b}"
assert json.load(open(sys.argv[2] + "/summary.json"))["bad_samples"] == 10
PY
  echo "ok   2 ranks: the same losses as 1 rank and the same count"
else
  echo "skip 2 ranks: selfsup built without MPI or no mpirun"
fi

# Above the threshold (5 of 96 > 2 %): the run stops, naming the key and listing the files.
status=0
"$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/strict" "${common[@]}" \
  data.max_bad_fraction=0.02 >"$tmp/strict.out" 2>&1 || status=$?
[[ $status -ne 0 ]] || { cat "$tmp/strict.out"; echo "FAIL: 5 % bad files passed data.max_bad_fraction=0.02"; exit 1; }
grep -q "data.max_bad_fraction" "$tmp/strict.out" || { cat "$tmp/strict.out"; echo "FAIL: the error does not name data.max_bad_fraction"; exit 1; }
# It stops as soon as the epoch's count passes 2 % of 96, so it lists the bad files met so far.
grep "selfsup: error" "$tmp/strict.out" | grep -Eq "zero.jpg|truncated.jpg|text.jpg|unreadable.png|tiny.png" ||
  { cat "$tmp/strict.out"; echo "FAIL: the error does not list the files"; exit 1; }
echo "ok   above data.max_bad_fraction the run stops with status $status and lists the files"
echo "bad files test passed"
