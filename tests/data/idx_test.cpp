// IDX reading and writing, IdxDataset and open_dataset, on files each test writes itself.

#include "selfsup/data/idx.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;

// A fresh, empty directory per test, removed afterwards.
class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("selfsup_idx_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// [count, 3, 4] images whose pixel (n, y, x) = 10n + 4y + x (mod 256), so every image differs.
IdxArray make_images(int64_t count) {
  IdxArray array;
  array.shape = {count, 3, 4};
  for (int64_t n = 0; n < count; ++n) {
    for (int y = 0; y < 3; ++y) {
      for (int x = 0; x < 4; ++x) array.data.push_back(static_cast<uint8_t>((10 * n + 4 * y + x)));
    }
  }
  return array;
}

// [count] labels n % classes.
IdxArray make_labels(int64_t count, int classes) {
  IdxArray array;
  array.shape = {count};
  for (int64_t n = 0; n < count; ++n) array.data.push_back(static_cast<uint8_t>(n % classes));
  return array;
}

void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good());
}

void write_raw_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr);
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

std::vector<uint8_t> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Runs `body`, expecting an Error whose message contains every one of `parts`.
template <typename Body>
void expect_error(Body body, const std::vector<std::string>& parts) {
  try {
    body();
    FAIL() << "expected selfsup::Error";
  } catch (const Error& error) {
    const std::string message = error.what();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }
}

TEST_F(IdxTest, RoundTripPlain) {
  const IdxArray images = make_images(5);
  write_idx(path("images"), images);
  EXPECT_EQ(fs::file_size(path("images")), 4u + 3 * 4 + 5 * 3 * 4);
  const IdxArray back = read_idx(path("images"));
  EXPECT_EQ(back.shape, images.shape);
  EXPECT_EQ(back.data, images.data);
  // Big-endian header: magic 0x00000803, then 5, 3, 4.
  const std::vector<uint8_t> raw = read_raw(path("images"));
  const std::vector<uint8_t> header(raw.begin(), raw.begin() + 16);
  EXPECT_EQ(header, (std::vector<uint8_t>{0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 4}));
}

TEST_F(IdxTest, RoundTripGzip) {
  const IdxArray labels = make_labels(1000, 7);
  write_idx(path("labels.gz"), labels);
  // Really compressed: gzip magic bytes 1f 8b.
  const std::vector<uint8_t> raw = read_raw(path("labels.gz"));
  ASSERT_GE(raw.size(), 2u);
  EXPECT_EQ(raw[0], 0x1f);
  EXPECT_EQ(raw[1], 0x8b);
  const IdxArray back = read_idx(path("labels.gz"));
  EXPECT_EQ(back.shape, labels.shape);
  EXPECT_EQ(back.data, labels.data);
}

TEST_F(IdxTest, RoundTripFourDims) {
  IdxArray array;
  array.shape = {2, 3, 1, 2};
  for (int i = 0; i < 12; ++i) array.data.push_back(static_cast<uint8_t>(255 - i));
  write_idx(path("four.gz"), array);
  const IdxArray back = read_idx(path("four.gz"));
  EXPECT_EQ(back.shape, array.shape);
  EXPECT_EQ(back.data, array.data);
}

TEST_F(IdxTest, TruncatedPlain) {
  write_idx(path("images"), make_images(5));
  fs::resize_file(path("images"), fs::file_size(path("images")) - 7);
  expect_error([&] { read_idx(path("images")); },
               {path("images"), "truncated", "declares 60 bytes", "found 53"});
}

TEST_F(IdxTest, TruncatedGzip) {
  write_idx(path("images"), make_images(5));
  std::vector<uint8_t> raw = read_raw(path("images"));
  raw.resize(raw.size() - 1);
  write_raw_gz(path("images.gz"), raw);
  expect_error([&] { read_idx(path("images.gz")); }, {"truncated", "declares 60", "found 59"});
}

TEST_F(IdxTest, TruncatedHeader) {
  write_raw(path("short"), {0, 0, 8, 3, 0, 0, 0, 5});
  expect_error([&] { read_idx(path("short")); }, {"truncated"});
  write_raw(path("tiny"), {0, 0});
  expect_error([&] { read_idx(path("tiny")); }, {"truncated"});
}

TEST_F(IdxTest, TrailingBytes) {
  write_idx(path("labels"), make_labels(10, 3));
  std::vector<uint8_t> raw = read_raw(path("labels"));
  raw.push_back(42);
  write_raw(path("labels"), raw);
  expect_error([&] { read_idx(path("labels")); }, {path("labels"), "trailing"});
}

TEST_F(IdxTest, BadMagic) {
  write_idx(path("labels"), make_labels(10, 3));
  std::vector<uint8_t> raw = read_raw(path("labels"));
  raw[0] = 0x1f;
  write_raw(path("labels"), raw);
  expect_error([&] { read_idx(path("labels")); }, {path("labels"), "magic"});
}

TEST_F(IdxTest, WrongElementType) {
  // A float32 (0x0D) 1-D file of 2 elements.
  write_raw(path("floats"), {0, 0, 0x0D, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0});
  expect_error([&] { read_idx(path("floats")); }, {"0x0D", "float32", "uint8"});
}

TEST_F(IdxTest, BadDimensions) {
  write_raw(path("zero_dims"), {0, 0, 8, 0});
  expect_error([&] { read_idx(path("zero_dims")); }, {"0 dimensions"});
  write_raw(path("five_dims"), {0, 0, 8, 5});
  expect_error([&] { read_idx(path("five_dims")); }, {"5 dimensions"});
  write_raw(path("empty_dim"), {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 0});
  expect_error([&] { read_idx(path("empty_dim")); }, {"size 0"});
  // 8 x (2^32 - 1) bytes exceeds any sane dataset, and must fail before allocating.
  write_raw(path("huge"), {0, 0, 8, 2, 0, 0, 0, 8, 0xFF, 0xFF, 0xFF, 0xFF});
  expect_error([&] { read_idx(path("huge")); }, {"exceeds"});
}

TEST_F(IdxTest, MissingFile) {
  expect_error([&] { read_idx(path("absent")); },
               {"cannot open " + path("absent"), "No such file", "data.root"});
  expect_error([&] { read_idx(path("absent.gz")); }, {"cannot open " + path("absent.gz")});
}

TEST_F(IdxTest, WriteRejectsInconsistentArray) {
  IdxArray array = make_images(2);
  array.data.pop_back();
  EXPECT_THROW(write_idx(path("bad"), array), Error);
}

TEST_F(IdxTest, DatasetReadsImagesAndLabels) {
  write_idx(path("images.gz"), make_images(6));
  write_idx(path("labels"), make_labels(6, 4));
  const IdxDataset dataset(path("images.gz"), path("labels"), "toy train");
  EXPECT_EQ(dataset.size(), 6);
  EXPECT_EQ(dataset.num_classes(), 4);
  EXPECT_EQ(dataset.channels(), 1);
  EXPECT_EQ(dataset.height(), 3);
  EXPECT_EQ(dataset.width(), 4);
  EXPECT_EQ(dataset.describe(), "toy train (6 images, 3x4, 4 classes)");
  const Sample sample = dataset.get(5);
  EXPECT_EQ(sample.label, 1);
  ASSERT_EQ(sample.image.type(), CV_8UC1);
  ASSERT_EQ(sample.image.rows, 3);
  ASSERT_EQ(sample.image.cols, 4);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 4; ++x) EXPECT_EQ(sample.image.at<uint8_t>(y, x), 50 + 4 * y + x);
  }
  EXPECT_THROW(dataset.get(6), Error);
  EXPECT_THROW(dataset.get(-1), Error);
}

TEST_F(IdxTest, DatasetLimit) {
  write_idx(path("images"), make_images(10));
  write_idx(path("labels"), make_labels(10, 5));
  const IdxDataset limited(path("images"), path("labels"), "toy", /*limit=*/3);
  EXPECT_EQ(limited.size(), 3);
  // Classes are counted over the whole file.
  EXPECT_EQ(limited.num_classes(), 5);
  EXPECT_EQ(limited.get(2).image.at<uint8_t>(0, 0), 20);
  EXPECT_THROW(limited.get(3), Error);
  const IdxDataset over(path("images"), path("labels"), "toy", /*limit=*/100);
  EXPECT_EQ(over.size(), 10);
}

TEST_F(IdxTest, DatasetCountMismatch) {
  write_idx(path("images"), make_images(10));
  write_idx(path("labels"), make_labels(9, 5));
  expect_error([&] { IdxDataset(path("images"), path("labels"), "toy"); },
               {"10 images", "9 labels"});
}

TEST_F(IdxTest, DatasetShapeChecks) {
  write_idx(path("images"), make_images(4));
  write_idx(path("labels"), make_labels(4, 2));
  // Labels where images belong, and the other way round.
  expect_error([&] { IdxDataset(path("labels"), path("labels"), "toy"); }, {"3-D"});
  expect_error([&] { IdxDataset(path("images"), path("images"), "toy"); }, {"1-D"});
}

TEST_F(IdxTest, FindIdxFile) {
  expect_error([&] { find_idx_file(dir_.string(), "train-images-idx3-ubyte"); },
               {"train-images-idx3-ubyte.gz", "data.root"});
  write_idx(path("train-images-idx3-ubyte.gz"), make_images(2));
  EXPECT_EQ(find_idx_file(dir_.string(), "train-images-idx3-ubyte"),
            path("train-images-idx3-ubyte.gz"));
  // The uncompressed file wins when both exist.
  write_idx(path("train-images-idx3-ubyte"), make_images(2));
  EXPECT_EQ(find_idx_file(dir_.string(), "train-images-idx3-ubyte"),
            path("train-images-idx3-ubyte"));
}

TEST_F(IdxTest, OpenDatasetSplitsAndLimits) {
  write_idx(path("train-images-idx3-ubyte.gz"), make_images(8));
  write_idx(path("train-labels-idx1-ubyte.gz"), make_labels(8, 3));
  write_idx(path("t10k-images-idx3-ubyte"), make_images(5));
  write_idx(path("t10k-labels-idx1-ubyte"), make_labels(5, 3));
  DataConfig config;
  config.root = dir_.string();
  config.name = "toy";
  config.limit_train = 6;
  const auto train = open_dataset(config, Split::kTrain);
  EXPECT_EQ(train->describe(), "toy train (6 images, 3x4, 3 classes)");
  const auto test = open_dataset(config, Split::kTest);
  EXPECT_EQ(test->describe(), "toy test (5 images, 3x4, 3 classes)");

  config.dataset = "png";
  expect_error([&] { open_dataset(config, Split::kTrain); }, {"\"png\""});
  config.dataset = "idx";
  config.root = path("nowhere");
  expect_error([&] { open_dataset(config, Split::kTest); }, {"t10k-images-idx3-ubyte"});
}

}  // namespace
}  // namespace selfsup
