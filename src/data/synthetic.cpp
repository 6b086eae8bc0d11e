// SyntheticDataset: shapes drawn with OpenCV from a random stream keyed by (split, index).

#include "selfsup/data/synthetic.h"

#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// Key of the dataset's random streams (any constant: images must not change between versions,
// or cached features and tests would).
constexpr uint64_t kSyntheticSeed = 0x53594E5448ull;  // "SYNTH"
// Drawing coordinates carry this many fractional bits, so small images get sub-pixel shapes.
constexpr int kShift = 4;
constexpr double kSubpixel = 1 << kShift;
// Pixel noise: standard deviation in grey levels.
constexpr double kNoiseSigma = 8.0;
// Hue step between consecutive classes: the golden ratio spreads any number of classes evenly.
constexpr double kGoldenRatio = 0.6180339887498949;

cv::Point subpixel(double x, double y) {
  return {static_cast<int>(std::lround(x * kSubpixel)),
          static_cast<int>(std::lround(y * kSubpixel))};
}

// The foreground colour of class `label`: a saturated hue per class (RGB), or a brightness level
// (grayscale), each with a small per-image jitter so that colour is a cue, not an identifier.
cv::Scalar class_colour(int64_t label, int channels, KeyedRng& rng) {
  if (channels == 1) {
    const double level =
        150.0 + 25.0 * static_cast<double>((label / SyntheticDataset::kShapes) % 4);
    return cv::Scalar(level + rng.uniform(-10.0, 10.0));
  }
  double hue = std::fmod(static_cast<double>(label) * kGoldenRatio, 1.0) * 180.0;  // OpenCV: 0..180
  hue = std::fmod(hue + rng.uniform(-4.0, 4.0) + 180.0, 180.0);
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue, rng.uniform(190.0, 255.0), rng.uniform(190.0, 255.0)));
  cv::Mat rgb;
  cv::cvtColor(hsv, rgb, cv::COLOR_HSV2RGB);
  const auto pixel = rgb.at<cv::Vec3b>(0, 0);
  return cv::Scalar(pixel[0], pixel[1], pixel[2]);
}

// The corners of a regular polygon with `sides` corners, centre (cx, cy), radius r, rotated.
std::vector<cv::Point> polygon(int sides, double cx, double cy, double r, double angle) {
  std::vector<cv::Point> points;
  for (int k = 0; k < sides; ++k) {
    const double a = angle + 2.0 * M_PI * k / sides;
    points.push_back(subpixel(cx + r * std::cos(a), cy + r * std::sin(a)));
  }
  return points;
}

}  // namespace

SyntheticDataset::SyntheticDataset(const SyntheticConfig& config, Split split, std::string name,
                                   int64_t limit)
    : config_(config), split_(split), name_(std::move(name)) {
  SELFSUP_CHECK(config.channels == 1 || config.channels == 3,
                "data.synthetic.channels = ", config.channels,
                " is invalid: use 1 (grayscale) or 3 (RGB)");
  SELFSUP_CHECK(config.classes >= 2, "data.synthetic.classes = ", config.classes,
                " is invalid: use at least 2");
  SELFSUP_CHECK(config.image_size >= 4, "data.synthetic.image_size = ", config.image_size,
                " is invalid: use at least 4 pixels");
  SELFSUP_CHECK(limit >= 0, "SyntheticDataset: limit = ", limit, " must be >= 0 (0 = all)");
  count_ = split == Split::kTrain ? config.train_size : config.test_size;
  SELFSUP_CHECK(count_ >= 1, "data.synthetic.", split == Split::kTrain ? "train" : "test",
                "_size = ", count_, " is invalid: use at least 1");
  if (limit > 0 && limit < count_) count_ = limit;
}

Sample SyntheticDataset::get(int64_t index) const {
  SELFSUP_CHECK(index >= 0 && index < count_, "sample index ", index, " is out of range for ",
                describe());
  const int side = config_.image_size;
  const int channels = config_.channels;
  KeyedRng rng(kSyntheticSeed, split_ == Split::kTrain ? 0 : 1, static_cast<uint64_t>(index), 0);

  Sample sample;
  sample.label = label_of(index);
  // Background: a dark, weakly coloured level, so that the shape's colour stands out.
  const double base = rng.uniform(10.0, 70.0);
  cv::Scalar background;
  for (int c = 0; c < channels; ++c) background[c] = base + rng.uniform(-10.0, 10.0);
  sample.image = cv::Mat(side, side, CV_8UC(channels), background);

  const cv::Scalar colour = class_colour(sample.label, channels, rng);
  const double s = side;
  const double cx = rng.uniform(0.35, 0.65) * s;
  const double cy = rng.uniform(0.35, 0.65) * s;
  const double r = rng.uniform(0.18, 0.32) * s;
  const double angle = rng.uniform(0.0, 2.0 * M_PI);
  const int thickness = std::max(1, static_cast<int>(std::lround(r / 3.0)));
  cv::Mat& image = sample.image;
  switch (sample.label % kShapes) {
    case 0:  // filled circle
      cv::circle(image, subpixel(cx, cy), static_cast<int>(r * kSubpixel), colour, cv::FILLED,
                 cv::LINE_AA, kShift);
      break;
    case 1:  // filled square
      cv::fillConvexPoly(image, polygon(4, cx, cy, r, angle), colour, cv::LINE_AA, kShift);
      break;
    case 2:  // filled triangle
      cv::fillConvexPoly(image, polygon(3, cx, cy, r, angle), colour, cv::LINE_AA, kShift);
      break;
    case 3: {  // three parallel stripes
      const double dx = std::cos(angle), dy = std::sin(angle);
      for (int k = -1; k <= 1; ++k) {
        const double ox = cx - dy * k * r * 0.7, oy = cy + dx * k * r * 0.7;
        cv::line(image, subpixel(ox - dx * r, oy - dy * r), subpixel(ox + dx * r, oy + dy * r),
                 colour, std::max(1, thickness / 2 + 1), cv::LINE_AA, kShift);
      }
      break;
    }
    case 4: {  // cross
      const double dx = std::cos(angle), dy = std::sin(angle);
      cv::line(image, subpixel(cx - dx * r, cy - dy * r), subpixel(cx + dx * r, cy + dy * r),
               colour, thickness, cv::LINE_AA, kShift);
      cv::line(image, subpixel(cx + dy * r, cy - dx * r), subpixel(cx - dy * r, cy + dx * r),
               colour, thickness, cv::LINE_AA, kShift);
      break;
    }
    default:  // ring
      cv::circle(image, subpixel(cx, cy), static_cast<int>(r * kSubpixel), colour, thickness,
                 cv::LINE_AA, kShift);
      break;
  }

  // Gaussian pixel noise from OpenCV's generator, seeded from this sample's stream.
  cv::Mat noise(side, side, CV_16SC(channels));
  cv::RNG noise_rng(rng.engine()());
  noise_rng.fill(noise, cv::RNG::NORMAL, 0.0, kNoiseSigma);
  cv::Mat noisy;
  image.convertTo(noisy, CV_16SC(channels));
  noisy += noise;
  noisy.convertTo(image, CV_8UC(channels));  // saturates to [0, 255]
  return sample;
}

std::string SyntheticDataset::source(int64_t index) const {
  return detail::concat("synthetic:", split_ == Split::kTrain ? "train" : "test", "#", index);
}

std::string SyntheticDataset::describe() const {
  return detail::concat(name_, " ", split_ == Split::kTrain ? "train" : "test", " (", count_,
                        " synthetic images, ", config_.image_size, "x", config_.image_size,
                        channels() == 3 ? " RGB, " : " grayscale, ", config_.classes, " classes)");
}

}  // namespace selfsup
