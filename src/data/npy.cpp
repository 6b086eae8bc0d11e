#include "selfsup/data/npy.h"

#include <cstring>
#include <fstream>
#include <regex>

#include "selfsup/core/error.h"
#include "selfsup/core/files.h"

namespace selfsup {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy I/O copies little-endian bytes");

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes, then major and minor version

struct NpyType {
  const char* descr;
  torch::ScalarType type;
};
constexpr NpyType kTypes[] = {{"<f4", torch::kFloat32},
                              {"<f8", torch::kFloat64},
                              {"|u1", torch::kUInt8},
                              {"<i8", torch::kInt64},
                              {"<i4", torch::kInt32}};

}  // namespace

torch::Tensor read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SELFSUP_CHECK(in, "cannot read ", path, ": no such file or not readable");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto fail = [&](const std::string& what) -> Error {
    return Error(path + ": not a .npy array selfsup reads: " + what);
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0) throw fail("no NumPy magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_length = 0, header_start = 0;
  if (major == 1) {
    header_length = size_t(uint8_t(bytes[8])) | size_t(uint8_t(bytes[9])) << 8;
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw fail("truncated header");
    for (int i = 3; i >= 0; --i) header_length = header_length << 8 | uint8_t(bytes[size_t(8 + i)]);
    header_start = 12;
  } else {
    throw fail("format version " + std::to_string(major) + " is unknown");
  }
  if (header_length > bytes.size() - header_start) throw fail("truncated header");
  const std::string header = bytes.substr(header_start, header_length);
  // The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3),
  // }
  std::smatch match;
  if (!std::regex_search(header, match, std::regex("'descr':\\s*'([^']*)'"))) {
    throw fail("no descr in the header");
  }
  const std::string descr = match[1];
  const NpyType* type = nullptr;
  for (const auto& t : kTypes) {
    if (descr == t.descr) type = &t;
  }
  if (!type) throw fail("dtype " + descr + " (use float32, float64, uint8, int64 or int32)");
  if (!std::regex_search(header, match, std::regex("'fortran_order':\\s*False"))) {
    throw fail("Fortran order (save a C-ordered array: numpy.ascontiguousarray)");
  }
  if (!std::regex_search(header, match, std::regex("'shape':\\s*\\(([0-9,\\s]*)\\)"))) {
    throw fail("no shape in the header");
  }
  std::vector<int64_t> shape;
  const std::string dims = match[1];
  const std::regex number("[0-9]+");
  int64_t count = 1;
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), number);
       it != std::sregex_iterator(); ++it) {
    const std::string digits = it->str();
    if (digits.size() > 12) throw fail("dimension " + digits + " is too large");
    shape.push_back(std::stoll(digits));
    if (shape.back() > 0 && count > (int64_t(1) << 40) / shape.back()) throw fail("too large");
    count *= shape.back();
  }
  auto tensor = torch::empty(shape, torch::TensorOptions().dtype(type->type));
  const size_t data_bytes = size_t(tensor.nbytes());
  const size_t data_start = header_start + header_length;
  if (bytes.size() - data_start != data_bytes) {
    throw fail("holds " + std::to_string(bytes.size() - data_start) + " data bytes, shape " + dims +
               " of " + descr + " needs " + std::to_string(data_bytes));
  }
  if (data_bytes) std::memcpy(tensor.data_ptr(), bytes.data() + data_start, data_bytes);
  return tensor;
}

void write_npy(const std::string& path, const torch::Tensor& tensor) {
  const auto cpu = tensor.detach().to(torch::kCPU).contiguous();
  const NpyType* type = nullptr;
  for (const auto& t : kTypes) {
    if (cpu.scalar_type() == t.type) type = &t;
  }
  SELFSUP_CHECK(type, "cannot write ", path, ": dtype ", cpu.scalar_type(),
                " (use float32, float64, uint8, int64 or int32)");
  std::string shape;
  for (const auto d : cpu.sizes()) shape += std::to_string(d) + ", ";
  if (cpu.dim() > 1) shape.erase(shape.size() - 2);  // (n,) keeps its comma
  std::string header = std::string("{'descr': '") + type->descr +
                       "', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Pad with spaces and a newline so that the data starts at a multiple of 64 bytes.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string bytes(kMagic, 6);
  bytes += '\x01';
  bytes += '\x00';
  bytes += char(header.size() & 0xff);
  bytes += char(header.size() >> 8);
  bytes += header;
  bytes.append(static_cast<const char*>(cpu.data_ptr()), size_t(cpu.nbytes()));
  write_file_atomic(path, bytes);
}

}  // namespace selfsup
