#!/usr/bin/env bash
# Builds the libFuzzer harness of the safetensors header parser alone (parser + harness, with
# clang's address and undefined-behaviour sanitizers), writes a small seed corpus and fuzzes
# briefly. Skips (77) without clang++ or libFuzzer (Debian: clang and libclang-rt-14-dev).
# Usage: fuzz_safetensors_test.sh SELFSUP_BINARY SOURCE_DIR   (the binary is not used)
# Environment: SELFSUP_FUZZ_SECONDS (default 20), SELFSUP_FUZZ_KEEP=DIR keeps the corpus there.
set -euo pipefail
src=$2
seconds=${SELFSUP_FUZZ_SECONDS:-20}

clang=""
for candidate in clang++ clang++-14 clang++-15 clang++-16; do
  if command -v "$candidate" >/dev/null; then clang=$candidate; break; fi
done
if [[ -z "$clang" ]]; then
  echo "SKIP: no clang++ (install clang and libclang-rt-14-dev: launch/setup.sh)"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "[fuzz] building the harness with $clang"
if ! "$clang" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
     -I"$src/include" "$src/src/models/safetensors.cpp" "$src/tests/fuzz/safetensors_fuzz.cpp" \
     -o "$tmp/safetensors_fuzz" 2>"$tmp/build.log"; then
  if grep -q "fuzzer" "$tmp/build.log" && grep -qi "cannot find\|no such file" "$tmp/build.log"; then
    cat "$tmp/build.log"
    echo "SKIP: clang's libFuzzer runtime is missing (Debian: libclang-rt-14-dev)"; exit 77
  fi
  cat "$tmp/build.log"; echo "FAIL: the harness does not build"; exit 1
fi

# Seeds: NAME JSON-HEADER DATA-BYTES -> 8-byte little-endian length, header, zero bytes.
corpus=${SELFSUP_FUZZ_KEEP:-$tmp/corpus}
mkdir -p "$corpus"
seed() {
  local n=${#2}
  {
    for i in 0 1 2 3 4 5 6 7; do printf "\\x$(printf %02x $(((n >> (8 * i)) & 255)))"; done
    printf '%s' "$2"
    head -c "$3" /dev/zero
  } >"$corpus/$1"
}
seed empty '{}' 0
seed metadata '{"__metadata__":{"format":"selfsup-encoder/1","step":"7"}}' 0
seed one '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}' 24
seed two '{"a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"b":{"dtype":"BOOL","shape":[0,4],"data_offsets":[8,8]},"c":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]}}' 14
seed all_dtypes '{"f64":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"f16":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},"i32":{"dtype":"I32","shape":[1],"data_offsets":[10,14]},"i16":{"dtype":"I16","shape":[1],"data_offsets":[14,16]},"i8":{"dtype":"I8","shape":[1],"data_offsets":[16,17]},"u8":{"dtype":"U8","shape":[1],"data_offsets":[17,18]}}' 18
seed overlap '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}' 6
seed gap '{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}' 2
seed overflow '{"a":{"dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,0]}}' 0
printf '\xff\xff\xff\xff\xff\xff\xff\xff{}' >"$corpus/huge_length"
cat >"$tmp/dict" <<'DICT'
"dtype"
"shape"
"data_offsets"
"__metadata__"
"F64"
"F32"
"F16"
"BF16"
"I64"
"I32"
"I16"
"I8"
"U8"
"BOOL"
"18446744073709551615"
"9223372036854775808"
DICT

echo "[fuzz] fuzzing for ${seconds}s from $(ls "$corpus" | wc -l) inputs"
status=0
"$tmp/safetensors_fuzz" -max_total_time="$seconds" -dict="$tmp/dict" -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$tmp/" "$corpus" >"$tmp/fuzz.log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
  cat "$tmp/fuzz.log"
  for crash in "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* "$tmp"/oom-*; do
    [[ -e "$crash" ]] || continue
    echo "input that failed ($crash), as hex:"; od -A d -t x1 "$crash" | head -40
  done
  echo "FAIL: the fuzzer found a failing input (exit status $status)"; exit 1
fi
tail -15 "$tmp/fuzz.log"
echo "fuzz test passed"
