#include "selfsup/models/safetensors_io.h"

#include <cstring>
#include <fstream>
#include <set>

#include "selfsup/core/files.h"
#include "selfsup/models/safetensors.h"

namespace selfsup {
namespace {

// The format stores little-endian bytes; tensors are copied as they lie in memory.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O copies raw bytes and needs a little-endian host");

const std::map<torch::ScalarType, std::string>& dtype_names() {
  static const std::map<torch::ScalarType, std::string> names = {
      {torch::kFloat64, "F64"},   {torch::kFloat32, "F32"}, {torch::kFloat16, "F16"},
      {torch::kBFloat16, "BF16"}, {torch::kInt64, "I64"},   {torch::kInt32, "I32"},
      {torch::kInt16, "I16"},     {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
      {torch::kBool, "BOOL"}};
  return names;
}

torch::ScalarType scalar_type_of(const std::string& dtype) {
  for (const auto& [type, name] : dtype_names()) {
    if (name == dtype) return type;
  }
  throw SafetensorsError("unknown safetensors dtype " + dtype);  // the parser rejects it first
}

}  // namespace

const torch::Tensor& TensorFile::at(const std::string& name, const std::string& source) const {
  for (const auto& [key, tensor] : tensors) {
    if (key == name) return tensor;
  }
  throw Error(source + " has no tensor \"" + name + "\"");
}

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsEntry> entries;
  std::vector<torch::Tensor> contiguous;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    SELFSUP_CHECK(!name.empty() && name != "__metadata__", "cannot write ", path,
                  ": tensor name \"", name, "\" is not allowed");
    SELFSUP_CHECK(names.insert(name).second, "cannot write ", path, ": tensor \"", name,
                  "\" given twice");
    const auto type = dtype_names().find(tensor.scalar_type());
    SELFSUP_CHECK(type != dtype_names().end(), "cannot write ", path, ": tensor \"", name,
                  "\" has dtype ", tensor.scalar_type(), ", which safetensors cannot store");
    auto cpu = tensor.detach().to(torch::kCPU).contiguous();  // row-major bytes
    SafetensorsEntry entry;
    entry.name = name;
    entry.dtype = type->second;
    entry.shape = cpu.sizes().vec();
    entry.begin = offset;
    offset += uint64_t(cpu.nbytes());
    entry.end = offset;
    entries.push_back(entry);
    contiguous.push_back(cpu);
  }
  std::string bytes = make_safetensors_header(entries, metadata);
  const size_t data_start = bytes.size();
  bytes.resize(data_start + offset);
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].end > entries[i].begin) {
      std::memcpy(&bytes[data_start + entries[i].begin], contiguous[i].data_ptr(),
                  entries[i].end - entries[i].begin);
    }
  }
  // What we write must be what we accept.
  (void)parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                 bytes.size(), path);
  write_file_atomic(path, bytes);
}

TensorFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw SafetensorsError("cannot read " + path + ": no such file or not readable");
  const auto end = in.tellg();
  if (end < 0) throw SafetensorsError("cannot read " + path + ": cannot tell its size");
  std::string bytes(size_t(end), '\0');
  in.seekg(0);
  in.read(bytes.data(), std::streamsize(bytes.size()));
  if (!in) throw SafetensorsError("error while reading " + path);

  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const auto header = parse_safetensors_header(data, bytes.size(), bytes.size(), path);
  TensorFile file;
  file.metadata = header.metadata;
  for (const auto& entry : header.tensors) {
    auto tensor =
        torch::empty(entry.shape, torch::TensorOptions().dtype(scalar_type_of(entry.dtype)));
    if (entry.end > entry.begin) {
      const uint8_t* source = data + header.data_start + entry.begin;
      if (entry.dtype == "BOOL") {  // any byte but 0 and 1 would be an invalid C++ bool
        for (uint64_t i = 0; i < entry.end - entry.begin; ++i) {
          if (source[i] > 1) {
            throw SafetensorsError(path + ": tensor \"" + entry.name + "\": BOOL byte " +
                                   std::to_string(i) + " is " + std::to_string(source[i]) +
                                   ", not 0 or 1");
          }
        }
      }
      std::memcpy(tensor.data_ptr(), source, entry.end - entry.begin);
    }
    file.tensors.emplace_back(entry.name, tensor);
  }
  return file;
}

}  // namespace selfsup
