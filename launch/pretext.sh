#!/usr/bin/env bash
# Runs every pretext task of configs/pretext/ (pretraining + transfer, same encoder and budget of
# seen images) and writes the comparison table and bar chart. See --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/pretext.sh [--out DIR] [--doc FILE] [--collect-only] [--set key.path=value ...]

Runs configs/pretext/*.json one after the other with launch/compare.sh: every pretext task on
Fashion-MNIST with the same ConvNet encoder, batch 256 and 2 epochs over 20 000 images (40 k images
seen), SimCLR with the same budget, and colorization beside SimCLR on synthetic RGB images. Then writes

  OUT/pretext.md     the tables: linear-probe top-1, kNN top-1, final loss, pretraining and total
                     wall time per task, with the raw-pixel and random-encoder baselines
  OUT/pretext.csv    the same numbers
  OUT/pretext.png    a bar chart of linear and kNN top-1 per task (gnuplot)

and, with --doc FILE (e.g. docs/PRETEXT.md), replaces the part of FILE between the lines
"<!-- pretext-results -->" and "<!-- /pretext-results -->" with the tables and copies the chart to
docs/img/pretext.png.

  --out DIR        where the runs go (default: runs/pretext)
  --doc FILE       the document to update (default: none)
  --collect-only   run nothing; tabulate the runs that have finished
  --set ...        overrides for every config (everything after --set), e.g. a shorter check:
                   --set train.max_steps=20 data.limit_train=4096 data.limit_test=1024

An interrupted comparison resumes where it stopped (finished runs are not run again).
About 30 minutes on an idle 2-core machine. SELFSUP_BIN names the binary (default build/selfsup).
USAGE
}

die() { echo "pretext.sh: error: $*" >&2; exit 2; }

out="" doc="" collect=() overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out=$2; shift 2 ;;
    --doc) [[ $# -ge 2 ]] || die "--doc needs a file"; doc=$2; shift 2 ;;
    --collect-only) collect=(--collect-only); shift ;;
    --set) shift; overrides=("$@"); break ;;
    *) die "unknown argument '$1'; see --help" ;;
  esac
done
command -v jq >/dev/null || die "jq not found; run launch/setup.sh (Debian package jq)"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${out:-runs/pretext}
[[ -z "$doc" || -f "$doc" ]] || die "--doc $doc: no such file (it must hold the marker lines)"

# Fashion-MNIST first (SimCLR first: its transfer stage also measures the baselines), then RGB.
gray=("$root/configs/pretext/simclr.json")
for config in "$root"/configs/pretext/*.json; do
  name=$(basename "$config" .json)
  [[ $name == simclr || $name == rgb_* ]] || gray+=("$config")
done
rgb=("$root/configs/pretext/rgb_simclr.json" "$root/configs/pretext/rgb_colorization.json")
set_args=()
[[ ${#overrides[@]} -gt 0 ]] && set_args=(--set "${overrides[@]}")
mkdir -p "$out"
status=0
echo "[pretext] ${#gray[@]} configs on Fashion-MNIST, ${#rgb[@]} on synthetic RGB -> $out"
"$root/launch/compare.sh" "${gray[@]}" "${rgb[@]}" --out "$out" "${collect[@]}" "${set_args[@]}" \
  >"$out.compare.log" 2>&1 || status=$?
[[ -d "$out" ]] || die "compare.sh made no runs; see $out.compare.log"

# One row per run: task, linear, kNN, final loss, pretraining s, total s (pretraining + transfer).
row() {  # $1 = run dir, $2 = label
  local dir=$1 label=$2
  [[ -f "$dir/transfer/results.json" && -f "$dir/summary.json" ]] || return 0
  jq -r --arg task "$label" --slurpfile s "$dir/summary.json" '
    def r($d): if type == "number" then (. * pow(10; $d) | round) / pow(10; $d) else "" end;
    [$task, (.linear_probe.top1 | r(2)), (.knn.top1 | r(2)), ($s[0].final_loss | r(4)),
     ($s[0].seconds | r(0)), (($s[0].seconds + .wall_seconds) | r(0))] | @tsv' \
    "$dir/transfer/results.json"
}
baselines() {  # $1 = run dir whose transfer measured the baselines
  local file=$1/transfer/results.json
  [[ -f "$file" ]] || return 0
  jq -r 'def r($d): if type == "number" then (. * pow(10; $d) | round) / pow(10; $d) else "" end;
    (.baselines // {}) | to_entries[] |
    [(if .key == "raw_pixels" then "baseline: raw pixels" else "baseline: random encoder" end),
     (.value.top1 | r(2)), (.value.knn_top1 | r(2)), "", "", (.value.seconds | r(0))] | @tsv' \
    "$file"
}
table() {  # rows on stdin -> markdown
  echo "| task | linear top-1 % | kNN top-1 % | final loss | pretraining s | total s |"
  echo "|---|---|---|---|---|---|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }'
}
gray_rows=$(
  for config in "${gray[@]}"; do
    name=$(basename "$config" .json)
    row "$out/$name" "$name"
  done
  baselines "$out/simclr"
)
rgb_rows=$(
  for config in "${rgb[@]}"; do
    name=$(basename "$config" .json)
    row "$out/$name" "${name#rgb_}"
  done
  baselines "$out/rgb_simclr"
)
[[ -n "$gray_rows$rgb_rows" ]] || die "no finished runs in $out; see $out.compare.log"
{
  echo "Fashion-MNIST (the first 20 000 training images, 2 epochs; all 10 000 test images):"
  echo
  table <<<"$gray_rows"
  echo
  echo "Synthetic RGB images (data.synthetic: 20 000 of 32 px, 2 epochs; colour and shape set by the class):"
  echo
  table <<<"$rgb_rows"
} >"$out/pretext.md"
{
  printf 'dataset\ttask\tlinear_top1\tknn_top1\tfinal_loss\tpretrain_s\ttotal_s\n'
  sed 's/^/fashion-mnist\t/' <<<"$gray_rows"
  sed 's/^/synthetic-rgb\t/' <<<"$rgb_rows"
} | tr '\t' ',' >"$out/pretext.csv"
cat "$out/pretext.md"

if command -v gnuplot >/dev/null; then
  awk -F'\t' '{ printf "\"%s\"\t%s\t%s\n", $1, ($2 == "" ? "NaN" : $2), ($3 == "" ? "NaN" : $3) }' \
    <<<"$gray_rows" >"$out/pretext.dat"
  gnuplot <<GP 2>"$out/gnuplot.log" || echo "[pretext] gnuplot failed; see $out/gnuplot.log" >&2
set terminal pngcairo size 1100,560 noenhanced
set output "$out/pretext.png"
set title "Pretext tasks on Fashion-MNIST: frozen-encoder top-1 (same ConvNet, 40 k images seen)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [50:100]
set ylabel "test top-1 %"
set grid ytics
set xtics rotate by -30
set key top right
plot "$out/pretext.dat" using 2:xtic(1) title "linear probe", "" using 3 title "kNN (k = 200)"
GP
else
  echo "[pretext] gnuplot not found: no chart (install gnuplot-nox, see launch/setup.sh)" >&2
fi

if [[ -n "$doc" ]]; then
  grep -q '^<!-- pretext-results -->$' "$doc" && grep -q '^<!-- /pretext-results -->$' "$doc" ||
    die "$doc lacks the lines <!-- pretext-results --> and <!-- /pretext-results -->"
  tmp=$(mktemp)
  awk -v table="$out/pretext.md" '
    /^<!-- pretext-results -->$/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
    /^<!-- \/pretext-results -->$/ { skip = 0 }
    !skip { print }' "$doc" >"$tmp"
  mv "$tmp" "$doc"
  if [[ -f "$out/pretext.png" ]]; then
    mkdir -p "$(dirname "$doc")/img"
    cp "$out/pretext.png" "$(dirname "$doc")/img/pretext.png"
  fi
  echo "[pretext] updated $doc"
fi
echo "[pretext] tables: $out/pretext.md, $out/pretext.csv; chart: $out/pretext.png"
exit $status
