#!/usr/bin/env bash
# Packs into bench/gpu/deps/ (ignored by git) everything `bench/gpu/check.sh` needs on a GPU machine
# that has LibTorch (pip torch), CMake, ninja and a compiler but none of selfsup's other C++
# dependencies and no Fashion-MNIST. Run it here, on Debian 12, where launch/setup.sh installed them.
set -euo pipefail
export LC_ALL=C  # one collation for sort, join and comm

usage() {
  cat <<'USAGE'
Usage: bench/gpu/bundle.sh [--help] [--train N] [--test N] [--out DIR]

Copies from this Debian machine into DIR (default bench/gpu/deps/):
  include/                      headers: OpenCV core/imgproc/imgcodecs, nlohmann-json, spdlog, fmt,
                                CLI11, GoogleTest (and GoogleMock, which its config imports when
                                libgmock-dev is installed)
  lib/<multiarch>/              shared libraries, each once under its soname: OpenCV core, imgproc,
                                imgcodecs, their needs oneTBB, libjpeg, libpng, libwebp, OpenEXR
                                (Iex, IlmThread, Imath), and spdlog, fmt;
                                libgtest.a, libgtest_main.a (libgmock.a, libgmock_main.a)
  lib/<multiarch>/cmake/, share/cmake/
                                CMake package configs (Debian's, pointed at those files; OpenCV's is
                                bench/gpu/cmake/OpenCVConfig.cmake, which imports the three modules)
  lib/stubs/                    stand-ins for libraries OpenCV links but selfsup never reaches
                                (GDAL, GDCM, TIFF, OpenJPEG, GLX, BLAS, LAPACK): each
                                defines the symbols OpenCV imports, and aborts with a message if one
                                is called (GDALAllRegister, called on OpenCV's first en/decoding,
                                does nothing). They keep the bundle small (the real closure is ~220 MB).
  zlib/                         zlib headers and a link-time libz.so (the machine's libz.so.1 runs)
  fashion-mnist/                the first N train (default 20000) and test (default 5000) images
                                and labels of /usr/share/datasets/fashion-mnist, IDX gzip
  MANIFEST.txt                  what was bundled, with Debian package versions
then builds and runs a small OpenCV program against the bundle alone (stubs included) and prints
the bundle's size. The device tool carries at most 64 MiB: name bench/gpu/deps in its `carry`.
USAGE
}

train_images=20000
test_images=5000
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=$root/bench/gpu/deps
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --train) train_images=$2; shift 2 ;;
    --test) test_images=$2; shift 2 ;;
    --out) deps=$2; shift 2 ;;
    *) echo "bundle.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$train_images" =~ ^[1-9][0-9]*$ && "$test_images" =~ ^[1-9][0-9]*$ ]] \
  || { echo "bundle.sh: --train and --test take a positive number of images" >&2; exit 2; }

packages=(libopencv-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libgtest-dev
          zlib1g-dev dataset-fashion-mnist)
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] \
    || { echo "bundle.sh: Debian package $p is not installed; run launch/setup.sh" >&2; exit 1; }
done

multiarch=$(gcc -print-multiarch)
sys_lib=/usr/lib/$multiarch
dataset=/usr/share/datasets/fashion-mnist
python=/usr/bin/python3
[[ -x $python ]] || python=python3
lib=$deps/lib/$multiarch
stubs=$deps/lib/stubs

# Libraries every glibc Linux with a C++ compiler has; never bundled, never stubbed.
system_sonames=" libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 ld-linux-x86-64.so.2 "
system_sonames+="libstdc++.so.6 libgcc_s.so.1 libz.so.1 "
# Real libraries carried (development link or soname): what selfsup links (OpenCV's three modules,
# spdlog, fmt) and what those modules need to work for real: oneTBB runs cv::parallel_for_; libjpeg
# and libpng let imgcodecs read and write the two common formats; OpenEXR (with Iex, IlmThread,
# Imath) because imgcodecs constructs an Imf::Chromaticities while it loads, so a stub would abort
# every program at start-up; libwebp because decoding any image asks the WebP decoder whether the
# bytes are WebP (the self-test below found both). Everything else they link is stubbed.
real_libs=(libopencv_core.so libopencv_imgproc.so libopencv_imgcodecs.so libtbb.so libjpeg.so
           libpng16.so libwebp.so libOpenEXR-3_1.so.30 libIex-3_1.so.30 libIlmThread-3_1.so.30
           libImath-3_1.so.29 libspdlog.so libfmt.so)

soname_of() { readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; }
needed_of() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
pkg_of() { dpkg-query -S "$1" 2>/dev/null | awk -F: 'NR==1 {print $1}' || true; }
# The loader's cache, read once (awk leaving a pipe early would SIGPIPE ldconfig under pipefail).
ld_cache=$(PATH=$PATH:/sbin:/usr/sbin ldconfig -p)
cached_path() { awk -v n="$1" '$1==n && /x86-64/ && !found {print $NF; found=1}' <<<"$ld_cache"; }
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }

echo "[bundle] writing $deps"
rm -rf "$deps"
mkdir -p "$deps/include/opencv4/opencv2" "$lib/cmake" "$stubs/src" "$deps/share/cmake" \
  "$deps/zlib/include" "$deps/zlib/lib" "$deps/fashion-mnist"
manifest=$deps/MANIFEST.txt
{
  echo "selfsup GPU bundle, made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME") by bench/gpu/bundle.sh"
  echo "(carry bench/gpu/deps with the device tool; bench/gpu/check.sh uses it)"
} >"$manifest"

# 1. Headers. OpenCV: the three modules only (plus the module list that core's headers include).
echo "[bundle] headers"
# GoogleTest's config also imports GoogleMock when libgmock-dev is installed (GMockTargets.cmake),
# and then fails if its archives are missing: carry GoogleMock too in that case.
with_gmock=0
[[ -f "$sys_lib/cmake/GTest/GMockTargets.cmake" ]] && with_gmock=1
for d in nlohmann spdlog fmt CLI gtest; do cp -rL "/usr/include/$d" "$deps/include/"; done
(( with_gmock )) && cp -rL /usr/include/gmock "$deps/include/"
(cd /usr/include/opencv4/opencv2 && cp -rL core core.hpp imgproc imgproc.hpp imgcodecs \
   imgcodecs.hpp opencv_modules.hpp "$deps/include/opencv4/opencv2/")
cp -L /usr/include/zlib.h /usr/include/zconf.h "$deps/zlib/include/"
cp -L "$sys_lib/libz.so" "$deps/zlib/lib/libz.so"

# 2. Real shared libraries, each copied once under its soname.
echo "[bundle] libraries"
kept_sonames=" "
declare -A real_file_of
for name in "${real_libs[@]}"; do
  dev_link=$sys_lib/$name
  [[ -e "$dev_link" ]] || { echo "bundle.sh: $dev_link not found (run launch/setup.sh)" >&2; exit 1; }
  soname=$(soname_of "$dev_link")
  real=$(readlink -f "$dev_link")
  cp -L "$dev_link" "$lib/$soname"
  kept_sonames+="$soname "
  real_file_of[$soname]=$(basename "$real")
  printf '  %-28s %8s  %s %s\n' "$soname" "$(du -h "$lib/$soname" | cut -f1)" \
    "$(pkg_of "$real")" "$(pkg_version "$(pkg_of "$real" | cut -d: -f1)")" | tee -a "$manifest"
done
archives=(libgtest.a libgtest_main.a)
(( with_gmock )) && archives+=(libgmock.a libgmock_main.a)
for a in "${archives[@]}"; do cp -L "$sys_lib/$a" "$lib/"; done
echo "  ${archives[*]} (static) libgtest-dev $(pkg_version libgtest-dev)" | tee -a "$manifest"

# 3. CMake package configs. Debian's find their prefix relative to themselves; their imported
#    locations name the versioned file (libspdlog.so.1.10.0), which the bundle stores under the
#    soname (libspdlog.so.1.10): rewrite those names.
echo "[bundle] CMake package configs"
for pkg in spdlog fmt GTest; do cp -rL "$sys_lib/cmake/$pkg" "$lib/cmake/"; done
for pkg in nlohmann_json CLI11; do cp -rL "/usr/share/cmake/$pkg" "$deps/share/cmake/"; done
for soname in "${!real_file_of[@]}"; do
  for f in $(grep -rlF --include='*.cmake' "/${real_file_of[$soname]}\"" "$lib/cmake" || true); do
    sed -i "s#/${real_file_of[$soname]}\"#/$soname\"#g" "$f"
  done
done
mkdir -p "$lib/cmake/opencv4"
cp "$root/bench/gpu/cmake/OpenCVConfig.cmake" "$lib/cmake/opencv4/"
for pkg in nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev \
           libopencv-dev zlib1g-dev; do
  echo "  $pkg $(pkg_version $pkg)"
done | tee -a "$manifest"

# 4. Stubs for every library the kept ones link that is neither kept nor a system library. Each
#    defines the functions the kept libraries import from it (data symbols would need more: fail).
echo "[bundle] stubs (imported symbols of the bundled libraries, defined to abort)"
undefined=$(for s in $kept_sonames; do nm -D --undefined-only "$lib/$s" | awk '$1=="U"{print $2}'; done | sort -u)
stubbed_sonames=" "
# Functions OpenCV calls on its first image en/decoding whatever the format (imgcodecs registers
# its GDAL decoder, which registers GDAL's drivers): their stubs return without doing anything.
noop_symbols="GDALAllRegister"
for s in $kept_sonames; do
  for need in $(needed_of "$lib/$s"); do
    [[ "$system_sonames$kept_sonames$stubbed_sonames" == *" $need "* ]] && continue
    real=$(cached_path "$need")
    [[ -n "$real" ]] || { echo "bundle.sh: cannot find $need (needed by $s)" >&2; exit 1; }
    # Symbols defined there and imported by a kept library: "name type" and the versions asked for.
    defined=$(nm -D --defined-only "$real" | awk '{print $3, $2}' | sed 's/@[^ ]*//' | sort -u -k1,1)
    wanted=$(join <(printf '%s\n' "$undefined" | sed 's/@.*//' | sort -u) <(printf '%s\n' "$defined"))
    data=$(awk '$2 !~ /^[TWi]$/' <<<"$wanted")
    [[ -z "$data" ]] || { echo "bundle.sh: $need exports data imported by the bundle: $data" >&2; exit 1; }
    versions=$(join <(awk '{print $1}' <<<"$wanted") \
                 <(printf '%s\n' "$undefined" | awk -F@ 'NF==2 {print $1, $2}' | sort -u) \
               | awk '{print $2}' | sort -u)
    src=$stubs/src/${need%%.so*}.c
    {
      echo "// Generated by bench/gpu/bundle.sh: stand-in for $need, which the bundled OpenCV links"
      echo "// but selfsup never calls. Each function reports itself and aborts."
      echo "#include <stdio.h>"
      echo "#include <stdlib.h>"
      echo "static void stub_called(const char* symbol) {"
      echo "  fprintf(stderr, \"selfsup GPU bundle: %s of $need was called, but the bundle carries\""
      echo "          \" only a stub of that library (bench/gpu/bundle.sh)\\n\", symbol);"
      echo "  abort();"
      echo "}"
      awk -v noop="$noop_symbols" 'BEGIN {split(noop, list, " "); for (i in list) skip[list[i]] = 1}
        {printf "void stub_%d(void) __asm__(\"%s\");\n", NR, $1
         if ($1 in skip) printf "void stub_%d(void) {}  // called while OpenCV registers its codecs\n", NR
         else printf "void stub_%d(void) { stub_called(\"%s\"); }\n", NR, $1}' <<<"$wanted"
    } >"$src"
    version_args=()
    if [[ -n "$versions" ]]; then
      [[ $(wc -l <<<"$versions") -eq 1 ]] \
        || { echo "bundle.sh: $need: symbols imported under several versions: $versions" >&2; exit 1; }
      echo "$versions { global: *; };" >"$stubs/src/${need%%.so*}.map"
      version_args=(-Wl,--version-script="$stubs/src/${need%%.so*}.map")
    fi
    gcc -shared -fPIC -O1 -Wl,-soname,"$need" "${version_args[@]}" -o "$stubs/$need" "$src"
    stubbed_sonames+="$need "
    printf '  stub %-26s %3d functions%s (real: %s, %s)\n' "$need" "$(wc -l <<<"$wanted")" \
      "${versions:+, version $versions}" "$(du -h "$(readlink -f "$real")" | cut -f1)" \
      "$(pkg_of "$(readlink -f "$real")")" | tee -a "$manifest"
  done
done
# Every symbol the kept libraries import must now come from a kept, stubbed or system library.
provided=$(for f in "$lib"/*.so* "$stubs"/*.so*; do nm -D --defined-only "$f" | awk '{print $3}'; done
           for s in $system_sonames; do
             p=$(cached_path "$s")
             if [[ -n "$p" ]]; then nm -D --defined-only "$p" | awk '{print $3}'; fi
           done)
missing=$(comm -23 <(printf '%s\n' "$undefined" | sed 's/@.*//' | sort -u) \
                   <(printf '%s\n' "$provided" | sed 's/@.*//' | sort -u))
[[ -z "$missing" ]] || { echo "bundle.sh: symbols nobody in the bundle provides:" >&2; echo "$missing" >&2; exit 1; }

# 5. Fashion-MNIST: the first N images and labels of each split (IDX header counts rewritten).
echo "[bundle] Fashion-MNIST: $train_images train, $test_images test images"
"$python" - "$dataset" "$deps/fashion-mnist" "$train_images" "$test_images" <<'PY'
import gzip, struct, sys
src, dst, counts = sys.argv[1], sys.argv[2], {"train": int(sys.argv[3]), "t10k": int(sys.argv[4])}
for split, n in counts.items():
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{split}-{kind}-ubyte.gz"
        with gzip.open(f"{src}/{name}", "rb") as f:
            data = f.read()
        magic, total = struct.unpack(">II", data[:8])
        dims = magic & 0xFF  # IDX: the last byte of the magic is the number of dimensions
        header = 4 * (1 + dims)
        shape = struct.unpack(f">{dims}I", data[4:header])
        item = 1
        for d in shape[1:]:
            item *= d
        n = min(n, total)
        out = data[:4] + struct.pack(">I", n) + data[8:header] + data[header:header + n * item]
        with gzip.GzipFile(f"{dst}/{name}", "wb", mtime=0) as g:
            g.write(out)
        print(f"  {name}: {n} of {total}")
PY
echo "  fashion-mnist: first $train_images train / $test_images test records of $dataset ($(pkg_version dataset-fashion-mnist))" >>"$manifest"

# 6. Self-test: an OpenCV program built and run against the bundle alone, stubs in place of the
#    real libraries, shows that the three modules load and work (TBB, PNG and JPEG for real).
echo "[bundle] self-test: OpenCV against the bundle alone"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/opencv_check.cpp" <<'CPP'
#include <atomic>
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>
int main() {
  cv::Mat image(28, 28, CV_8UC1);
  cv::randu(image, 0, 255);
  cv::Mat resized, blurred, color;
  cv::resize(image, resized, cv::Size(56, 56), 0, 0, cv::INTER_LINEAR);
  cv::GaussianBlur(resized, blurred, cv::Size(3, 3), 1.0);
  cv::cvtColor(blurred, color, cv::COLOR_GRAY2BGR);
  std::atomic<int> rows{0};
  cv::parallel_for_(cv::Range(0, color.rows), [&](const cv::Range& r) { rows += r.size(); });
  for (const char* ext : {".png", ".jpg"}) {
    std::vector<uchar> bytes;
    if (!cv::imencode(ext, color, bytes)) return 1;
    cv::Mat back = cv::imdecode(bytes, cv::IMREAD_COLOR);
    if (back.size() != color.size()) return 1;
  }
  std::printf("  opencv %s ok: resize, blur, colour, parallel_for_ (%d rows, %d threads), png, jpeg\n",
              CV_VERSION, rows.load(), cv::getNumThreads());
  return rows == color.rows ? 0 : 1;
}
CPP
bundle_path=$lib:$stubs
g++ -std=c++17 -O1 "$tmp/opencv_check.cpp" -I"$deps/include/opencv4" -o "$tmp/opencv_check" \
  "$lib"/libopencv_imgcodecs.so.* "$lib"/libopencv_imgproc.so.* "$lib"/libopencv_core.so.* \
  -Wl,-rpath-link,"$bundle_path"
LD_LIBRARY_PATH=$bundle_path "$tmp/opencv_check"
# Which files the loader took: only the bundle and the system libraries may appear.
LD_LIBRARY_PATH=$bundle_path ldd "$tmp/opencv_check" >"$tmp/ldd"
foreign=$(awk '/=>/ {print $1, $3}' "$tmp/ldd" | while read -r name path; do
  [[ "$path" == "$deps"/* || "$system_sonames" == *" $name "* ]] || echo "$name => $path"
done)
[[ -z "$foreign" ]] || { echo "bundle.sh: the self-test loaded libraries from outside the bundle:" >&2; echo "$foreign" >&2; exit 1; }
echo "  loader: $(grep -c "$deps" "$tmp/ldd") libraries from the bundle, the rest from the system list"

size=$(du -sb "$deps" | cut -f1)
echo "[bundle] done: $deps, $(du -sh "$deps" | cut -f1) ($size bytes; the device tool carries at most 64 MiB with the working tree)"
du -sh "$deps"/include "$deps"/lib/"$multiarch" "$deps"/lib/stubs "$deps"/zlib "$deps"/fashion-mnist | sed 's/^/  /'
echo "total $size bytes" >>"$manifest"
if (( size > 48 * 1024 * 1024 )); then
  echo "bundle.sh: warning: the bundle is over 48 MiB; with the working tree it may exceed the 64 MiB carry limit (lower --train)" >&2
fi
