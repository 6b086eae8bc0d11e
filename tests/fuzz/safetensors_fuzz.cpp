// libFuzzer harness over the safetensors header parser (src/models/safetensors.cpp), which builds
// alone with the standard library and nlohmann-json:
//
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       src/models/safetensors.cpp tests/fuzz/safetensors_fuzz.cpp -o safetensors_fuzz
//   ./safetensors_fuzz -max_total_time=60 CORPUS_DIR
//
// tests/cli/fuzz_safetensors_test.sh does this briefly in CI, with a seed corpus it writes.
//
// The input is a whole file. Properties checked beyond "no crash, no sanitizer report":
//   - the parser throws nothing but SafetensorsError;
//   - an accepted header describes tensors inside the file that cover its data section exactly;
//   - writing the parsed header again (make_safetensors_header) gives a file that parses to the
//     same tensors and metadata.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "selfsup/models/safetensors.h"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
  }
}

bool same(const selfsup::SafetensorsHeader& a, const selfsup::SafetensorsHeader& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto &x = a.tensors[i], &y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.begin != y.begin ||
        x.end != y.end) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  selfsup::SafetensorsHeader header;
  try {
    header = selfsup::parse_safetensors_header(data, size, size, "fuzz input");
  } catch (const selfsup::SafetensorsError&) {
    return 0;  // rejected with a message: fine
  }
  check(header.data_start >= 8 && header.data_start <= size, "data section inside the file");
  uint64_t covered = 0;
  for (const auto& t : header.tensors) {
    check(t.begin == covered && t.begin <= t.end, "tensors in order, without gaps");
    covered = t.end;
  }
  check(covered == size - header.data_start, "tensors cover the data section");

  const std::string rewritten = selfsup::make_safetensors_header(header.tensors, header.metadata) +
                                std::string(reinterpret_cast<const char*>(data) + header.data_start,
                                            size - header.data_start);
  try {
    const auto again =
        selfsup::parse_safetensors_header(reinterpret_cast<const uint8_t*>(rewritten.data()),
                                          rewritten.size(), rewritten.size(), "rewritten");
    check(same(header, again), "a rewritten header parses to the same tensors");
  } catch (const selfsup::SafetensorsError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    check(false, "a rewritten header parses");
  }
  return 0;
}
