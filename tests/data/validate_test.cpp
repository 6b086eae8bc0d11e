// validate_dataset on an in-memory dataset with known sizes, labels and bad samples.

#include "selfsup/data/validate.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// 200 samples: sample i is (10 + i % 7) x (20 + i % 5) pixels, label i % 3; every 9th is bad
// (BadSampleError); with `fail_at` >= 0, that sample throws a plain Error (not a sample problem).
class KnownDataset : public Dataset {
 public:
  explicit KnownDataset(int64_t fail_at = -1) : fail_at_(fail_at) {}
  int64_t size() const override { return 200; }
  Sample get(int64_t index) const override {
    if (index == fail_at_) throw Error("the disk went away");
    if (index % 9 == 4) throw BadSampleError(source(index), "reason " + std::to_string(index));
    Sample sample;
    sample.image = cv::Mat(10 + index % 7, 20 + index % 5, index % 2 ? CV_8UC3 : CV_8UC1);
    sample.label = index % 3;
    return sample;
  }
  std::string source(int64_t index) const override { return "known#" + std::to_string(index); }
  int64_t num_classes() const override { return 3; }
  int channels() const override { return 3; }
  int height() const override { return 0; }
  int width() const override { return 0; }
  std::string describe() const override { return "known (200 images)"; }

 private:
  int64_t fail_at_;
};

TEST(ValidateTest, CountsSizesAndBadSamplesMatchAScan) {
  const KnownDataset dataset;
  // The expected values, by a plain loop.
  std::vector<int64_t> counts(3, 0), heights, widths, bad;
  int64_t gray = 0;
  for (int64_t i = 0; i < 200; ++i) {
    if (i % 9 == 4) {
      bad.push_back(i);
      continue;
    }
    ++counts[static_cast<size_t>(i % 3)];
    heights.push_back(10 + i % 7);
    widths.push_back(20 + i % 5);
    gray += i % 2 == 0;
  }
  std::sort(heights.begin(), heights.end());
  std::sort(widths.begin(), widths.end());

  for (int threads : {1, 3}) {
    const DataReport report = validate_dataset(dataset, ValidateOptions().set_threads(threads));
    EXPECT_EQ(report.description, "known (200 images)");
    EXPECT_EQ(report.samples, 200);
    EXPECT_EQ(report.readable, 200 - static_cast<int64_t>(bad.size()));
    EXPECT_EQ(report.class_counts, counts);
    EXPECT_EQ(report.height.min, 10);
    EXPECT_EQ(report.height.max, 16);
    EXPECT_EQ(report.height.median, heights[(heights.size() - 1) / 2]);
    EXPECT_EQ(report.width.min, 20);
    EXPECT_EQ(report.width.max, 24);
    EXPECT_EQ(report.width.median, widths[(widths.size() - 1) / 2]);
    EXPECT_EQ(report.channels.at(1), gray);
    EXPECT_EQ(report.channels.at(3), report.readable - gray);
    ASSERT_EQ(report.bad.size(), bad.size());
    for (size_t k = 0; k < bad.size(); ++k) {
      EXPECT_EQ(report.bad[k].index, bad[k]);
      EXPECT_EQ(report.bad[k].source, "known#" + std::to_string(bad[k]));
      EXPECT_EQ(report.bad[k].reason, "reason " + std::to_string(bad[k]));
    }
    const auto json = report_to_json(report);
    EXPECT_EQ(json.at("unreadable").get<int64_t>(), static_cast<int64_t>(bad.size()));
    EXPECT_EQ(json.at("bad_samples").at(0).at("source"), "known#4");
    EXPECT_EQ(json.at("height").at("max"), 16);
    const std::string text = format_report(report);
    EXPECT_NE(text.find("unreadable   known#13: reason 13"), std::string::npos) << text;
  }
}

TEST(ValidateTest, OtherErrorsStopTheScan) {
  const KnownDataset dataset(/*fail_at=*/150);
  EXPECT_THROW(validate_dataset(dataset, ValidateOptions().set_threads(2)), Error);
}

}  // namespace
}  // namespace selfsup
