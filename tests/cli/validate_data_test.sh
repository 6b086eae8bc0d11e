#!/usr/bin/env bash
# `selfsup validate-data` on a small image folder with three bad files (a zero-byte file, a
# truncated JPEG, a text file named .jpg): the counts, the list of unreadable files, the JSON
# report and the exit status (1 with bad files, 0 without; 2 for bad usage).
# Usage: validate_data_test.sh SELFSUP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; cat "$tmp/out" "$tmp/err" 2>/dev/null || true; exit 1; }

# A 16x12 JPEG and a 10x8 PNG (written once with PIL), so the test needs no image tools.
jpeg='/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAYEBQYFBAYGBQYHBwYIChAKCgkJChQODwwQFxQYGBcUFhYaHSUfGhsjHBYWICwgIyYnKSopGR8tMC0oMCUoKSj/2wBDAQcHBwoIChMKChMoGhYaKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCj/wAARCAAMABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDgqKKK8Q/YD//Z'
png='iVBORw0KGgoAAAANSUhEUgAAAAoAAAAICAIAAABPmPnhAAAAFElEQVR4nGNkTTnBgBsw4ZEb0tIALRoBQb4oqc4AAAAASUVORK5CYII='

# data/train/{cat,dog}: 3 good cat images, 2 good dog images; then the bad files under dog/.
mkdir -p "$tmp/data/train/cat" "$tmp/data/train/dog" "$tmp/data/val/cat"
echo "$jpeg" | base64 -d >"$tmp/data/train/cat/c1.jpg"
echo "$png" | base64 -d >"$tmp/data/train/cat/c2.png"
echo "$jpeg" | base64 -d >"$tmp/data/train/cat/C3.JPEG"
echo "$jpeg" | base64 -d >"$tmp/data/train/dog/d1.jpg"
echo "$png" | base64 -d >"$tmp/data/train/dog/d2.png"
echo "$png" | base64 -d >"$tmp/data/val/cat/v1.png"
cat >"$tmp/config.json" <<JSON
{"name": "validate", "data": {"dataset": "folder", "root": "$tmp/data"}}
JSON

echo "== all readable: exit 0"
status=0
"$bin" validate-data "$tmp/config.json" --threads 2 >"$tmp/out" 2>"$tmp/err" || status=$?
[[ $status -eq 0 ]] || fail "exit status $status with only good files (want 0)"
grep -q "all 6 samples readable" "$tmp/out" || fail "no 'all 6 samples readable'"
grep -Eq "^train: .*5 images, 2 classes" "$tmp/out" || fail "train split not described"
grep -Eq "per class +0:3 1:2" "$tmp/out" || fail "wrong class counts"
grep -Eq "height +8 / 12 / 12" "$tmp/out" || fail "wrong height statistics"
grep -Eq "width +10 / 16 / 16" "$tmp/out" || fail "wrong width statistics"

echo "== three bad files: exit 1, each listed with its reason"
: >"$tmp/data/train/dog/zero.jpg"
echo "$jpeg" | base64 -d | head -c 300 >"$tmp/data/train/dog/truncated.jpg"
echo "this is not an image" >"$tmp/data/train/dog/text.jpg"
status=0
"$bin" validate-data "$tmp/config.json" --split train --json "$tmp/report.json" \
  >"$tmp/out" 2>"$tmp/err" || status=$?
[[ $status -eq 1 ]] || fail "exit status $status with bad files (want 1)"
grep -Eq "samples +8 \(5 readable, 3 unreadable\)" "$tmp/out" || fail "wrong counts"
grep -q "dog/zero.jpg: zero-byte file" "$tmp/out" || fail "zero-byte file not listed"
grep -q "dog/truncated.jpg: truncated JPEG" "$tmp/out" || fail "truncated JPEG not listed"
grep -q "dog/text.jpg: not an image" "$tmp/out" || fail "text file not listed"
grep -q "^selfsup: error: 3 of 8 samples are unreadable" "$tmp/err" || fail "no error line"
[[ $(wc -l <"$tmp/err") -eq 1 ]] || fail "more than one line on stderr"
grep -q "^test:" "$tmp/out" && fail "--split train also read the test split"
/usr/bin/python3 - "$tmp/report.json" <<'PY' || fail "JSON report"
import json, sys
report = json.load(open(sys.argv[1]))
assert report["samples"] == 8 and report["unreadable"] == 3, report
train = report["splits"]["train"]
assert train["class_counts"] == [3, 2], train
assert train["readable"] == 5 and train["channels"] == {"3": 5}, train
reasons = {b["source"].rsplit("/", 1)[1]: b["reason"] for b in train["bad_samples"]}
assert set(reasons) == {"zero.jpg", "truncated.jpg", "text.jpg"}, reasons
assert reasons["zero.jpg"] == "zero-byte file", reasons
PY

echo "== bad usage: exit 2"
status=0
"$bin" validate-data "$tmp/config.json" --split nope >"$tmp/out" 2>"$tmp/err" || status=$?
[[ $status -eq 2 ]] || fail "exit status $status for --split nope (want 2)"
status=0
"$bin" validate-data "$tmp/config.json" --set data.root="$tmp/nowhere" >"$tmp/out" 2>"$tmp/err" \
  || status=$?
[[ $status -eq 1 ]] && grep -q "data.root = \"$tmp/nowhere\" is not a folder" "$tmp/err" \
  || fail "missing root: status $status"
echo "validate-data test passed"
