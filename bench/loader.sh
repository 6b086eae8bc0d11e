#!/usr/bin/env bash
# Loader throughput against torchvision (issue 6): images/s of decode + the SimCLR recipe for 2
# views, selfsup's threaded C++ loader against torchvision's DataLoader on the same JPEG files, with
# 1 and 2 workers, side by side in one run.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/loader.sh [--help] [--quick] [--workers "1 2"] [--epochs E] [--keep DIR]

Writes two JPEG image folders (bench/loader_reference.py make; DIR/train/<class>/*.jpg):
  small: 512 images of 32x32, views of 32 (no blur, as SimCLR on CIFAR)
  large: 128 images of 256x256, views of 224 (Gaussian blur with p 0.5, kernel 23)
then, for each folder and worker count, measures images/s (one warm-up epoch, then E timed epochs,
and on the C++ side more until 2 s are measured; batches of 64) of:
  selfsup      selfsup_bench_loader --mode loader: selfsup::Loader with W worker threads, each
               reading, decoding (OpenCV) and augmenting (SimClrAugment, the CPU path)
  torchvision  bench/loader_reference.py bench: ImageFolder + DataLoader(num_workers=W), PIL
               transforms, torch.set_num_threads(1) in every worker; with selfsup's recipe
               (see below) and with the full RGB recipe
  device       selfsup_bench_loader --mode device: DeviceAugment (the batched tensor path) on the
               CPU with W intra-op threads, on already decoded images: augmentation only
and prints a markdown table: images/s, images/s per core (per worker) and selfsup / torchvision.

Both sides run the full RGB recipe on the same files: random resized crop (scale 0.2-1) to the
view side, flip, colour jitter (p 0.8; 0.4, 0.4, 0.4, 0.1; random order), grayscale (p 0.2),
Gaussian blur (p 0.5 at 224), normalisation. Builds the selfsup_bench_loader target (outside `all`) in $SELFSUP_BUILD_DIR
(default build/) with $SELFSUP_JOBS jobs (default all cores). About 3-5 minutes on 2 idle cores.

  --quick          64 small and 16 large images, 1 timed epoch, workers 1 only (about 20 s once
                   built)
  --workers "W.."  worker counts (default "1 2")
  --epochs E       timed epochs (default 2)
  --keep DIR       write the images and the JSON lines under DIR and keep them (default: a
                   temporary folder, removed at the end)
USAGE
}

workers="1 2"
epochs=2
min_seconds=2
small_count=512
large_count=128
keep=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --quick) small_count=64; large_count=16; epochs=1; workers="1"; min_seconds=0; shift ;;
    --workers) workers=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "loader.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${SELFSUP_BUILD_DIR:-$root/build}
jobs=${SELFSUP_JOBS:-$(nproc)}
bin=$build_dir/selfsup_bench_loader
python=/usr/bin/python3

if ! "$python" -c "import torch, torchvision, PIL" 2>/dev/null; then
  echo "[bench] $python needs torch, torchvision and PIL (Debian: python3-torch" \
       "python3-torchvision python3-pil; launch/setup.sh installs them)" >&2
  exit 1
fi

if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  echo "[bench] configuring $build_dir"
  mkdir -p "$build_dir"
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >"$build_dir.cmake.log" 2>&1 \
    || { cat "$build_dir.cmake.log" >&2; echo "[bench] cmake failed" >&2; exit 1; }
fi
echo "[bench] building selfsup_bench_loader in $build_dir ($jobs jobs; a no-op when up to date)"
build_log=$(mktemp)
cmake --build "$build_dir" --target selfsup_bench_loader -j "$jobs" >"$build_log" 2>&1 \
  || { cat "$build_log" >&2; rm -f "$build_log"; echo "[bench] build failed" >&2; exit 1; }
rm -f "$build_log"

if [[ -n "$keep" ]]; then
  work=$keep
  mkdir -p "$work"
else
  work=$(mktemp -d /tmp/loader_bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
results=$work/results.jsonl
: >"$results"

echo "[bench] writing $small_count JPEGs of 32x32 and $large_count of 256x256 under $work"
rm -rf "$work/small" "$work/large"
"$python" "$root/bench/loader_reference.py" make --root "$work/small" --count "$small_count" \
  --side 32
"$python" "$root/bench/loader_reference.py" make --root "$work/large" --count "$large_count" \
  --side 256

# case: folder, view side, blur probability
cases=("small 32 0" "large 224 0.5")
for case in "${cases[@]}"; do
  read -r folder size blur <<<"$case"
  for w in $workers; do
    for mode in loader device; do
      echo "[bench] selfsup $mode: $folder images, views of $size, $w worker(s)"
      "$bin" --mode "$mode" --root "$work/$folder" --size "$size" --workers "$w" \
        --epochs "$epochs" --min-seconds "$min_seconds" --blur-prob "$blur" | tee -a "$results"
    done
  done
done
echo "[bench] torchvision: every case and worker count in one process"
python_cases=()
for case in "${cases[@]}"; do
  read -r folder size blur <<<"$case"
  python_cases+=(--case "$work/$folder" "$size" "$blur")
done
# The grayscale recipe is what selfsup's CPU path runs today: the like-for-like ratio.
recipes="rgb"
# shellcheck disable=SC2086  # $workers and $recipes are lists
"$python" "$root/bench/loader_reference.py" bench "${python_cases[@]}" --workers $workers \
  --recipes $recipes --epochs "$epochs" | tee -a "$results"

"$python" - "$results" "$(uptime)" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
by = {(r["impl"], r["channels"], r["size"], r["workers"]): r for r in rows}
nan = {"images_per_s": float("nan")}

def rate(r, workers):
    return f"{r['images_per_s']:.0f} ({r['images_per_s'] / workers:.0f})"

print()
print("| views | workers | selfsup loader | torchvision DataLoader | selfsup / torchvision "
      "| DeviceAugment on the CPU, augmentation only |")
print("|---|---|---|---|---|---|")
for (impl, channels, size, workers) in sorted(k for k in by if k[0] == "selfsup"):
    s = by[(impl, channels, size, workers)]
    rgb = by.get(("torchvision", 3, size, workers), nan)
    device = by.get(("selfsup-device-augment", 3, size, workers), nan)
    print(f"| {size}x{size} | {workers} | {rate(s, workers)} | {rate(rgb, workers)} "
          f"| {s['images_per_s'] / rgb['images_per_s']:.1f} | {rate(device, workers)} |")
print()
print("Images/s (images/s per core, i.e. per worker); each image gives 2 views; ratio = selfsup /")
print("torchvision. selfsup's recipe: " + next(r["recipe"] for r in rows if r["impl"] == "selfsup"))
print("torchvision: the same steps with PIL transforms (RandomResizedCrop, RandomHorizontalFlip,")
print("ColorJitter p 0.8, RandomGrayscale, GaussianBlur at 224, ToTensor, Normalize).")
print("Machine load while measuring:", sys.argv[2].strip())
PY
