#!/usr/bin/env bash
# Runs several configs (pretraining + transfer) and prints one table of their results: the way the
# ablation pairs of configs/ablations/ are compared. See --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/compare.sh CONFIG... [--out DIR] [--collect-only] [--set key.path=value ...]

Runs `selfsup train CONFIG --run-dir OUT/<config name>` for each CONFIG in turn (pretraining, then
the transfer stage), then writes OUT/results.csv and OUT/results.md and prints the table:
config, description, final loss, linear-probe top-1, kNN top-1, data wait, pretraining seconds.

  --out DIR        where the runs go (default: runs/compare)
  --collect-only   run nothing; tabulate the runs that have finished
  --set ...        overrides for every config (everything after --set)

A config whose run directory already has transfer/results.json is not run again, so an interrupted
comparison resumes where it stopped. Example (the crop-scale ablation of docs/AUGMENTATIONS.md):
  launch/compare.sh configs/ablations/local_vs_global_*.json --out runs/ablations/crops
SELFSUP_BIN names the selfsup binary (default build/selfsup).
USAGE
}

die() { echo "compare.sh: error: $*" >&2; exit 2; }

configs=() out="" collect_only=0 overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out=$2; shift 2 ;;
    --collect-only) collect_only=1; shift ;;
    --set) shift; overrides=("$@"); break ;;
    -*) die "unknown option '$1'; see --help" ;;
    *) configs+=("$1"); shift ;;
  esac
done
[[ ${#configs[@]} -ge 1 ]] || die "give at least one CONFIG, e.g. configs/ablations/color_*.json; see --help"
command -v jq >/dev/null || die "jq not found; run launch/setup.sh (Debian package jq)"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SELFSUP_BIN:-${SELFSUP_BUILD_DIR:-$root/build}/selfsup}
out=${out:-runs/compare}
mkdir -p "$out"

failed=0
for config in "${configs[@]}"; do
  [[ -r "$config" ]] || die "cannot read config '$config'"
  name=$(basename "$config" .json)
  dir=$out/$name
  if [[ -f "$dir/transfer/results.json" || $collect_only -eq 1 ]]; then continue; fi
  [[ -x "$bin" ]] || die "$bin not found; build first (launch/build.sh)"
  set_args=()
  [[ ${#overrides[@]} -gt 0 ]] && set_args=(--set "${overrides[@]}")
  echo "[compare] $bin train $config --run-dir $dir ${set_args[*]}"
  if ! "$bin" train "$config" --run-dir "$dir" "${set_args[@]}" >"$out/$name.log" 2>&1; then
    echo "[compare] $name failed; see $out/$name.log" >&2
    failed=1
  fi
done

header="config,description,final_loss,linear_top1,knn_top1,data_wait_percent,pretrain_seconds"
rows=()
for config in "${configs[@]}"; do
  name=$(basename "$config" .json)
  dir=$out/$name
  [[ -f "$dir/transfer/results.json" && -f "$dir/summary.json" ]] || { echo "[compare] $name: no results yet" >&2; continue; }
  rows+=("$(jq -r --arg name "$name" --slurpfile results "$dir/transfer/results.json" \
      --slurpfile config "$dir/config.json" '
    def r($digits): if type == "number" then (. * pow(10; $digits) | round) / pow(10; $digits) else null end;
    [$name, ($config[0].description // ""), (.final_loss | r(4)),
     ($results[0].linear_probe.top1 | r(2)), ($results[0].knn.top1 | r(2)),
     ((.data_wait_fraction // 0) * 100 | r(1)), (.seconds | r(1))] | @csv' "$dir/summary.json")")
done
{ echo "$header"; printf '%s\n' "${rows[@]}"; } >"$out/results.csv"
{
  echo "| config | final loss | linear top-1 % | kNN top-1 % | data wait % | pretraining s |"
  echo "|---|---|---|---|---|---|"
  for row in "${rows[@]}"; do
    # The name comes first and the numbers last, so commas inside the description do not matter.
    jq -rR 'split(",") as $f | [$f[0], $f[-5], $f[-4], $f[-3], $f[-2], $f[-1]] |
      map(gsub("\""; "")) | "| " + join(" | ") + " |"' <<<"$row"
  done
} >"$out/results.md"
cat "$out/results.md"
echo "[compare] table: $out/results.md, $out/results.csv"
exit $failed
