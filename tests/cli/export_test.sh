#!/usr/bin/env bash
# Encoder export end to end: train two steps (ConvNet and ResNet-18), `selfsup export`, then
# compare `selfsup embed` with docs/export_example.py (PyTorch, the file read by hand) on the same
# images within 1e-5; start a training from the exported file (model.init) and check that a
# mismatching config fails with exit status 2; `selfsup transfer --encoder` reproduces the
# checkpoint's transfer results.
# Usage: export_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$(realpath "$1")
src=$(realpath "$2")
if [[ ! -s /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Fashion-MNIST not installed (launch/setup.sh installs dataset-fashion-mnist)"; exit 77
fi
if ! /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 lacks torch or numpy (Debian: python3-torch python3-numpy)"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tiny=(data.limit_train=64 data.limit_test=64 train.batch_size=16 train.max_steps=2
      train.log_every=1 optim.warmup_steps=1 train.threads=1 transfer.linear.epochs=2
      transfer.knn.k=5 transfer.baselines=false)

# Images to embed: uint8 [6, 28, 28] and float [3, 1, 28, 28] in [0, 1].
/usr/bin/python3 - "$tmp" <<'PY'
import sys, numpy as np
rng = np.random.default_rng(1)
np.save(f"{sys.argv[1]}/u8.npy", rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8))
np.save(f"{sys.argv[1]}/f32.npy", rng.random((3, 1, 28, 28), dtype=np.float32))
PY

for encoder in convnet resnet18; do
  run=$tmp/$encoder
  echo "[export_test] $encoder: train two steps"
  if ! "$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$run" --no-transfer \
       --set "${tiny[@]}" model.encoder=$encoder model.width=8 >"$tmp/train.log" 2>&1; then
    cat "$tmp/train.log"; echo "FAIL: training $encoder"; exit 1
  fi
  "$bin" export --run "$run"
  [[ -s "$run/encoder.safetensors" ]] || { echo "FAIL: no $run/encoder.safetensors"; exit 1; }
  for input in u8 f32; do
    "$bin" embed --encoder "$run/encoder.safetensors" --input "$tmp/$input.npy" \
      --out "$tmp/selfsup_$input.npy"
    /usr/bin/python3 "$src/docs/export_example.py" "$run/encoder.safetensors" \
      --input "$tmp/$input.npy" --out "$tmp/python_$input.npy"
    /usr/bin/python3 - "$tmp/selfsup_$input.npy" "$tmp/python_$input.npy" "$encoder" <<'PY'
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape and a.dtype == np.float32, (a.shape, b.shape, a.dtype)
diff = float(np.abs(a - b).max())
print(f"{sys.argv[3]}: selfsup vs PyTorch features {list(a.shape)}, max |diff| = {diff:.2e}")
assert diff <= 1e-5, diff
assert float(np.abs(a).max()) > 0
PY
  done
done

run=$tmp/convnet
file=$run/encoder.safetensors
echo "[export_test] model.init from the exported encoder"
"$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/init" --no-transfer \
  --set "${tiny[@]}" model.width=8 train.max_steps=1 "model.init=$file" >"$tmp/init.log" 2>&1 ||
  { cat "$tmp/init.log"; echo "FAIL: training from model.init"; exit 1; }
grep -q "model.init: encoder weights from $file" "$tmp/init.log" ||
  { cat "$tmp/init.log"; echo "FAIL: model.init not reported"; exit 1; }
status=0
"$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/bad" --no-transfer \
  --set "${tiny[@]}" model.width=16 "model.init=$file" >"$tmp/bad.log" 2>&1 || status=$?
[[ $status -eq 2 ]] || { cat "$tmp/bad.log"; echo "FAIL: mismatch exit status $status, not 2"; exit 1; }
grep -q "model.width = 16 but the file has 8" "$tmp/bad.log" ||
  { cat "$tmp/bad.log"; echo "FAIL: the mismatch error does not name the difference"; exit 1; }
echo "mismatch rejected: $(grep -o 'error: .*' "$tmp/bad.log" | head -1)"

echo "[export_test] transfer --encoder against transfer from the checkpoint"
"$bin" transfer --run "$run" >/dev/null
"$bin" transfer --run "$run" --encoder "$file" >/dev/null
# Without a run directory: a config and the file; results under runs/<name>/ of the working dir.
(cd "$tmp" && "$bin" transfer --config "$run/config.json" --encoder "$file" \
   --set name=from_config >/dev/null)
[[ -s "$tmp/runs/from_config/transfer-encoder/results.json" ]] ||
  { echo "FAIL: transfer --config --encoder wrote no results"; exit 1; }
/usr/bin/python3 - "$run/transfer/results.json" "$run/transfer-encoder/results.json" \
  "$tmp/runs/from_config/transfer-encoder/results.json" <<'PY'
import json, sys
a, b, c = (json.load(open(p)) for p in sys.argv[1:4])
for key in ["linear_probe", "knn"]:
    assert abs(a[key]["top1"] - b[key]["top1"]) < 1e-9, (key, a[key], b[key])
    assert abs(a[key]["top1"] - c[key]["top1"]) < 1e-9, (key, a[key], c[key])
print("transfer --encoder reproduces the checkpoint's probe:", b["linear_probe"]["top1"])
PY
echo "export test passed"
