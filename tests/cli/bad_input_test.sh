#!/usr/bin/env bash
# Bad input ends with exactly one clear error line on stderr and a non-zero exit, never a crash.
# Usage: bad_input_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect_error NAME PATTERN -- COMMAND...: non-zero exit (not a signal), one stderr line matching PATTERN.
expect_error() {
  local name=$1 pattern=$2; shift 3
  local status=0
  "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  if [[ $status -eq 0 || $status -ge 128 ]]; then
    echo "FAIL $name: exit status $status (want 1 or 2)"; failures=$((failures + 1))
  elif [[ $lines -ne 1 ]]; then
    echo "FAIL $name: $lines stderr lines (want 1):"; cat "$tmp/err"; failures=$((failures + 1))
  elif ! grep -Eq "^selfsup: error: .*$pattern" "$tmp/err"; then
    echo "FAIL $name: stderr does not match '$pattern':"; cat "$tmp/err"; failures=$((failures + 1))
  else
    echo "ok   $name: $(cat "$tmp/err")"
  fi
}

# Small IDX files: 4 images of 2x2 pixels and their labels.
mkdir -p "$tmp/data" "$tmp/truncated"
for split in train t10k; do
  printf '\x00\x00\x08\x03\x00\x00\x00\x04\x00\x00\x00\x02\x00\x00\x00\x02' >"$tmp/data/$split-images-idx3-ubyte"
  head -c 16 /dev/urandom >>"$tmp/data/$split-images-idx3-ubyte"
  printf '\x00\x00\x08\x01\x00\x00\x00\x04\x00\x01\x00\x01' >"$tmp/data/$split-labels-idx1-ubyte"
done
cp "$tmp"/data/* "$tmp/truncated/"
head -c 20 "$tmp/data/train-images-idx3-ubyte" >"$tmp/truncated/train-images-idx3-ubyte"

cat >"$tmp/ok.json" <<JSON
{"name": "bad_input", "data": {"root": "$tmp/data"}, "train": {"batch_size": 2, "epochs": 1}}
JSON
echo '{"train": {"batch_size": 2,, }' >"$tmp/malformed.json"
echo '{"train": {"batch_size": "two"}}' >"$tmp/mistyped.json"
echo '{"train": {"batchsize": 2}}' >"$tmp/unknown.json"
touch "$tmp/a_file"

expect_error missing-config "cannot read config file" -- "$bin" train "$tmp/nope.json" --run-dir "$tmp/r1"
expect_error malformed-config "not valid JSON" -- "$bin" train "$tmp/malformed.json" --run-dir "$tmp/r2"
expect_error mistyped-config "train.batch_size = \"two\" is invalid: expected an integer" -- \
  "$bin" train "$tmp/mistyped.json" --run-dir "$tmp/r3"
expect_error unknown-key "unknown key 'train.batchsize'" -- "$bin" train "$tmp/unknown.json" --run-dir "$tmp/r4"
expect_error bad-override "optim.lr = -3 is invalid" -- \
  "$bin" train "$tmp/ok.json" --set optim.lr=-3 --run-dir "$tmp/r5"
expect_error missing-dataset "$tmp/nowhere.*dataset-fashion-mnist" -- \
  "$bin" train "$tmp/ok.json" --set data.root="$tmp/nowhere" --run-dir "$tmp/r6"
expect_error truncated-dataset "truncated" -- \
  "$bin" train "$tmp/ok.json" --set data.root="$tmp/truncated" --run-dir "$tmp/r7"
expect_error unwritable-run-dir "run directory.*--run-dir" -- \
  "$bin" train "$tmp/ok.json" --run-dir "$tmp/a_file/run"
expect_error launcher-mpi-mismatch "mpirun started 2 processes but MPI sees a world of 1" -- \
  env OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=1 "$bin" train "$tmp/ok.json" --run-dir "$tmp/r8"
expect_error multi-rank-local-backend "rank 1 of 2 by srun.*dist.backend = \"local\" runs one process" -- \
  env SLURM_NTASKS=2 SLURM_PROCID=1 "$bin" train "$tmp/ok.json" --set dist.backend=local \
  --run-dir "$tmp/r10"
expect_error cuda-without-gpu "device = \"cuda\", but no CUDA device" -- \
  "$bin" train "$tmp/ok.json" --set device=cuda --run-dir "$tmp/r9"
expect_error usage-no-config "config is required.*see selfsup --help" -- "$bin" train
expect_error transfer-without-run "not a selfsup run directory" -- "$bin" transfer --run "$tmp/empty"
expect_error transfer-nothing "transfer needs --run DIR" -- "$bin" transfer
expect_error export-without-run "not a selfsup run directory" -- "$bin" export --run "$tmp/empty"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"w": 1}' >"$tmp/bad.safetensors"
expect_error embed-bad-file "bad.safetensors: not a valid safetensors file: header length 16 runs past" -- \
  "$bin" embed --encoder "$tmp/bad.safetensors" --input "$tmp/x.npy" --out "$tmp/y.npy"
printf '\x0a\x00\x00\x00\x00\x00\x00\x00{"w": 1}  ' >"$tmp/bad2.safetensors"
expect_error embed-bad-entry "tensor \"w\": expected an object" -- \
  "$bin" embed --encoder "$tmp/bad2.safetensors" --input "$tmp/x.npy" --out "$tmp/y.npy"
expect_error init-missing-file "cannot read $tmp/none.safetensors" -- \
  "$bin" train "$tmp/ok.json" --set model.init="$tmp/none.safetensors" --run-dir "$tmp/r11"

# A config that does not fit its data or its keys stops before any training, naming what to change.
src=$2
expect_error pretext-jigsaw-tiles "tiles need at least 4 px.*set augment.size to 15 or more" -- \
  "$bin" train "$src/configs/pretext/jigsaw.json" --set augment.size=8 --run-dir "$tmp/p1"
expect_error pretext-colorization-grayscale "is grayscale: use an RGB dataset" -- \
  "$bin" train "$src/configs/pretext/rgb_colorization.json" --set data.dataset=idx --run-dir "$tmp/p2"
expect_error pretext-superres-factor "set augment.size to a multiple of 4 \(e.g. 32\)" -- \
  "$bin" train "$src/configs/pretext/superres.json" --set augment.size=30 pretext.superres.factor=4 \
  --run-dir "$tmp/p3"
expect_error pretext-inpainting-hole "masks 0 px of 8.*leaves both a hole and some context" -- \
  "$bin" train "$src/configs/pretext/inpainting.json" --set augment.size=8 pretext.inpainting.size=0.05 \
  --run-dir "$tmp/p4"
expect_error accumulate-gan "train.accumulate_steps = 2 with pretext.task = \"gan\".*set train.accumulate_steps to 1" -- \
  "$bin" train "$src/configs/pretext/gan.json" --set train.accumulate_steps=2 --run-dir "$tmp/p5"
expect_error bf16-on-cpu "train.precision = \"bf16\" needs device = \"cuda\"" -- \
  "$bin" train "$tmp/ok.json" --set train.precision=bf16 --run-dir "$tmp/p6"
expect_error lars-zero-trust "optim.trust_coefficient = 0 with optim.name = \"lars\"" -- \
  "$bin" train "$tmp/ok.json" --set optim.name=lars optim.trust_coefficient=0 --run-dir "$tmp/p7"

if [[ $failures -gt 0 ]]; then echo "$failures case(s) failed"; exit 1; fi
echo "all bad-input cases passed"
