// TarDataset: shards written with libarchive by each test; random access by offset, bad members,
// compressed shards, the cached index, and concurrent reads.

#include "selfsup/data/tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "temp_dir.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;

using Member = std::pair<std::string, std::vector<uint8_t>>;  // name, bytes

std::vector<uint8_t> text_bytes(const std::string& text) { return {text.begin(), text.end()}; }

// A BGR image whose pixels encode `seed`, so that each sample is recognisable after decoding.
cv::Mat pattern_bgr(int seed, int rows = 9, int cols = 8) {
  cv::Mat image(rows, cols, CV_8UC3);
  for (int y = 0; y < rows; ++y) {
    for (int x = 0; x < cols; ++x) {
      image.at<cv::Vec3b>(y, x) = cv::Vec3b(
          static_cast<uint8_t>(seed), static_cast<uint8_t>(10 * y), static_cast<uint8_t>(20 * x));
    }
  }
  return image;
}

std::vector<uint8_t> png_of(int seed) {
  std::vector<uint8_t> bytes;
  EXPECT_TRUE(cv::imencode(".png", pattern_bgr(seed), bytes));
  return bytes;
}

// Writes a pax tar (optionally gzip-compressed) with libarchive's writer.
void write_tar(const std::string& path, const std::vector<Member>& members, bool gzip = false) {
  fs::create_directories(fs::path(path).parent_path());
  archive* writer = archive_write_new();
  ASSERT_EQ(archive_write_set_format_pax_restricted(writer), ARCHIVE_OK);
  if (gzip) {
    ASSERT_EQ(archive_write_add_filter_gzip(writer), ARCHIVE_OK);
  }
  ASSERT_EQ(archive_write_open_filename(writer, path.c_str()), ARCHIVE_OK);
  for (const auto& [name, bytes] : members) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, name.c_str());
    archive_entry_set_size(entry, static_cast<la_int64_t>(bytes.size()));
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    ASSERT_EQ(archive_write_header(writer, entry), ARCHIVE_OK);
    ASSERT_EQ(archive_write_data(writer, bytes.data(), bytes.size()),
              static_cast<la_ssize_t>(bytes.size()));
    archive_entry_free(entry);
  }
  ASSERT_EQ(archive_write_close(writer), ARCHIVE_OK);
  archive_write_free(writer);
}

// A shard of `count` good samples k..k+count-1: KEY.png (pattern_bgr(k)) + KEY.cls (k % 7).
std::vector<Member> good_members(int first, int count) {
  std::vector<Member> members;
  for (int k = first; k < first + count; ++k) {
    const std::string key = "sample" + std::to_string(k);
    members.push_back({key + ".png", png_of(k)});
    members.push_back({key + ".cls", text_bytes(std::to_string(k % 7) + "\n")});
  }
  return members;
}

bool same_image(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

cv::Mat rgb_of(int seed) {
  cv::Mat rgb;
  cv::cvtColor(pattern_bgr(seed), rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

TarOptions options_for(const TempDir& dir) {
  return TarOptions(dir / "data", "train").set_cache_dir(dir / "cache");
}

TEST(TarTest, RandomAccessAcrossShardsAndLayouts) {
  TempDir dir;
  const fs::path root = dir.path() / "data";
  write_tar((root / "train-000001.tar").string(), good_members(3, 2));
  write_tar((root / "train-000000.tar").string(), good_members(0, 3));
  write_tar((root / "val-000000.tar").string(), good_members(50, 1));  // another split
  // A shard in the split's sub-folder, with a member name long enough for a pax extended header
  // (so the data offset is not header + 512), an upper-case extension and an ignored member.
  const std::string long_key = "deep/" + std::string(120, 'k');
  write_tar((root / "train" / "extra.tar").string(), {{long_key + ".json", text_bytes("{}")},
                                                      {long_key + ".PNG", png_of(9)},
                                                      {long_key + ".cls", text_bytes(" 12 ")}});

  const TarDataset dataset(options_for(dir));
  ASSERT_EQ(dataset.size(), 6);
  EXPECT_EQ(dataset.num_classes(), 13);
  EXPECT_EQ(dataset.channels(), 3);
  EXPECT_EQ(dataset.height(), 0);
  ASSERT_EQ(dataset.shard_ranges().size(), 3u);
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 3}, {3, 5}, {5, 6}};
  for (size_t s = 0; s < 3; ++s) {
    EXPECT_EQ(dataset.shard_ranges()[s].begin, ranges[s].first);
    EXPECT_EQ(dataset.shard_ranges()[s].end, ranges[s].second);
  }
  EXPECT_EQ(fs::path(dataset.shard_ranges()[1].path).filename(), "train-000001.tar");
  EXPECT_EQ(fs::path(dataset.shard_ranges()[2].path).filename(), "extra.tar");
  // Out of order on purpose: every read is independent of the previous one.
  for (int64_t i : {4, 0, 5, 2, 1, 3}) {
    const int seed = i == 5 ? 9 : static_cast<int>(i);
    const Sample sample = dataset.get(i);
    EXPECT_TRUE(same_image(sample.image, rgb_of(seed))) << "sample " << i;
    EXPECT_EQ(sample.label, i == 5 ? 12 : seed % 7);
  }
  EXPECT_EQ(dataset.source(1), dataset.shard_ranges()[0].path + ":sample1.png");
  EXPECT_EQ(dataset.source(5), dataset.shard_ranges()[2].path + ":" + long_key + ".PNG");
}

TEST(TarTest, MembersWithoutLabelOrImageAreBadSamples) {
  TempDir dir;
  auto jpeg = std::vector<uint8_t>();
  ASSERT_TRUE(cv::imencode(".jpg", pattern_bgr(1, 16, 16), jpeg));
  write_tar((dir.path() / "data" / "train-0.tar").string(),
            {{"a.png", png_of(1)},
             {"a.cls", text_bytes("1")},
             {"b.png", png_of(2)},        // no b.cls
             {"c.cls", text_bytes("3")},  // no image
             {"d.jpg", jpeg},
             {"d.cls", text_bytes("cat")},  // not an integer
             {"e.jpg", std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2)},
             {"e.cls", text_bytes("2")}});
  const TarDataset dataset(options_for(dir));
  ASSERT_EQ(dataset.size(), 5);
  EXPECT_EQ(dataset.num_classes(), 3);  // labels of usable samples: 1 and 2
  EXPECT_EQ(dataset.get(0).label, 1);
  const std::vector<std::pair<int64_t, std::string>> expected = {
      {1, "no b.cls member (the label) beside b.png"},
      {2, "the key has a .cls member but no image"},
      {3, "d.cls holds \"cat\", not a non-negative integer label"},
      {4, "truncated JPEG"}};
  for (const auto& [index, reason] : expected) {
    try {
      dataset.get(index);
      ADD_FAILURE() << "no error for " << dataset.source(index);
    } catch (const BadSampleError& e) {
      EXPECT_EQ(e.source(), dataset.source(index));
      EXPECT_NE(e.reason().find(reason), std::string::npos) << e.reason();
    }
  }
  EXPECT_NE(dataset.describe().find("3 unusable"), std::string::npos) << dataset.describe();
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

TEST(TarTest, CompressedShardsAndSetupErrorsAreClear) {
  TempDir dir;
  const fs::path root = dir.path() / "data";
  expect_error([&] { TarDataset(options_for(dir)); }, {"data.root", "-*.tar"});
  fs::create_directories(root);
  expect_error([&] { TarDataset(options_for(dir)); },
               {"no tar shards for split \"train\"", "train-*.tar", "train/*.tar"});
  // gzip content named .tar: recognised by its content.
  write_tar((root / "train-0.tar").string(), good_members(0, 2), /*gzip=*/true);
  expect_error([&] { TarDataset(options_for(dir)); },
               {"train-0.tar is a gzip-compressed tar shard", "uncompressed"});
  // A .tar.gz beside good shards: by its name.
  write_tar((root / "train-0.tar").string(), good_members(0, 2));
  write_tar((root / "train-1.tar.gz").string(), good_members(2, 2), /*gzip=*/true);
  expect_error([&] { TarDataset(options_for(dir)); }, {"train-1.tar.gz", "uncompressed"});
  fs::remove(root / "train-1.tar.gz");
  // Not a tar file at all.
  write_bytes_file((root / "train-2.tar").string(), text_bytes("definitely not a tar archive"));
  expect_error([&] { TarDataset(options_for(dir)); }, {"train-2.tar"});
  // Images without any label.
  write_tar((root / "train-2.tar").string(), {{"x.png", png_of(0)}});
  write_tar((root / "train-0.tar").string(), {{"y.png", png_of(0)}});
  expect_error([&] { TarDataset(options_for(dir)); }, {"KEY.cls"});
}

TEST(TarTest, IndexIsCachedUntilAShardChanges) {
  TempDir dir;
  const fs::path root = dir.path() / "data";
  const std::vector<fs::path> shards = {root / "train-0.tar", root / "train-1.tar"};
  write_tar(shards[0].string(), good_members(0, 2));
  write_tar(shards[1].string(), good_members(2, 2));
  const auto past = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (const auto& shard : shards) fs::last_write_time(shard, past);

  const TarDataset first(options_for(dir));
  EXPECT_FALSE(first.index_from_cache());
  EXPECT_EQ(fs::path(first.index_path()), fs::absolute(root / ".selfsup-train-tar-index.json"));
  const TarDataset second(options_for(dir));
  EXPECT_TRUE(second.index_from_cache());
  ASSERT_EQ(second.size(), 4);
  EXPECT_TRUE(same_image(second.get(3).image, rgb_of(3)));

  // A shard rewritten with other contents: rebuilt.
  write_tar(shards[1].string(), good_members(2, 3));
  fs::last_write_time(shards[1], past);
  const TarDataset third(options_for(dir));
  EXPECT_FALSE(third.index_from_cache());
  EXPECT_EQ(third.size(), 5);
  // A shard added: rebuilt.
  write_tar((root / "train-2.tar").string(), good_members(5, 1));
  fs::last_write_time(root / "train-2.tar", past);
  EXPECT_FALSE(TarDataset(options_for(dir)).index_from_cache());
  EXPECT_TRUE(TarDataset(options_for(dir)).index_from_cache());
  // Caching off: neither read nor written.
  const TarDataset uncached(options_for(dir).set_index_cache(false));
  EXPECT_FALSE(uncached.index_from_cache());
  EXPECT_EQ(uncached.index_path(), "");
  EXPECT_EQ(uncached.size(), 6);
}

TEST(TarTest, ConcurrentReadsMatchSequentialOnes) {
  TempDir dir;
  write_tar((dir.path() / "data" / "train-0.tar").string(), good_members(0, 16));
  DataConfig config;
  config.dataset = "tar";
  config.root = dir / "data";
  config.index_cache = false;
  config.limit_train = 12;
  const auto dataset = open_dataset(config, Split::kTrain);
  ASSERT_EQ(dataset->size(), 12);
  std::vector<cv::Mat> sequential;
  for (int64_t i = 0; i < 12; ++i) sequential.push_back(dataset->get(i).image);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (int64_t i = (t * 5 + round) % 12, n = 0; n < 12; i = (i + 5) % 12, ++n) {
          if (!same_image(dataset->get(i).image, sequential[static_cast<size_t>(i)])) {
            ++mismatches[static_cast<size_t>(t)];
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace selfsup
