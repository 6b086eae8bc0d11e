// SyntheticDataset: determinism, labels, and that classes differ in shape and colour.

#include "selfsup/data/synthetic.h"

#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "selfsup/core/config.h"

namespace selfsup {
namespace {

SyntheticConfig small_config(int channels = 3, int classes = 6) {
  SyntheticConfig config;
  config.train_size = 240;
  config.test_size = 60;
  config.image_size = 24;
  config.channels = channels;
  config.classes = classes;
  return config;
}

bool same_image(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

TEST(SyntheticTest, ShapeLabelsAndDeterminism) {
  DataConfig config;
  config.dataset = "synthetic";
  config.name = "synth";
  config.synthetic = small_config();
  const auto train = open_dataset(config, Split::kTrain);
  const auto again = open_dataset(config, Split::kTrain);
  const auto test = open_dataset(config, Split::kTest);
  EXPECT_EQ(train->size(), 240);
  EXPECT_EQ(test->size(), 60);
  EXPECT_EQ(train->num_classes(), 6);
  EXPECT_EQ(train->channels(), 3);
  EXPECT_EQ(train->height(), 24);
  EXPECT_EQ(train->width(), 24);
  EXPECT_EQ(train->source(7), "synthetic:train#7");
  for (int64_t i : {0, 1, 7, 239}) {
    const Sample a = train->get(i);
    EXPECT_EQ(a.label, i % 6);
    EXPECT_EQ(a.image.type(), CV_8UC3);
    EXPECT_TRUE(same_image(a.image, train->get(i).image)) << "index " << i;  // same instance
    EXPECT_TRUE(same_image(a.image, again->get(i).image)) << "index " << i;  // another one
  }
  // Different samples, and the same index of the other split, are different images.
  EXPECT_FALSE(same_image(train->get(0).image, train->get(6).image));
  EXPECT_FALSE(same_image(train->get(3).image, test->get(3).image));
  config.limit_train = 10;
  EXPECT_EQ(open_dataset(config, Split::kTrain)->size(), 10);
  EXPECT_TRUE(same_image(open_dataset(config, Split::kTrain)->get(9).image, train->get(9).image));
}

// The mean RGB colour of the pixels brighter than the background, averaged over a class's images.
cv::Vec3d foreground_colour(const SyntheticDataset& dataset, int64_t label, int images) {
  cv::Vec3d sum(0, 0, 0);
  int64_t pixels = 0;
  for (int64_t i = label; i < images * dataset.num_classes(); i += dataset.num_classes()) {
    const cv::Mat image = dataset.get(i).image;
    cv::Mat gray;
    cv::cvtColor(image, gray, cv::COLOR_RGB2GRAY);
    for (int y = 0; y < image.rows; ++y) {
      for (int x = 0; x < image.cols; ++x) {
        const auto& p = image.at<cv::Vec3b>(y, x);
        if (std::max({p[0], p[1], p[2]}) > 140) {
          sum += cv::Vec3d(p[0], p[1], p[2]);
          ++pixels;
        }
      }
    }
  }
  return pixels > 0 ? sum / static_cast<double>(pixels) : sum;
}

TEST(SyntheticTest, ColourDependsOnTheClass) {
  const SyntheticDataset dataset(small_config(3, 6), Split::kTrain, "synth");
  std::vector<cv::Vec3d> colours;
  for (int64_t c = 0; c < 6; ++c) colours.push_back(foreground_colour(dataset, c, 10));
  // Golden-ratio hues: every pair of classes is far apart in mean foreground colour.
  for (size_t a = 0; a < colours.size(); ++a) {
    for (size_t b = a + 1; b < colours.size(); ++b) {
      EXPECT_GT(cv::norm(colours[a] - colours[b]), 40.0) << "classes " << a << " and " << b;
    }
  }
}

// Shape alone (grayscale, one brightness for all six classes) tells the classes apart: the nearest
// training image in log Hu moments of the foreground (moments invariant to the random position,
// scale and rotation) has the test image's class far more often than chance (1/6).
std::vector<double> shape_features(const cv::Mat& image) {
  cv::Mat blurred, mask;
  cv::GaussianBlur(image, blurred, cv::Size(3, 3), 0.8);
  cv::threshold(blurred, mask, 110, 255, cv::THRESH_BINARY);
  double hu[7];
  cv::HuMoments(cv::moments(mask, /*binaryImage=*/true), hu);
  std::vector<double> features;
  for (int k = 0; k < 4; ++k) features.push_back(std::log(std::abs(hu[k]) + 1e-30));
  return features;
}

TEST(SyntheticTest, ClassesAreLearnableFromShape) {
  const auto config = small_config(1, 6);
  const SyntheticDataset train(config, Split::kTrain, "synth");
  const SyntheticDataset test(config, Split::kTest, "synth");
  EXPECT_EQ(train.get(0).image.type(), CV_8UC1);
  std::vector<std::vector<double>> train_features;
  for (int64_t i = 0; i < train.size(); ++i)
    train_features.push_back(shape_features(train.get(i).image));
  int correct = 0;
  for (int64_t i = 0; i < test.size(); ++i) {
    const Sample sample = test.get(i);
    const auto features = shape_features(sample.image);
    double best_distance = 1e300;
    int64_t best = -1;
    for (int64_t j = 0; j < train.size(); ++j) {
      double distance = 0;
      for (size_t k = 0; k < features.size(); ++k) {
        const double d = features[k] - train_features[static_cast<size_t>(j)][k];
        distance += d * d;
      }
      if (distance < best_distance) {
        best_distance = distance;
        best = train.label_of(j);
      }
    }
    correct += best == sample.label;
  }
  EXPECT_GE(correct, 40) << correct << " of " << test.size();
}

}  // namespace
}  // namespace selfsup
