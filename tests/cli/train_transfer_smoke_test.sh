#!/usr/bin/env bash
# End to end on a slice of Fashion-MNIST: train a few steps, run the transfer stage, check the run
# directory, then re-run `selfsup transfer` from the checkpoint and check it reproduces the probe.
# Usage: train_transfer_smoke_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=$tmp/run

"$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$run" \
  --set data.limit_train=1024 data.limit_test=512 train.batch_size=128 train.epochs=2 \
        train.log_every=4 optim.warmup_steps=4 transfer.linear.epochs=5 transfer.knn.k=20 \
        transfer.finetune.max_steps=3 transfer.finetune.batch_size=64 train.threads=1 \
        >"$tmp/stdout"
cat "$tmp/stdout"

for f in config.json command.txt metrics.jsonl metrics.csv logs/rank0.log checkpoints/latest \
         transfer/results.json plots/loss.png plots/mi_bound.png; do
  [[ -s "$run/$f" ]] || { echo "FAIL: $run/$f missing or empty"; exit 1; }
done
grep -q "Transfer results" "$tmp/stdout" || { echo "FAIL: no results table printed"; exit 1; }
grep -q "SimCLR encoder, fine-tuned" "$tmp/stdout" || { echo "FAIL: no fine-tuning rows printed"; exit 1; }
if command -v gnuplot >/dev/null; then
  [[ -s "$run/transfer/results.png" ]] || { echo "FAIL: no transfer/results.png"; exit 1; }
fi

/usr/bin/python3 - "$run" <<'PY'
import json, math, sys
run = sys.argv[1]
rows = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
assert len(rows) == 16, f"expected 16 steps (2 epochs x 8), got {len(rows)}"
for key in ["step", "epoch", "loss", "mi_bound", "lr", "images_per_s", "pos_sim", "neg_sim"]:
    assert key in rows[0], f"metrics.jsonl lacks {key}"
for r in rows:  # MI bound = log(N) - loss with N = 2*128 - 1 candidates per anchor
    assert abs(r["mi_bound"] - (math.log(255) - r["loss"])) < 1e-6, r
assert [r["step"] for r in rows] == list(range(1, 17))
results = json.load(open(f"{run}/transfer/results.json"))
for path in ["linear_probe.top1", "knn.top1", "baselines.raw_pixels.top1",
             "baselines.random_encoder.top1"]:
    node = results
    for key in path.split("."):
        node = node[key]
    assert 0.0 <= node <= 100.0, (path, node)
assert results["dataset"] == "fashion-mnist" and results["encoder"] == "convnet"
assert results["test_samples"] == 512 and "wall_seconds" in results
# Fine-tuning: 1 %, 10 % and 100 % of 1024 labels (10, 100, 1024 class-balanced images), 3 steps
# each, beside a random initialisation and raw pixels on the same labels.
fractions = results["finetune"]["fractions"]
assert [f["fraction"] for f in fractions] == [0.01, 0.1, 1.0], fractions
assert [f["labelled"] for f in fractions] == [10, 100, 1024], fractions
for f in fractions:
    for key in ["pretrained", "random_init", "raw_pixels", "linear_probe"]:
        assert 0.0 <= f[key]["top1"] <= 100.0, (key, f)
    assert f["pretrained"]["steps"] == 3 and f["random_init"]["steps"] == 3, f
assert [f["pretrained"]["global_batch"] for f in fractions] == [10, 64, 64], fractions
assert fractions[2]["raw_pixels"] == results["baselines"]["raw_pixels"]
config = json.load(open(f"{run}/config.json"))
assert config["data"]["limit_train"] == 1024 and config["train"]["batch_size"] == 128
print("run directory ok:", results["linear_probe"]["top1"], results["knn"]["top1"])
PY

# The same run with a different number of loader workers follows the identical trajectory:
# augmentation randomness is keyed by (seed, epoch, sample, view), never by thread.
"$bin" train "$src/configs/fashion_mnist_simclr.json" --run-dir "$tmp/run_workers" --no-transfer \
  --set data.limit_train=1024 train.batch_size=128 train.epochs=2 optim.warmup_steps=4 \
        train.threads=1 data.workers=3 >/dev/null
/usr/bin/python3 - "$run/metrics.jsonl" "$tmp/run_workers/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(p)] for p in sys.argv[1:3])
assert a == b, f"losses differ between 1 and 3 loader workers:\n{a}\n{b}"
print("loader worker count does not change the trajectory")
PY

# The transfer stage alone, from the saved checkpoint, gives the same numbers (deterministic probe).
cp "$run/transfer/results.json" "$tmp/first.json"
"$bin" transfer --run "$run" >"$tmp/stdout2"
/usr/bin/python3 - "$tmp/first.json" "$run/transfer/results.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for key in ["linear_probe", "knn"]:
    assert abs(a[key]["top1"] - b[key]["top1"]) < 1e-9, (key, a[key], b[key])
for fa, fb in zip(a["finetune"]["fractions"], b["finetune"]["fractions"]):
    for key in ["pretrained", "random_init"]:
        assert abs(fa[key]["top1"] - fb[key]["top1"]) < 1e-9, (key, fa, fb)
print("transfer from checkpoint reproduces the probe and the fine-tuning")
PY
echo "smoke test passed"
