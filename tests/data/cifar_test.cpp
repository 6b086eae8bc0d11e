// CifarDataset and open_dataset("cifar10" / "cifar100") on small files written by each test.

#include "selfsup/data/cifar.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "temp_dir.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;

// The value of channel c at (y, x) of record n: distinct per record, channel and pixel.
uint8_t pixel_value(int64_t n, int c, int y, int x) {
  return static_cast<uint8_t>(n * 7 + c * 50 + y * 3 + x);
}

// `count` records with `label_bytes` label bytes each ((n + k) % 10 for byte k, fine label last
// = (n * 3 + 1) % classes for CIFAR-100); pixels planar R, G, B as in the real files.
std::vector<uint8_t> make_records(int64_t count, int label_bytes, int64_t first = 0) {
  std::vector<uint8_t> bytes;
  for (int64_t n = first; n < first + count; ++n) {
    if (label_bytes == 1) {
      bytes.push_back(static_cast<uint8_t>(n % 10));
    } else {
      bytes.push_back(static_cast<uint8_t>(n % 20));             // coarse
      bytes.push_back(static_cast<uint8_t>((n * 3 + 1) % 100));  // fine
    }
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) bytes.push_back(pixel_value(n, c, y, x));
      }
    }
  }
  return bytes;
}

// CIFAR-10's five training batches of 2 records each plus a test batch of 3, in `folder`.
void write_cifar10(const std::string& folder) {
  for (int b = 1; b <= 5; ++b) {
    write_bytes_file(folder + "/data_batch_" + std::to_string(b) + ".bin",
                     make_records(2, 1, 2 * (b - 1)));
  }
  write_bytes_file(folder + "/test_batch.bin", make_records(3, 1, 100));
}

template <typename Body>
void expect_error(Body&& body, const std::vector<std::string>& parts) {
  try {
    body();
    FAIL() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "'" << part << "' not in: " << e.what();
    }
  }
}

TEST(CifarTest, Cifar10DecodesPlanarRgbAndLabels) {
  TempDir dir;
  write_cifar10(dir.path().string());
  CifarDataset train(CifarOptions(dir.path().string(), CifarVariant::kCifar10, Split::kTrain));
  ASSERT_EQ(train.size(), 10);
  EXPECT_EQ(train.num_classes(), 10);
  EXPECT_EQ(train.channels(), 3);
  EXPECT_EQ(train.height(), 32);
  EXPECT_EQ(train.width(), 32);
  for (int64_t n : {0, 3, 9}) {  // records of batches 1, 2 and 5
    const Sample sample = train.get(n);
    EXPECT_EQ(sample.label, n % 10);
    ASSERT_EQ(sample.image.type(), CV_8UC3);
    ASSERT_EQ(sample.image.rows, 32);
    for (int y : {0, 5, 31}) {
      for (int x : {0, 17, 31}) {
        const auto rgb = sample.image.at<cv::Vec3b>(y, x);
        for (int c = 0; c < 3; ++c) EXPECT_EQ(rgb[c], pixel_value(n, c, y, x)) << n << y << x << c;
      }
    }
  }
  EXPECT_EQ(train.source(3), (dir.path() / "data_batch_2.bin").string() + "#1");

  CifarDataset test(CifarOptions(dir.path().string(), CifarVariant::kCifar10, Split::kTest));
  ASSERT_EQ(test.size(), 3);
  EXPECT_EQ(test.get(2).label, 102 % 10);
  EXPECT_EQ(test.get(2).image.at<cv::Vec3b>(1, 2)[1], pixel_value(102, 1, 1, 2));
}

TEST(CifarTest, Cifar100UsesTheFineLabelAndTheArchiveSubfolder) {
  TempDir dir;
  const auto folder = dir / "cifar-100-binary";
  write_bytes_file(folder + "/train.bin", make_records(4, 2));
  write_bytes_file(folder + "/test.bin", make_records(2, 2));
  DataConfig config;
  config.dataset = "cifar100";
  config.root = dir.path().string();  // the parent of the extracted archive
  config.name = "c100";
  const auto train = open_dataset(config, Split::kTrain);
  ASSERT_EQ(train->size(), 4);
  EXPECT_EQ(train->num_classes(), 100);
  for (int64_t n = 0; n < 4; ++n) EXPECT_EQ(train->get(n).label, (n * 3 + 1) % 100);
  EXPECT_EQ(train->get(3).image.at<cv::Vec3b>(31, 31)[2], pixel_value(3, 2, 31, 31));
  EXPECT_EQ(train->describe(), "c100 train (4 images, 32x32 RGB, 100 classes)");
  EXPECT_EQ(open_dataset(config, Split::kTest)->size(), 2);
}

TEST(CifarTest, LimitKeepsTheFirstSamplesAcrossFiles) {
  TempDir dir;
  write_cifar10((dir / "cifar-10-batches-bin"));
  DataConfig config;
  config.dataset = "cifar10";
  config.root = dir.path().string();
  config.limit_train = 3;
  const auto train = open_dataset(config, Split::kTrain);
  ASSERT_EQ(train->size(), 3);
  EXPECT_EQ(train->get(2).label, 2);
  EXPECT_THROW(train->get(3), Error);
}

TEST(CifarTest, ErrorsNameThePathAndWhatToDo) {
  TempDir dir;
  const std::string root = dir.path().string();
  expect_error([&] { CifarDataset(CifarOptions(root, CifarVariant::kCifar10, Split::kTrain)); },
               {"cannot find data_batch_1.bin", root, "cifar-10-batches-bin",
                "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"});
  write_cifar10(root);
  fs::remove(dir / "data_batch_4.bin");
  expect_error([&] { CifarDataset(CifarOptions(root, CifarVariant::kCifar10, Split::kTrain)); },
               {"data_batch_4.bin", "incomplete"});
  // One byte short of two records: not a multiple of the record size.
  auto bytes = make_records(2, 1);
  bytes.pop_back();
  write_bytes_file(dir / "test_batch.bin", bytes);
  expect_error([&] { CifarDataset(CifarOptions(root, CifarVariant::kCifar10, Split::kTest)); },
               {dir / "test_batch.bin", "6145 bytes", "multiple of 3073", "1 label byte"});
  // CIFAR-100 records read as CIFAR-10: the sizes do not fit.
  write_bytes_file(dir / "test_batch.bin", make_records(3, 2));
  expect_error([&] { CifarDataset(CifarOptions(root, CifarVariant::kCifar10, Split::kTest)); },
               {"9222 bytes", "multiple of 3073"});
  // A label out of range for CIFAR-10.
  bytes = make_records(1, 1);
  bytes[0] = 12;
  write_bytes_file(dir / "test_batch.bin", bytes);
  expect_error([&] { CifarDataset(CifarOptions(root, CifarVariant::kCifar10, Split::kTest)); },
               {"label 12", "cifar10 or cifar100"});
}

}  // namespace
}  // namespace selfsup
