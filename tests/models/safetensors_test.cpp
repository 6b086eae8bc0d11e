#include "selfsup/models/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "selfsup/models/safetensors_io.h"

namespace selfsup {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

// A file image: the 8-byte length of `header_text`, the text, then `data_bytes` zero bytes.
std::string file_of_text(const std::string& header_text, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t length = header_text.size();
  for (int i = 0; i < 8; ++i, length >>= 8) out[size_t(i)] = char(length & 0xff);
  return out + header_text + std::string(data_bytes, '\0');
}

std::string file_of(const json& header, size_t data_bytes) {
  return file_of_text(header.dump(), data_bytes);
}

SafetensorsHeader parse(const std::string& file) {
  return parse_safetensors_header(reinterpret_cast<const uint8_t*>(file.data()), file.size(),
                                  file.size(), "test.safetensors");
}

// Expects parsing to throw SafetensorsError whose message contains `fragment` (and the file name).
void expect_rejected(const std::string& file, const std::string& fragment) {
  try {
    parse(file);
    ADD_FAILURE() << "accepted; expected an error containing: " << fragment;
  } catch (const SafetensorsError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_NE(message.find("test.safetensors"), std::string::npos) << message;
  }
}

json tensor(const std::string& dtype, std::vector<int64_t> shape, uint64_t begin, uint64_t end) {
  return {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, end}}};
}

TEST(SafetensorsHeader, ParsesAValidHeader) {
  const json header = {{"__metadata__", {{"format", "pt"}}},
                       {"b", tensor("I64", {2}, 24, 40)},
                       {"a", tensor("F32", {2, 3}, 0, 24)},
                       {"empty", tensor("F16", {0, 5}, 24, 24)}};
  const auto parsed = parse(file_of(header, 40));
  ASSERT_EQ(parsed.tensors.size(), 3u);
  EXPECT_EQ(parsed.tensors[0].name, "a");  // ordered by offset
  EXPECT_EQ(parsed.tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(parsed.tensors[1].name, "empty");
  EXPECT_EQ(parsed.tensors[2].name, "b");
  EXPECT_EQ(parsed.tensors[2].begin, 24u);
  EXPECT_EQ(parsed.metadata.at("format"), "pt");
  EXPECT_EQ(parsed.data_start, 8 + header.dump().size());
}

TEST(SafetensorsHeader, RejectsBadLengths) {
  expect_rejected("", "fewer than the 8");
  expect_rejected(std::string(5, '\0'), "fewer than the 8");
  auto file = file_of(json::object(), 0);
  file[0] = char(0xff);  // length 255 + the rest: past the end
  expect_rejected(file, "runs past the end");
  std::string huge(8, '\0');
  huge[7] = char(0x80);  // 2^63
  expect_rejected(huge + "{}", "exceeds the limit");
  expect_rejected(file_of_text("{", 0), "too short");
  std::string unsigned_wrap(8, char(0xff));  // 2^64 - 1: no signed or unsigned wrap-around
  expect_rejected(unsigned_wrap + "{}", "exceeds the limit");
}

TEST(SafetensorsHeader, RejectsNonObjectAndBadJson) {
  expect_rejected(file_of(json::array({1, 2}), 0), "must be a JSON object");
  expect_rejected(file_of_text("\"x\"", 0), "must be a JSON object");
  expect_rejected(file_of_text("{\"a\": ", 0), "not valid JSON");
  expect_rejected(file_of_text("{} trailing", 0), "not valid JSON");
  expect_rejected(file_of_text("{\"a\":\"\xff\"}", 0), "not valid JSON");  // not UTF-8
  expect_rejected(
      file_of_text(R"({"a": {"dtype": "U8", "shape": [[[1]]], "data_offsets": [0, 1]}})", 1),
      "nested deeper");
  const std::string twice = R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                            R"( "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})";
  expect_rejected(file_of_text(twice, 2), "appears twice");
  expect_rejected(
      file_of_text(R"({"a": {"dtype": "U8", "dtype": "U8", "shape": [1], "data_offsets": [0, 1]}})",
                   1),
      "appears twice");
}

TEST(SafetensorsHeader, RejectsMalformedEntries) {
  expect_rejected(file_of({{"w", 3}}, 0), "tensor \"w\": expected an object");
  expect_rejected(file_of({{"w", {{"dtype", "F32"}, {"shape", {1}}}}}, 4),
                  "missing \"data_offsets\"");
  auto extra = tensor("F32", {1}, 0, 4);
  extra["offset"] = 0;
  expect_rejected(file_of({{"w", extra}}, 4), "unexpected key \"offset\"");
  expect_rejected(file_of({{"w", tensor("F8", {1}, 0, 1)}}, 1), "unknown dtype \"F8\"");
  expect_rejected(file_of({{"w", tensor("f32", {1}, 0, 4)}}, 4), "unknown dtype");
  auto numeric_dtype = tensor("F32", {1}, 0, 4);
  numeric_dtype["dtype"] = 4;
  expect_rejected(file_of({{"w", numeric_dtype}}, 4), "dtype must be a string");
}

TEST(SafetensorsHeader, RejectsBadShapes) {
  expect_rejected(file_of({{"w", tensor("F32", {-1}, 0, 4)}}, 4), "non-negative integers");
  auto float_shape = tensor("F32", {1}, 0, 4);
  float_shape["shape"] = {1.5};
  expect_rejected(file_of({{"w", float_shape}}, 4), "non-negative integers");
  auto not_array = tensor("F32", {1}, 0, 4);
  not_array["shape"] = 4;
  expect_rejected(file_of({{"w", not_array}}, 4), "shape must be an array");
  // 2^62 x 8 bytes wraps to 0 in 64 bits, which would match offsets [0, 0] without the check.
  auto overflow = tensor("F64", {}, 0, 0);
  overflow["shape"] = {uint64_t(1) << 62, 4};
  expect_rejected(file_of({{"w", overflow}}, 0), "more bytes than 2^64");
  auto too_large = tensor("U8", {}, 0, 0);
  too_large["shape"] = {uint64_t(1) << 63, 0};
  expect_rejected(file_of({{"w", too_large}}, 0), "too large");
}

TEST(SafetensorsHeader, RejectsBadOffsets) {
  expect_rejected(file_of({{"w", tensor("F32", {2}, 0, 8)}}, 4), "beyond the data section");
  expect_rejected(file_of({{"w", tensor("F32", {0}, 4, 0)}}, 4), "begin > end");
  auto three = tensor("F32", {1}, 0, 4);
  three["data_offsets"] = {0, 4, 8};
  expect_rejected(file_of({{"w", three}}, 4), "two non-negative integers");
  auto negative = tensor("F32", {1}, 0, 4);
  negative["data_offsets"] = {-4, 0};
  expect_rejected(file_of({{"w", negative}}, 4), "two non-negative integers");
  expect_rejected(file_of({{"w", tensor("F32", {2}, 0, 4)}}, 4), "needs 8");
  expect_rejected(file_of({{"w", tensor("BF16", {3}, 0, 4)}}, 4), "needs 6");
}

TEST(SafetensorsHeader, RejectsOverlapsAndGaps) {
  expect_rejected(file_of({{"a", tensor("F32", {2}, 0, 8)}, {"b", tensor("F32", {2}, 4, 12)}}, 12),
                  "overlap tensor \"a\"");
  expect_rejected(file_of({{"a", tensor("F32", {2}, 0, 8)}, {"b", tensor("F32", {0}, 4, 4)}}, 8),
                  "overlap");
  expect_rejected(file_of({{"a", tensor("F32", {1}, 0, 4)}, {"b", tensor("F32", {1}, 8, 12)}}, 12),
                  "a gap of 4 bytes");
  expect_rejected(file_of({{"a", tensor("F32", {1}, 4, 8)}}, 8), "a gap of 4 bytes");
  expect_rejected(file_of({{"a", tensor("F32", {1}, 0, 4)}}, 8), "4 bytes at the end");
  expect_rejected(file_of(json::object(), 1), "1 bytes at the end");
}

TEST(SafetensorsHeader, RejectsBadMetadata) {
  expect_rejected(file_of({{"__metadata__", {{"step", 3}}}}, 0), "\"step\" must be a string");
  expect_rejected(file_of({{"__metadata__", {"a", "b"}}}, 0), "__metadata__ must be an object");
  expect_rejected(file_of({{"__metadata__", {{"n", {{"x", "y"}}}}}}, 0), "must be a string");
}

TEST(SafetensorsHeader, WrittenHeaderParsesAndAlignsData) {
  std::vector<SafetensorsEntry> entries(2);
  entries[0] = {"x", "F32", {2, 2}, 0, 16};
  entries[1] = {"n", "BOOL", {3}, 16, 19};
  const auto head = make_safetensors_header(entries, {{"k", "v"}});
  EXPECT_EQ(head.size() % 8, 0u);
  const auto parsed = parse(head + std::string(19, '\0'));
  ASSERT_EQ(parsed.tensors.size(), 2u);
  EXPECT_EQ(parsed.tensors[1].name, "n");
  EXPECT_EQ(parsed.tensors[1].dtype, "BOOL");
  EXPECT_EQ(parsed.metadata.at("k"), "v");
}

TEST(SafetensorsIo, RoundTripIsBitExact) {
  const auto path =
      (fs::temp_directory_path() / "selfsup_safetensors_roundtrip.safetensors").string();
  torch::manual_seed(0);
  std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"f64", torch::randn({3, 2}, torch::kFloat64)},
      {"f32_nhwc", torch::randn({2, 3, 4, 5}).contiguous(torch::MemoryFormat::ChannelsLast)},
      {"f16", torch::randn({7}).to(torch::kFloat16)},
      {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"i64", torch::tensor({int64_t(1) << 40, int64_t(-3)})},
      {"i32", torch::tensor({1, -2, 3}, torch::kInt32)},
      {"i16", torch::tensor({-7}, torch::kInt16)},
      {"i8", torch::tensor({-1, 2}, torch::kInt8)},
      {"u8", torch::tensor({255, 0}, torch::kUInt8)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(5, torch::kLong)},
      {"empty", torch::zeros({0, 4})},
      {"transposed", torch::arange(6, torch::kFloat32).view({2, 3}).t()}};
  write_safetensors(path, tensors, {{"note", "hello"}});
  const auto file = read_safetensors(path);
  EXPECT_EQ(file.metadata.at("note"), "hello");
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, original] : tensors) {
    const auto& loaded = file.at(name, path);
    EXPECT_EQ(loaded.scalar_type(), original.scalar_type()) << name;
    EXPECT_EQ(loaded.sizes(), original.sizes()) << name;
    EXPECT_TRUE(torch::equal(loaded, original)) << name;  // bitwise for these (no NaN)
  }
  // NaN and negative zero survive bit for bit.
  const auto special = torch::tensor({std::nanf(""), -0.0f, INFINITY});
  write_safetensors(path, {{"s", special}});
  const auto back = read_safetensors(path).at("s", path);
  EXPECT_EQ(std::memcmp(back.data_ptr(), special.data_ptr(), 12), 0);
  fs::remove(path);
}

TEST(SafetensorsIo, ErrorsNameTheFile) {
  const auto path = (fs::temp_directory_path() / "selfsup_safetensors_bad.safetensors").string();
  EXPECT_THROW(write_safetensors(path, {{"a", torch::zeros({1})}, {"a", torch::zeros({1})}}),
               Error);
  EXPECT_THROW(write_safetensors(path, {{"c", torch::zeros({1}, torch::kComplexFloat)}}), Error);
  {
    std::ofstream out(path, std::ios::binary);
    out << file_of({{"b", tensor("BOOL", {1}, 0, 1)}}, 0) << '\x02';
  }
  try {
    read_safetensors(path);
    ADD_FAILURE() << "BOOL byte 2 accepted";
  } catch (const SafetensorsError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  fs::remove(path);
  EXPECT_THROW(read_safetensors(path), SafetensorsError);  // missing
}

}  // namespace
}  // namespace selfsup
