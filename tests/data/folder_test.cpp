// FolderDataset: layout, decoding, bad files, and the cached index (used, stale, disabled,
// fallback), on image trees written by each test.

#include "selfsup/data/folder.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "temp_dir.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;

// A BGR image (OpenCV's order) of one colour, so that the decoded RGB values are known.
cv::Mat solid_bgr(int rows, int cols, uint8_t b, uint8_t g, uint8_t r) {
  return cv::Mat(rows, cols, CV_8UC3, cv::Scalar(b, g, r));
}

std::vector<uint8_t> encode(const std::string& extension, const cv::Mat& image) {
  std::vector<uint8_t> bytes;
  EXPECT_TRUE(cv::imencode(extension, image, bytes));
  return bytes;
}

// Sets a folder's modification time to a fixed point an hour back (plus `seconds`), as for a tree
// that has not changed in a while: an index taken now is then trusted (see kIndexRacyWindowNs).
void age(const fs::path& folder, int seconds = 0) {
  static const auto past = fs::file_time_type::clock::now() - std::chrono::hours(1);
  fs::last_write_time(folder, past + std::chrono::seconds(seconds));
}

// root/train/{bird,cat,dog}: 2 PNGs, 1 JPEG (+ a nested folder), 1 upper-case .PNG; and noise the
// walk must skip (a text file, a hidden folder, a file directly in the split folder).
void write_tree(const fs::path& root) {
  const fs::path split = root / "train";
  write_bytes_file((split / "cat" / "a.png").string(), encode(".png", solid_bgr(5, 7, 10, 20, 30)));
  write_bytes_file((split / "cat" / "b.png").string(), encode(".png", solid_bgr(6, 4, 1, 2, 3)));
  write_bytes_file((split / "dog" / "x" / "c.jpg").string(),
                   encode(".jpg", solid_bgr(16, 16, 0, 0, 200)));
  const cv::Mat gray(3, 9, CV_8UC1, cv::Scalar(77));
  write_bytes_file((split / "bird" / "G.PNG").string(), encode(".png", gray));
  write_bytes_file((split / "bird" / "notes.txt").string(), {'h', 'i'});
  write_bytes_file((split / ".hidden" / "h.png").string(), encode(".png", gray));
  write_bytes_file((split / "stray.png").string(), encode(".png", gray));
}

FolderOptions options_for(const TempDir& dir) {
  return FolderOptions(dir / "data", "train").set_cache_dir(dir / "cache");
}

TEST(FolderTest, ClassesFilesAndDecodedRgb) {
  TempDir dir;
  write_tree(dir.path() / "data");
  const FolderDataset dataset(options_for(dir));
  EXPECT_EQ(dataset.class_names(), (std::vector<std::string>{"bird", "cat", "dog"}));
  ASSERT_EQ(dataset.size(), 4);
  EXPECT_EQ(dataset.num_classes(), 3);
  EXPECT_EQ(dataset.channels(), 3);
  EXPECT_EQ(dataset.height(), 0);  // images vary in size
  EXPECT_EQ(dataset.width(), 0);
  const fs::path split = fs::absolute(dir.path() / "data" / "train");
  EXPECT_EQ(dataset.source(0), (split / "bird" / "G.PNG").string());
  EXPECT_EQ(dataset.source(3), (split / "dog" / "x" / "c.jpg").string());

  const Sample gray = dataset.get(0);  // a grayscale file, returned as 3 channels
  EXPECT_EQ(gray.label, 0);
  ASSERT_EQ(gray.image.type(), CV_8UC3);
  EXPECT_EQ(gray.image.size(), cv::Size(9, 3));
  EXPECT_EQ(gray.image.at<cv::Vec3b>(2, 8), cv::Vec3b(77, 77, 77));
  const Sample a = dataset.get(1);
  EXPECT_EQ(a.label, 1);
  EXPECT_EQ(a.image.size(), cv::Size(7, 5));
  EXPECT_EQ(a.image.at<cv::Vec3b>(4, 6), cv::Vec3b(30, 20, 10));  // BGR file -> RGB
  EXPECT_EQ(dataset.get(2).image.size(), cv::Size(4, 6));
  const Sample jpeg = dataset.get(3);
  EXPECT_EQ(jpeg.label, 2);
  const auto red = jpeg.image.at<cv::Vec3b>(8, 8);  // lossy: close to pure red
  EXPECT_NEAR(red[0], 200, 4);
  EXPECT_NEAR(red[1], 0, 4);
  EXPECT_NEAR(red[2], 0, 4);
  EXPECT_EQ(dataset.file_size(1), static_cast<int64_t>(fs::file_size(split / "cat" / "a.png")));
  EXPECT_NE(dataset.describe().find("4 images, 3 classes"), std::string::npos)
      << dataset.describe();
  EXPECT_NE(dataset.describe().find("1 other files ignored"), std::string::npos);
}

TEST(FolderTest, BadFilesThrowBadSampleErrorWithTheReason) {
  TempDir dir;
  const fs::path cls = dir.path() / "data" / "train" / "c";
  const auto jpeg = encode(".jpg", solid_bgr(20, 20, 50, 100, 150));
  const auto png = encode(".png", solid_bgr(20, 20, 50, 100, 150));
  auto padded = jpeg;
  padded.insert(padded.end(), 16, 0);  // zero padding after FF D9: still a good JPEG
  write_bytes_file((cls / "0_good.jpg").string(), jpeg);
  write_bytes_file((cls / "1_padded.jpg").string(), padded);
  write_bytes_file((cls / "2_empty.jpg").string(), {});
  write_bytes_file((cls / "3_truncated.jpg").string(),
                   std::vector<uint8_t>(jpeg.begin(), jpeg.begin() + jpeg.size() / 2));
  write_bytes_file((cls / "4_text.jpg").string(), {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm'});
  write_bytes_file((cls / "5_truncated.png").string(),
                   std::vector<uint8_t>(png.begin(), png.end() - 12));
  write_bytes_file((cls / "6_small.png").string(), encode(".png", solid_bgr(2, 30, 1, 1, 1)));
  write_bytes_file((cls / "7_deleted.png").string(), png);
  const FolderDataset dataset(options_for(dir).set_decode(DecodeOptions().set_min_side(3)));
  ASSERT_EQ(dataset.size(), 8);
  fs::remove(cls / "7_deleted.png");  // after indexing: open fails

  EXPECT_EQ(dataset.get(0).image.size(), cv::Size(20, 20));
  EXPECT_EQ(dataset.get(1).image.size(), cv::Size(20, 20));
  const std::vector<std::pair<int64_t, std::string>> expected = {
      {2, "zero-byte file"},
      {3, "truncated JPEG"},
      {4, "not an image OpenCV can decode"},
      {5, "truncated PNG"},
      {6, "2x30 pixels is smaller than the minimum side 3"},
      {7, "cannot open: No such file or directory"}};
  for (const auto& [index, reason] : expected) {
    try {
      dataset.get(index);
      ADD_FAILURE() << "no error for " << dataset.source(index);
    } catch (const BadSampleError& e) {
      EXPECT_EQ(e.source(), dataset.source(index));
      EXPECT_NE(e.reason().find(reason), std::string::npos) << e.reason();
    }
  }
}

TEST(FolderTest, SecondOpenUsesTheIndexUntilAFolderChanges) {
  TempDir dir;
  write_tree(dir.path() / "data");
  const fs::path split = dir.path() / "data" / "train";
  for (const char* name : {"bird", "cat", "dog", "dog/x"}) age(split / name);

  const FolderDataset first(options_for(dir));
  EXPECT_FALSE(first.index_from_cache());
  EXPECT_EQ(first.index_path(), fs::absolute(split / FolderDataset::kIndexFileName).string());
  ASSERT_TRUE(fs::is_regular_file(first.index_path()));

  // A file deleted behind the index's back (its folder's time put back): the second open does
  // not walk the tree, so it still lists the file, and reading it is a bad sample.
  fs::remove(split / "cat" / "b.png");
  age(split / "cat");
  const FolderDataset second(options_for(dir));
  EXPECT_TRUE(second.index_from_cache());
  ASSERT_EQ(second.size(), 4);
  EXPECT_EQ(second.source(2), first.source(2));
  EXPECT_THROW(second.get(2), BadSampleError);

  // The folder's time changes (as any real deletion does): the index is rebuilt.
  age(split / "cat", 5);
  const FolderDataset third(options_for(dir));
  EXPECT_FALSE(third.index_from_cache());
  EXPECT_EQ(third.size(), 3);

  // Unchanged since: cached again. Then a nested folder changes, and a class folder appears.
  EXPECT_TRUE(FolderDataset(options_for(dir)).index_from_cache());
  write_bytes_file((split / "dog" / "x" / "d.png").string(),
                   encode(".png", solid_bgr(4, 4, 1, 1, 1)));
  const FolderDataset fourth(options_for(dir));
  EXPECT_FALSE(fourth.index_from_cache());
  EXPECT_EQ(fourth.size(), 4);
  age(split / "dog" / "x");
  fs::create_directories(split / "eel");
  write_bytes_file((split / "eel" / "e.png").string(), encode(".png", solid_bgr(4, 4, 1, 1, 1)));
  age(split / "eel");
  const FolderDataset fifth(options_for(dir));
  EXPECT_FALSE(fifth.index_from_cache());
  EXPECT_EQ(fifth.num_classes(), 4);
  EXPECT_TRUE(FolderDataset(options_for(dir)).index_from_cache());
}

TEST(FolderTest, AFreshlyWrittenTreeIsWalkedAgain) {
  // Folder times within the racy window of the walk are not trusted (a change in the same
  // timestamp tick would go unseen), so the second open walks too.
  TempDir dir;
  write_tree(dir.path() / "data");
  EXPECT_FALSE(FolderDataset(options_for(dir)).index_from_cache());
  EXPECT_FALSE(FolderDataset(options_for(dir)).index_from_cache());
}

TEST(FolderTest, IndexCacheOffWritesNothing) {
  TempDir dir;
  write_tree(dir.path() / "data");
  const FolderDataset dataset(options_for(dir).set_index_cache(false));
  EXPECT_EQ(dataset.size(), 4);
  EXPECT_EQ(dataset.index_path(), "");
  EXPECT_FALSE(fs::exists(dir.path() / "data" / "train" / FolderDataset::kIndexFileName));
  EXPECT_FALSE(fs::exists(dir.path() / "cache"));
}

TEST(FolderTest, UnwritableSplitFolderFallsBackToTheCacheFolder) {
  TempDir dir;
  write_tree(dir.path() / "data");
  const fs::path split = dir.path() / "data" / "train";
  for (const char* name : {"bird", "cat", "dog", "dog/x"}) age(split / name);
  // A folder where the index file should be: no rename can replace it, even as root (where
  // permissions would not stop the write).
  fs::create_directories(split / FolderDataset::kIndexFileName);
  const FolderDataset first(options_for(dir));
  EXPECT_FALSE(first.index_from_cache());
  ASSERT_NE(first.index_path(), "");
  EXPECT_EQ(fs::path(first.index_path()).parent_path(), dir.path() / "cache");
  const FolderDataset second(options_for(dir));
  EXPECT_TRUE(second.index_from_cache());
  EXPECT_EQ(second.index_path(), first.index_path());
  EXPECT_EQ(second.size(), 4);
}

TEST(FolderTest, LimitIsEvenlySpacedOverClasses) {
  TempDir dir;
  for (const char* cls : {"a", "b"}) {
    for (int i = 0; i < 4; ++i) {
      write_bytes_file(
          (dir.path() / "data" / "train" / cls / (std::to_string(i) + ".png")).string(),
          encode(".png", solid_bgr(3, 3, 1, 1, 1)));
    }
  }
  const FolderDataset dataset(options_for(dir).set_limit(4));
  ASSERT_EQ(dataset.size(), 4);
  EXPECT_EQ(dataset.get(0).label, 0);
  EXPECT_EQ(dataset.get(3).label, 1);
  EXPECT_EQ(fs::path(dataset.source(1)).filename(), "2.png");
}

template <typename Body>
void expect_error(Body&& body, const std::vector<std::string>& parts) {
  try {
    body();
    FAIL() << "no error thrown";
  } catch (const BadSampleError& e) {
    FAIL() << "a setup problem must not be a bad sample: " << e.what();
  } catch (const Error& e) {
    for (const auto& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "'" << part << "' not in: " << e.what();
    }
  }
}

TEST(FolderTest, SetupErrorsSayWhatLayoutIsExpected) {
  TempDir dir;
  DataConfig config;
  config.dataset = "folder";
  config.root = dir / "missing";
  config.index_cache = false;
  expect_error([&] { open_dataset(config, Split::kTrain); },
               {"data.root", dir / "missing", "<class>/*.jpg"});
  config.root = dir / "data";
  fs::create_directories(dir.path() / "data" / "train");
  expect_error([&] { open_dataset(config, Split::kTest); },
               {"no sub-folder \"val\"", "data.test_split"});
  expect_error([&] { open_dataset(config, Split::kTrain); }, {"no class sub-folders"});
  fs::create_directories(dir.path() / "data" / "train" / "empty_class");
  expect_error([&] { open_dataset(config, Split::kTrain); },
               {"no .jpg, .jpeg or .png files", "1 class folders"});
}

}  // namespace
}  // namespace selfsup
