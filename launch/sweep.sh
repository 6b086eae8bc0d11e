#!/usr/bin/env bash
# Runs a grid of pretraining + transfer runs described by a sweep spec (JSON), then collects their
# results into one CSV table and gnuplot plots. See --help and the README section "Sweeps".
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: launch/sweep.sh SPEC [--dry-run] [--only CELL] [--out DIR] [--collect-only]

Expands the grid of SPEC (e.g. configs/sweeps/batch_vs_negatives.json) into cells, runs each cell
as one `selfsup train` (pretraining + transfer) into OUT/cells/<cell>, then collects:
OUT/results.csv, OUT/plots/*.png and an aligned table on stdout.

  --dry-run       list the cells (id, name, ranks, batch, queue, steps, overrides) and stop
  --only CELL     run one cell only, by id (0, 1, ...: a Slurm array index) or by name; no collect
  --out DIR       sweep directory (default: runs/sweeps/<spec name>)
  --collect-only  run nothing; collect the cells that have finished

A cell whose run directory already has transfer/results.json is skipped, and an unfinished one
resumes from its last checkpoint (--resume auto), so an interrupted or preempted sweep goes on
where it stopped. A cell that fails does not stop the others; the sweep then exits 1.

Spec: {"base": CONFIG (relative to the repository root), "name": NAME,
       "budget": {"images": N}     images seen per cell: train.max_steps = N / (train.batch_size x
                                   train.accumulate_steps),
       "grid": {"key.path": [values...], ..., "world_size": [ranks...]},
       "set": {"key.path": value, ...}}   overrides for every cell
Cells are the product of the grid lists, the first key varying slowest. A cell with
negatives.queue_size > 0 also gets negatives.source=batch+queue (unless the spec sets it).

Launcher (SELFSUP_LAUNCHER): `local` runs launch/run_local.sh -n WORLD (mpirun on this machine);
`srun` runs srun --mpi=pmix -n WORLD build/selfsup (inside a Slurm allocation); `auto` (default)
picks srun when SLURM_JOB_ID is set. SELFSUP_BIN names the selfsup binary (default build/selfsup).
USAGE
}

die() { echo "sweep.sh: error: $*" >&2; exit 2; }

spec="" dry_run=0 only="" out="" collect_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1; shift ;;
    --collect-only) collect_only=1; shift ;;
    --only) [[ $# -ge 2 ]] || die "--only needs a cell id or name; see --dry-run"; only=$2; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out=$2; shift 2 ;;
    -*) die "unknown option '$1'; see --help" ;;
    *) [[ -z "$spec" ]] || die "one SPEC only (got '$spec' and '$1'); see --help"; spec=$1; shift ;;
  esac
done
[[ -n "$spec" ]] || die "SPEC is required, e.g. launch/sweep.sh configs/sweeps/batch_vs_negatives.json; see --help"
[[ -z "$only" || $collect_only -eq 0 ]] || die "--only and --collect-only exclude each other"
command -v jq >/dev/null || die "jq not found; run launch/setup.sh (Debian package jq)"
[[ -r "$spec" ]] || die "cannot read sweep spec '$spec'"
jq -e 'type == "object"' "$spec" >/dev/null 2>&1 || die "sweep spec '$spec' is not a JSON object"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SELFSUP_BIN:-${SELFSUP_BUILD_DIR:-$root/build}/selfsup}

base=$(jq -r '.base // ""' "$spec")
[[ -n "$base" ]] || die "$spec: \"base\" (the config every cell starts from) is required"
[[ "$base" == /* ]] || base=$root/$base
[[ -r "$base" ]] || die "$spec: base config '$base' not found (relative paths start at the repository root)"
name=$(jq -r --arg file "$(basename "$spec" .json)" '.name // $file' "$spec")
out=${out:-$root/runs/sweeps/$name}

# ---- 1. Expand the grid into cells (one JSON object per line), checking each cell up front. ----
# A value is looked up in the cell's grid values, then the spec's "set", then the base config.
cells=$(jq -c --slurpfile base "$base" '
  . as $spec | ($base[0]) as $base | (.set // {}) as $set |
  def lookup($key; $cell):
    if ($cell | has($key)) then $cell[$key]
    elif ($set | has($key)) then $set[$key]
    else ($base | getpath($key | split("."))) end;
  def short($key):
    {"train.batch_size": "b", "negatives.queue_size": "q", "world_size": "w"}[$key]
    // ($key | split(".") | last);
  def spec_errors:
    [ (if (.budget.images | type) != "number" or .budget.images < 1 or
          (.budget.images | floor) != .budget.images
       then "budget.images must be a positive integer (images seen per cell)" else empty end),
      (if (.grid | type) != "object" or (.grid | length) == 0
       then "grid must be an object of key.path: [values...]" else empty end),
      (.grid // {} | to_entries[] | select((.value | type) != "array" or (.value | length) == 0)
       | "grid.\(.key) must be a non-empty list of values"),
      (.set // {} | keys[] | select(. == "world_size")
       | "world_size is the number of ranks, not a config key: put it in grid"),
      ((.grid // {}) + $set | keys[]
       | select(. == "train.max_steps" or . == "train.epochs")
       | "\(.) is decided by budget.images: remove it from grid and set"),
      (.grid // {} | keys[] | . as $key | select($set | has($key))
       | "\(.) is in both grid and set: keep it in one"),
      (keys[] | select(IN("description", "base", "name", "budget", "grid", "set") | not)
       | "unknown key \"\(.)\" (a spec has description, base, name, budget, grid, set)") ];
  if (spec_errors | length) > 0 then {spec_errors: spec_errors}
  else
    (reduce (.grid | to_entries[]) as $axis ([{}];
       [.[] as $cell | $axis.value[] as $value | $cell + {($axis.key): $value}]))
    | to_entries[] | .key as $id | .value as $grid |
    (lookup("train.batch_size"; $grid) // 256) as $batch |
    (lookup("negatives.queue_size"; $grid) // 0) as $queue |
    (lookup("augment.views"; $grid) // 2) as $views |
    (lookup("train.accumulate_steps"; $grid) // 1) as $accumulate |
    ($grid.world_size // 1) as $world |
    ($spec.budget.images) as $images |
    (if ($batch | type) == "number" and $batch >= 1 and ($accumulate | type) == "number"
        and $accumulate >= 1
     then ($images / ($batch * $accumulate) | floor) else 0 end) as $steps |
    ([$grid | to_entries[] | "\(short(.key))\(.value | tostring | gsub("[^A-Za-z0-9.+]"; "_"))"]
     | join("-")) as $name |
    { id: $id, name: $name, world_size: $world, global_batch: $batch, queue_size: $queue,
      views: $views, steps: $steps,
      errors: [
        (if ($batch | type) != "number" or $batch < 1 or ($batch | floor) != $batch
         then "train.batch_size = \($batch | tojson) must be a positive integer"
         elif ($images % $batch) != 0
         then "budget.images = \($images) is not a multiple of train.batch_size = \($batch): "
              + "use a batch size that divides the budget, or a budget that every batch size divides"
         elif ($accumulate | type) != "number" or $accumulate < 1
              or ($images % ($batch * $accumulate)) != 0
         then "budget.images = \($images) is not a multiple of train.batch_size x "
              + "train.accumulate_steps = \($batch) x \($accumulate | tojson): an optimizer step "
              + "sees both; use values whose product divides the budget"
         else empty end),
        (if ($world | type) != "number" or $world < 1 or ($world | floor) != $world
         then "world_size = \($world | tojson) must be a positive integer"
         elif ($batch | type) == "number" and ($batch % $world) != 0
         then "train.batch_size = \($batch) is not divisible by world_size = \($world): "
              + "every rank takes an equal slice of the global batch"
         else empty end),
        (if ($queue | type) != "number" or $queue < 0 or ($queue | floor) != $queue
         then "negatives.queue_size = \($queue | tojson) must be an integer >= 0"
         elif $queue > 0 and ($batch | type) == "number" and ($queue % ($batch * $views)) != 0
         then "negatives.queue_size = \($queue) is not a multiple of train.batch_size x "
              + "augment.views = \($batch) x \($views) = \($batch * $views) (the queue takes whole "
              + "batches of projections): use a multiple of \($batch * $views)"
         else empty end) ],
      overrides: (
        [($set | to_entries[]), ($grid | to_entries[] | select(.key != "world_size"))]
        | map("\(.key)=\(.value | tojson)")
        + ["train.max_steps=\($steps)", "train.epochs=1000000"]
        + (if $queue > 0 and (($set + $grid) | has("negatives.source") | not)
           then ["negatives.source=\"batch+queue\""] else [] end)) }
  end' "$spec") || die "$spec: could not expand the grid (see the jq message above)"

spec_errors=$(jq -r '.spec_errors[]? // empty' <<<"$cells")
[[ -z "$spec_errors" ]] || die "$spec: $(echo; sed 's/^/  /' <<<"$spec_errors")"
cell_count=$(wc -l <<<"$cells")

print_cells() {
  echo "[sweep] $name: $cell_count cell(s) from $spec (base $base, $(jq -r '.budget.images' "$spec") images per cell)"
  jq -r '"  \(.id)  \(.name)  ranks \(.world_size)  batch \(.global_batch)  queue \(.queue_size)"
         + "  steps \(.steps)\n      --set \(.overrides | join(" "))"
         + (.errors | map("\n      ERROR: " + .) | join(""))' <<<"$cells"
}
cell_errors=$(jq -r '.name as $n | .errors[] | "  cell \($n): \(.)"' <<<"$cells")

if [[ $dry_run -eq 1 ]]; then
  print_cells
  [[ -z "$cell_errors" ]] || die "$(echo; echo "$cell_errors")"
  echo "[sweep] Slurm: sbatch --array=0-$((cell_count - 1)) cluster/sweep.sbatch $spec"
  exit 0
fi
[[ -z "$cell_errors" ]] || die "some cells are invalid; nothing was run:$(echo; echo "$cell_errors")"

# ---- 2. Run the cells (skipping finished ones). ----
launcher=${SELFSUP_LAUNCHER:-auto}
if [[ "$launcher" == auto ]]; then
  if [[ -n "${SLURM_JOB_ID:-}" ]]; then launcher=srun; else launcher=local; fi
fi
[[ "$launcher" == local || "$launcher" == srun ]] || die "SELFSUP_LAUNCHER='$launcher': use local, srun or auto"

# run_cell CELL_JSON: runs one cell; returns non-zero when its run fails.
run_cell() {
  local cell=$1 cell_name world dir
  cell_name=$(jq -r '.name' <<<"$cell")
  world=$(jq -r '.world_size' <<<"$cell")
  dir=$out/cells/$cell_name
  local overrides=()
  mapfile -t overrides < <(jq -r '.overrides[]' <<<"$cell")
  if [[ -s "$dir/transfer/results.json" ]]; then
    if [[ -f "$dir/sweep_cell.json" ]] &&
       ! jq -e --argjson now "$cell" '.overrides == $now.overrides' "$dir/sweep_cell.json" >/dev/null; then
      echo "sweep.sh: error: $dir was run with other overrides than the spec now gives (budget or set changed?);" \
           "use another --out, or remove that cell directory to rerun it" >&2
      return 1
    fi
    echo "[sweep] cell $cell_name: done already ($dir/transfer/results.json), skipped"
    return 0
  fi
  # An unfinished earlier attempt (a preempted array task, a lost node, an interrupted sweep)
  # resumes from its last checkpoint when it ran the same base config and overrides; otherwise it
  # is kept for its logs and the cell starts afresh.
  local resume=() base_sha
  base_sha=$(sha256sum "$base" | cut -d' ' -f1)
  if [[ -e "$dir" ]]; then
    if [[ -s "$dir/checkpoints/latest" && -f "$dir/sweep_cell.json" ]] &&
       jq -e --argjson now "$cell" --arg sha "$base_sha" \
         '.overrides == $now.overrides and .base_sha256 == $sha' "$dir/sweep_cell.json" >/dev/null; then
      resume=(--resume auto)
      echo "[sweep] cell $cell_name: unfinished earlier attempt resumes from its checkpoint" \
           "$(cat "$dir/checkpoints/latest")"
    else
      local aside
      aside=$out/failed/$cell_name-$(date +%Y%m%d-%H%M%S)
      mkdir -p "$out/failed"
      echo "[sweep] cell $cell_name: unfinished earlier attempt (no checkpoint, or another base" \
           "config or overrides) moved to $aside"
      mv "$dir" "$aside"
    fi
  fi
  mkdir -p "$dir"
  jq '. + {launcher: $launcher, base_sha256: $sha}' --arg launcher "$launcher" --arg sha "$base_sha" \
    <<<"$cell" >"$dir/sweep_cell.json"
  local cmd
  if [[ "$launcher" == srun ]]; then
    # As cluster/train.sbatch: ranks learn their world from Slurm through PMIx; a failing rank
    # ends the others.
    # train.threads: the cores Slurm gave each task, unless the spec sets it.
    [[ " ${overrides[*]} " == *" train.threads="* ]] ||
      overrides+=("train.threads=${SLURM_CPUS_PER_TASK:-0}")
    # --cpus-per-task again: srun does not inherit it from sbatch (Slurm 22.05 and later).
    cmd=(srun --mpi=pmix --kill-on-bad-exit=1 --ntasks="$world"
         ${SLURM_CPUS_PER_TASK:+"--cpus-per-task=$SLURM_CPUS_PER_TASK"}
         "$bin" train "$base" --run-dir "$dir" "${resume[@]}" --set "${overrides[@]}")
  else
    cmd=("$root/launch/run_local.sh" -n "$world" "$base" --run-dir "$dir" "${resume[@]}"
         --set "${overrides[@]}")
  fi
  echo "[sweep] cell $cell_name: ${cmd[*]}"
  local start=$SECONDS status=0
  # A resumed attempt appends to the earlier attempts' log.
  [[ ${#resume[@]} -eq 0 ]] && : >"$dir/sweep.log"
  [[ ${#resume[@]} -eq 0 ]] || echo "[sweep] resumed $(date -u +%FT%TZ)" >>"$dir/sweep.log"
  SELFSUP_BIN=$bin "${cmd[@]}" </dev/null >>"$dir/sweep.log" 2>&1 || status=$?
  if [[ $status -ne 0 || ! -s "$dir/transfer/results.json" ]]; then
    # The error lines when there are any (mpirun adds a long epilogue), else the end of the log.
    { grep -m 3 -E "error" "$dir/sweep.log" || tail -n 5 "$dir/sweep.log"; } | sed 's/^/    /' >&2
    echo "sweep.sh: cell $cell_name failed (exit status $status) after $((SECONDS - start)) s;" \
         "full log: $dir/sweep.log" >&2
    return 1
  fi
  echo "[sweep] cell $cell_name: done in $((SECONDS - start)) s"
}

if [[ $collect_only -eq 0 ]]; then
  if [[ -n "$only" ]]; then
    cell=$(jq -c --arg only "$only" 'select((.id | tostring) == $only or .name == $only)' <<<"$cells")
    [[ -n "$cell" ]] || die "no cell '$only' in $spec: ids are 0-$((cell_count - 1)); see --dry-run"
    run_cell "$cell" || exit 1
    echo "[sweep] collect when every cell has run: launch/sweep.sh $spec --out $out --collect-only"
    exit 0
  fi
  print_cells
  failed=()
  while IFS= read -r cell <&3; do
    run_cell "$cell" || failed+=("$(jq -r '.name' <<<"$cell")")
  done 3<<<"$cells"
fi

# ---- 3. Collect: results.csv, plots, table. ----
# Per cell: transfer/results.json (kNN and linear probe top-1) and summary.json (written by the
# trainer: loss and MI bound of the last step, images/s, peak resident memory of the largest rank).
csv=$out/results.csv
mkdir -p "$out"
header="cell,global_batch,world_size,queue_size,negatives_per_anchor,final_loss,mi_bound"
header+=",knn_top1,linear_top1,images_per_s,peak_memory_mb,seconds"
rows=() missing=()
while IFS= read -r cell; do
  cell_name=$(jq -r '.name' <<<"$cell")
  dir=$out/cells/$cell_name
  if [[ ! -s "$dir/transfer/results.json" ]]; then missing+=("$cell_name"); continue; fi
  [[ -s "$dir/summary.json" ]] ||
    die "$dir has no summary.json (written by selfsup train since the negatives queue); rerun the cell"
  # N of the MI bound counts the positives too; negatives per anchor do not.
  row=$(jq -r --argjson cell "$cell" --slurpfile results "$dir/transfer/results.json" '
    def r($digits): if type == "number" then (. * pow(10; $digits) | round) / pow(10; $digits) else null end;
    $results[0] as $res |
    [$cell.name, .global_batch, .world_size, .queue_size, (.candidates_per_anchor - (.views - 1)),
     (.final_loss | r(4)), (.final_mi_bound | r(4)), ($res.knn.top1 | r(2)),
     ($res.linear_probe.top1 | r(2)), (.images_per_s | r(1)), (.peak_rss_mb | r(1)),
     (.seconds | r(1))] | @csv' "$dir/summary.json") ||
    die "cannot read the results of $dir"
  rows+=("$row")
done <<<"$cells"
{ echo "$header"; [[ ${#rows[@]} -eq 0 ]] || printf '%s\n' "${rows[@]}"; } >"$csv"
echo "[sweep] wrote $csv (${#rows[@]} of $cell_count cells)"
[[ ${#missing[@]} -eq 0 ]] || echo "[sweep] not finished yet: ${missing[*]}"

# Plots: one data file per (batch size, world size), sorted by negatives per anchor, so each
# becomes one line.
plots=$out/plots
if [[ ${#rows[@]} -eq 0 ]]; then
  echo "[sweep] no finished cells: no plots"
elif ! command -v gnuplot >/dev/null; then
  echo "[sweep] gnuplot not found (launch/setup.sh installs gnuplot-nox): no plots" >&2
else
  mkdir -p "$plots"
  rm -f "$plots"/group_*.csv
  worlds=$(tail -n +2 "$csv" | cut -d, -f3 | sort -u | wc -l)
  tail -n +2 "$csv" | sort -t, -k2,2n -k3,3n -k5,5n | awk -F, -v dir="$plots" '
    { file = sprintf("%s/group_b%s_w%s.csv", dir, $2, $3); print > file }'
  {
    # pngcairo where gnuplot has it (Debian gnuplot-nox does), else the libgd png terminal.
    if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then
      echo 'set terminal pngcairo size 960,640 noenhanced'
    else
      echo 'set terminal png size 960,640 noenhanced'
    fi
    echo 'set datafile separator ","'
    echo 'set logscale x; set grid; set key below'
    echo 'set xlabel "negatives per anchor (batch and queue)"'
    # plot_list USING COLUMN TITLE_SUFFIX STYLE: one plot clause per group file that has a value
    # in COLUMN (peak memory may be unknown: gnuplot fails on a clause without points).
    plot_list() {
      local using=$1 column=$2 suffix=$3 style=$4 sep="" file b w title i=0
      for file in "$plots"/group_*.csv; do
        i=$((i + 1))
        awk -F, -v c="$column" '$c != "" { found = 1 } END { exit !found }' "$file" || continue
        b=${file##*group_b}; b=${b%%_w*}; w=${file##*_w}; w=${w%.csv}
        title="batch $b"
        if [[ $worlds -gt 1 ]]; then title+=", $w ranks"; fi
        printf '%s"%s" using %s with linespoints %s lc %d title "%s%s"' \
          "$sep" "$file" "$using" "$style" "$i" "$title" "$suffix"
        sep=", "
      done
    }
    # plot CLAUSES...: a plot command of the non-empty clauses.
    plot() { local IFS=$'\n'; echo "plot $(printf '%s\n' "$@" | grep -v '^$' | paste -sd, -)"; }
    echo "set output \"$plots/mi_bound_vs_negatives.png\""
    echo 'set title "InfoNCE bound log(N) - loss at the end of pretraining"; set ylabel "MI bound (nats)"'
    plot "$(plot_list 5:7 7 "" "pt 7")"
    echo "set output \"$plots/accuracy_vs_negatives.png\""
    echo 'set title "Transfer: top-1 on the test split"; set ylabel "top-1 (%)"'
    plot "$(plot_list 5:9 9 ", linear probe" "pt 7 dt 1")" "$(plot_list 5:8 8 ", kNN" "pt 6 dt 2")"
    echo "set output \"$plots/cost_vs_pool.png\""
    echo 'set title "Cost against the pool (negatives per anchor + 1)"'
    echo 'set xlabel "pool size (negatives per anchor + 1)"; set ylabel "peak memory (MiB)"'
    echo 'set y2label "images/s"; set y2tics; set ytics nomirror'
    plot "$(plot_list '($5+1):11' 11 ", peak memory" "pt 7 dt 1")" \
         "$(plot_list '($5+1):10 axes x1y2' 10 ", images/s" "pt 6 dt 2")"
  } >"$plots/plots.gp"
  if gnuplot "$plots/plots.gp" >"$plots/gnuplot.log" 2>&1; then
    echo "[sweep] plots in $plots: mi_bound_vs_negatives.png accuracy_vs_negatives.png cost_vs_pool.png"
  else
    echo "sweep.sh: gnuplot failed; see $plots/gnuplot.log and $plots/plots.gp" >&2
  fi
fi

echo
awk -F, '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > width[i]) width[i] = length($i) } }
  END { for (r = 1; r <= NR; r++) { line = ""
          for (i = 1; i <= NF; i++) line = line sprintf(i == 1 ? "%-" width[i] "s" : "  %" width[i] "s", cell[r, i])
          print line } }' "$csv" | tr -d '"'
if [[ $collect_only -eq 0 && ${#failed[@]} -gt 0 ]]; then
  echo "sweep.sh: ${#failed[@]} cell(s) failed: ${failed[*]}; see their sweep.log; rerunning the command retries them" >&2
  exit 1
fi
