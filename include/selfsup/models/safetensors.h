#pragma once
// The safetensors file format, read and written by hand: Debian packages no C++ implementation
// (only the Rust crate and the Python package exist), and the format is small. A file is
//
//   [8 bytes: N, little-endian uint64] [N bytes: JSON header] [data section]
//
// where the header is a JSON object mapping each tensor name to {"dtype", "shape", "data_offsets":
// [begin, end]} (offsets relative to the data section, row-major little-endian bytes), plus an
// optional "__metadata__" object of string -> string. The tensors cover the data section exactly,
// without gaps or overlaps.
//
// This header and src/models/safetensors.cpp use only the standard library and nlohmann-json (no
// LibTorch), so that the parser compiles alone for fuzzing (tests/fuzz/safetensors_fuzz.cpp). The
// LibTorch side (files <-> tensors) is selfsup/models/safetensors_io.h.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "selfsup/core/error.h"

namespace selfsup {

/// A malformed or unreadable safetensors file; the message names the file, the tensor and what is
/// wrong.
class SafetensorsError : public Error {
 public:
  explicit SafetensorsError(const std::string& message) : Error(message) {}
};

/// The largest header accepted (the reference implementation's limit): a hostile length field
/// must not make a reader allocate gigabytes.
constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t(100) << 20;

/// One tensor of the header.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"
  std::vector<int64_t> shape;  // row-major; [] is a scalar
  uint64_t begin = 0;          // byte offsets into the data section: [begin, end)
  uint64_t end = 0;
};

/// A parsed header.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;        // ordered by data offset
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent
  uint64_t data_start = 0;                      // file offset of the data section: 8 + N
};

/// Bytes per element of a safetensors dtype name; 0 for names this reader does not know.
size_t safetensors_dtype_size(const std::string& dtype);

/// Parses and fully validates the header of a safetensors file of `file_size` bytes whose first
/// `size` bytes are `bytes` (at least 8 + N of them; the whole file is fine). Checks: the length
/// field (at most kMaxSafetensorsHeaderBytes, within the file and within `bytes`), a JSON object
/// (nesting at most 3 deep, no duplicate keys), "__metadata__" string -> string only, every
/// tensor with exactly dtype / shape / data_offsets, a known dtype, non-negative dimensions whose
/// product times the dtype size equals end - begin (overflow checked), begin <= end inside the
/// data section, and the tensors covering the data section without overlap or gap. Throws
/// SafetensorsError naming `source`, the tensor and the problem.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, uint64_t file_size,
                                           const std::string& source = "safetensors data");

/// The first bytes of a file holding `tensors` (whose offsets the caller chose) and `metadata`:
/// the 8-byte length and the JSON header, padded with spaces so that the data section starts at a
/// multiple of 8 bytes.
std::string make_safetensors_header(const std::vector<SafetensorsEntry>& tensors,
                                    const std::map<std::string, std::string>& metadata);

}  // namespace selfsup
