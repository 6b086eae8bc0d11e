// The safetensors header: parsing with full validation, and writing. Standard library and
// nlohmann-json only (compiled alone by the fuzz test; see the header).

#include "selfsup/models/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

namespace selfsup {
namespace {

using nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";
// Nesting of a valid header: the object (0), a tensor entry (1), its shape / offsets arrays (2),
// their numbers (3). Anything deeper is rejected while parsing, before it is built.
constexpr int kMaxDepth = 3;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw SafetensorsError(source + ": not a valid safetensors file: " + what);
}

[[noreturn]] void fail_tensor(const std::string& source, const std::string& name,
                              const std::string& what) {
  fail(source, "tensor \"" + name + "\": " + what);
}

// A JSON value printed short for an error message.
std::string shown(const json& value) {
  auto text = value.dump();
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

// Parses the JSON text, rejecting duplicate keys and deep nesting while parsing (nlohmann keeps
// the last duplicate silently, and a deep document would cost memory for nothing).
json parse_json(const char* begin, const char* end, const std::string& source) {
  // Keys seen per object currently open at depth 0 and 1 (the only objects a header may have).
  std::vector<std::set<std::string>> keys(kMaxDepth + 1);
  const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxDepth) fail(source, "the JSON header is nested deeper than a header can be");
    if (event == json::parse_event_t::object_start) keys[size_t(depth)].clear();
    if (event == json::parse_event_t::key) {
      // A key event comes at the depth of the object's members; the object is one above.
      const auto& key = parsed.get_ref<const std::string&>();
      auto& seen = keys[size_t(depth - 1)];
      if (!seen.insert(key).second) fail(source, "the key \"" + key + "\" appears twice");
    }
    return true;
  };
  try {
    return json::parse(begin, end, check, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    fail(source, std::string("the header is not valid JSON (") + e.what() + ")");
  }
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

SafetensorsEntry parse_entry(const std::string& name, const json& value, uint64_t data_size,
                             const std::string& source) {
  if (!value.is_object()) {
    fail_tensor(source, name,
                "expected an object {dtype, shape, data_offsets}, got " + shown(value));
  }
  for (const auto& item : value.items()) {
    const auto& key = item.key();
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail_tensor(source, name,
                  "unexpected key \"" + key + "\" (allowed: dtype, shape, data_offsets)");
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) fail_tensor(source, name, std::string("missing \"") + key + "\"");
  }
  SafetensorsEntry entry;
  entry.name = name;

  const auto& dtype = value.at("dtype");
  if (!dtype.is_string()) fail_tensor(source, name, "dtype must be a string, got " + shown(dtype));
  entry.dtype = dtype.get<std::string>();
  const size_t element_size = safetensors_dtype_size(entry.dtype);
  if (element_size == 0) {
    fail_tensor(
        source, name,
        "unknown dtype \"" + entry.dtype + "\" (known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
  }

  const auto& shape = value.at("shape");
  if (!shape.is_array()) fail_tensor(source, name, "shape must be an array, got " + shown(shape));
  // The byte size, element size x product of the dimensions, with every product checked for
  // overflow (a dimension of 2^62 times another of 4 must not wrap around to a small number).
  uint64_t bytes = element_size;
  for (const auto& dim : shape) {
    if (!dim.is_number_unsigned()) {
      fail_tensor(source, name, "shape entries must be non-negative integers, got " + shown(dim));
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d > uint64_t(INT64_MAX))
      fail_tensor(source, name, "dimension " + shown(dim) + " is too large");
    if (__builtin_mul_overflow(bytes, d, &bytes)) {
      fail_tensor(source, name, "shape " + shown(shape) + " has more bytes than 2^64");
    }
    entry.shape.push_back(int64_t(d));
  }

  const auto& offsets = value.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail_tensor(
        source, name,
        "data_offsets must be two non-negative integers [begin, end], got " + shown(offsets));
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.begin > entry.end) {
    fail_tensor(source, name, "data_offsets " + shown(offsets) + " has begin > end");
  }
  if (entry.end > data_size) {
    fail_tensor(source, name,
                "data_offsets " + shown(offsets) + " end beyond the data section (" +
                    std::to_string(data_size) + " bytes)");
  }
  if (entry.end - entry.begin != bytes) {
    fail_tensor(source, name,
                "data_offsets " + shown(offsets) + " span " +
                    std::to_string(entry.end - entry.begin) + " bytes, but " + entry.dtype + " " +
                    shown(shape) + " needs " + std::to_string(bytes));
  }
  return entry;
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, uint64_t file_size,
                                           const std::string& source) {
  if (size > file_size) fail(source, "more bytes given than the file size (a caller bug)");
  if (file_size < 8) {
    fail(source, "the file has " + std::to_string(file_size) +
                     " bytes, fewer than the 8 of the header length");
  }
  if (size < 8) fail(source, "fewer than 8 bytes given for the header length");
  const uint64_t header_size = read_le64(bytes);
  if (header_size < 2) {
    fail(source,
         "header length " + std::to_string(header_size) + " is too short for a JSON object");
  }
  if (header_size > kMaxSafetensorsHeaderBytes) {
    fail(source, "header length " + std::to_string(header_size) + " exceeds the limit of " +
                     std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  }
  if (header_size > file_size - 8) {
    fail(source, "header length " + std::to_string(header_size) + " runs past the end of the " +
                     std::to_string(file_size) + "-byte file (truncated?)");
  }
  if (header_size > size - 8) fail(source, "the header bytes were not all given (a caller bug)");

  SafetensorsHeader header;
  header.data_start = 8 + header_size;
  const uint64_t data_size = file_size - header.data_start;
  const auto* text = reinterpret_cast<const char*>(bytes + 8);
  const json root = parse_json(text, text + header_size, source);
  if (!root.is_object()) fail(source, "the header must be a JSON object, got " + shown(root));

  for (const auto& item : root.items()) {
    if (item.key() == kMetadataKey) {
      if (!item.value().is_object()) {
        fail(source, "__metadata__ must be an object of strings, got " + shown(item.value()));
      }
      for (const auto& meta : item.value().items()) {
        if (!meta.value().is_string()) {
          fail(source,
               "__metadata__ \"" + meta.key() + "\" must be a string, got " + shown(meta.value()));
        }
        header.metadata[meta.key()] = meta.value().get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_entry(item.key(), item.value(), data_size, source));
  }

  // Coverage: ordered by offset, each tensor starts where the previous one ended, the first at 0
  // and the last ends at the end of the file. Zero-size tensors sort before others at their offset.
  auto& tensors = header.tensors;
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& t : tensors) {
    if (t.begin < covered) {
      fail_tensor(source, t.name,
                  "bytes [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                      ") overlap tensor \"" + previous->name + "\"");
    }
    if (t.begin > covered) {
      fail_tensor(source, t.name,
                  "a gap of " + std::to_string(t.begin - covered) +
                      " bytes before it (from offset " + std::to_string(covered) +
                      "); the tensors must cover the data section");
    }
    covered = t.end;
    previous = &t;
  }
  if (covered != data_size) {
    fail(source, std::to_string(data_size - covered) +
                     " bytes at the end of the data section belong to no tensor");
  }
  return header;
}

std::string make_safetensors_header(const std::vector<SafetensorsEntry>& tensors,
                                    const std::map<std::string, std::string>& metadata) {
  json root = json::object();
  if (!metadata.empty()) root[kMetadataKey] = metadata;
  for (const auto& t : tensors) {
    root[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  }
  std::string text = root.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data section 8-byte aligned
  std::string out(8, '\0');
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i, length >>= 8) out[size_t(i)] = char(length & 0xff);
  return out + text;
}

}  // namespace selfsup
