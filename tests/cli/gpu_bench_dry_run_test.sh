#!/usr/bin/env bash
# The CPU half of the GPU step benchmark (bench/gpu/step_bench.sh): its argument handling and the
# Python reference for one tiny step on the CPU, then the reference's self-test (FLOP counts of
# ResNet-18/34/50 against the published figures, NT-Xent, LARS). Nothing of selfsup is run: the
# benchmark's C++ side needs a GPU. Skips (77) when /usr/bin/python3 has no torch.
# Usage: gpu_bench_dry_run_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
src=$2
python=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One thread each: the test shares two cores with the rest of ctest.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

if ! "$python" -c "import torch" >/dev/null 2>&1; then
  echo "SKIP: $python lacks torch (Debian: python3-torch)"; exit 77
fi

bash "$src/bench/gpu/step_bench.sh" --cpu-dry-run --python "$python" --out "$tmp/out" \
  --timeout-per-run 50 >"$tmp/dry.out" 2>&1 \
  || { cat "$tmp/dry.out"; echo "FAIL: step_bench.sh --cpu-dry-run failed"; exit 1; }
"$python" - "$tmp/out" <<'PY' || { cat "$tmp/dry.out"; exit 1; }
import json, os, sys
out = sys.argv[1]
rows = [json.loads(line) for line in open(os.path.join(out, "step_bench.jsonl")) if line.strip()]
py = [r for r in rows if r.get("impl") == "pytorch"]
assert len(py) == 1 and "error" not in py[0], f"FAIL: want one pytorch result, got {rows}"
r = py[0]
assert r["images_per_s"] > 0, f"FAIL: images_per_s {r['images_per_s']}"
want = dict(model="resnet18", stem="small", image_size=32, batch=4, precision="fp32",
            channels_last=True, device="cpu", peak_mem_gib=None)
for key, value in want.items():
    assert r[key] == value, f"FAIL: {key} = {r[key]!r}, want {value!r}"
# resnet18, small stem, 32x32: ~0.557 GMACs per view forward -> 2 views x 3 x 2 FLOPs per MAC
assert abs(r["flops_per_image_train"] / 6.68e9 - 1) < 0.03, r["flops_per_image_train"]
assert not any(x.get("impl") == "selfsup" for x in rows), "dry run without --selfsup-bench ran selfsup"
table = open(os.path.join(out, "step_bench.md")).read()
assert "| resnet18 small 32px b4 fp32 CL |" in table, table
print(f"ok   dry run: {r['images_per_s']:.2f} images/s, {r['flops_per_image_train'] / 1e9:.2f} GFLOP/image")
PY

# Bad arguments are refused with status 2 before anything runs.
status=0
bash "$src/bench/gpu/step_bench.sh" --cpu-dry-run --steps 0 --out "$tmp/bad" >/dev/null 2>&1 || status=$?
[[ $status -eq 2 ]] || { echo "FAIL: --steps 0 gave status $status, want 2"; exit 1; }
echo "ok   --steps 0 refused"

"$python" "$src/bench/gpu/simclr_step_reference.py" --self-test >"$tmp/self.out" 2>&1 \
  || { cat "$tmp/self.out"; echo "FAIL: simclr_step_reference.py --self-test"; exit 1; }
grep -E '^ok   resnet(50 imagenet 224|18 small 32):' "$tmp/self.out"
echo "ok   reference self-test passed"
