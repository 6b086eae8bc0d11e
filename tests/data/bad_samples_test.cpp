// The loader's bad samples: replaced by a deterministic substitute (same with any worker count,
// views keyed by the planned index), shapes kept, counted, each source logged once; and
// check_bad_fraction.

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fake_dataset.h"
#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/loader.h"

namespace selfsup {
namespace {

constexpr int kSide = 8;
constexpr uint64_t kSeed = 23;

// 40 samples: 3, 4, 5 and 17 throw BadSampleError, 21 is a 4x4 image.
FakeDataset dataset_with_bad_samples(int channels = 1) {
  FakeDatasetOptions fake;
  fake.channels = channels;
  fake.bad = {3, 4, 5, 17};
  fake.tiny = {21};
  return FakeDataset(40, fake);
}

SimClrAugment augment_for(const Dataset& dataset) {
  AugmentConfig config;
  config.size = kSide;
  return SimClrAugment::for_dataset(config, dataset);
}

LoaderOptions options(int workers, int prefetch) {
  LoaderOptions result;
  result.seed = kSeed;
  result.workers = workers;
  result.prefetch = prefetch;
  return result;
}

// Batches of 8 covering the dataset in order.
std::vector<std::vector<int64_t>> plan_in_order(int64_t size) {
  std::vector<std::vector<int64_t>> plan;
  for (int64_t start = 0; start < size; start += 8) {
    plan.emplace_back();
    for (int64_t i = start; i < std::min(size, start + 8); ++i) plan.back().push_back(i);
  }
  return plan;
}

std::vector<Batch> drain(Loader& loader) {
  std::vector<Batch> batches;
  while (std::optional<Batch> batch = loader.next()) batches.push_back(std::move(*batch));
  return batches;
}

// Routes spdlog's default logger into a string for the life of the object.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }
  // Lines of the log that mention `needle`.
  int count(const std::string& needle) const {
    std::istringstream lines(text_.str());
    int found = 0;
    for (std::string line; std::getline(lines, line);) found += line.find(needle) != line.npos;
    return found;
  }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST(BadSamplesTest, ReplacedKeepingShapesAndCounted) {
  const FakeDataset dataset = dataset_with_bad_samples(/*channels=*/3);
  const SimClrAugment augment = augment_for(dataset);
  Loader loader(dataset, augment, options(/*workers=*/3, /*prefetch=*/2));
  const std::set<int64_t> bad = {3, 4, 5, 17, 21};
  int64_t bad_in_batches = 0;
  for (const int64_t epoch : {0, 1}) {
    const auto plan = plan_in_order(40);
    loader.start_epoch(epoch, plan);
    const std::vector<Batch> batches = drain(loader);
    ASSERT_EQ(batches.size(), plan.size());
    for (size_t step = 0; step < plan.size(); ++step) {
      const Batch& batch = batches[step];
      ASSERT_EQ(batch.views.sizes(), (std::vector<int64_t>{2, 8, 3, kSide, kSide}));
      ASSERT_EQ(batch.indices.numel(), 8);
      int64_t replaced = 0;
      for (size_t i = 0; i < plan[step].size(); ++i) {
        const int64_t planned = plan[step][i];
        const int64_t used = batch.indices[i].item<int64_t>();
        EXPECT_EQ(batch.labels[i].item<int64_t>(), used % FakeDataset::kClasses);
        if (bad.count(planned) > 0) {
          ++replaced;
          EXPECT_NE(used, planned);
          EXPECT_EQ(bad.count(used), 0u) << "a substitute is a good sample";
          // The substitute's image, with the views keyed by the planned index.
          for (int v = 0; v < 2; ++v) {
            std::vector<float> expected(3 * kSide * kSide);
            KeyedRng rng(kSeed, epoch, planned, v);
            augment.view(dataset.get(used).image, rng, ViewKind::kGlobal, expected.data());
            const torch::Tensor actual = batch.views[v][i].contiguous();
            ASSERT_EQ(std::memcmp(actual.data_ptr<float>(), expected.data(),
                                  expected.size() * sizeof(float)),
                      0);
          }
        } else {
          EXPECT_EQ(used, planned);
        }
      }
      EXPECT_EQ(batch.bad_samples, replaced) << "step " << step;
      bad_in_batches += batch.bad_samples;
    }
  }
  EXPECT_EQ(bad_in_batches, 10);  // 5 bad samples, 2 epochs
  EXPECT_EQ(loader.bad_samples(), 10);
  EXPECT_EQ(loader.samples_seen(), 80);
  // Every bad source, each failing at least once per epoch (more if probed as a substitute).
  const auto sources = loader.bad_sources();
  ASSERT_EQ(sources.size(), 5u);
  for (size_t i = 0; i < sources.size(); ++i) {
    EXPECT_GE(sources[i].second, 2) << sources[i].first;
    if (i > 0) {
      EXPECT_GE(sources[i - 1].second, sources[i].second) << "most frequent first";
    }
  }
}

TEST(BadSamplesTest, SubstituteIsTheSameWithAnyWorkerCount) {
  const FakeDataset dataset = dataset_with_bad_samples();
  Loader one(dataset, augment_for(dataset), options(/*workers=*/1, /*prefetch=*/1));
  Loader three(dataset, augment_for(dataset), options(/*workers=*/3, /*prefetch=*/4));
  // A shuffled plan: the substitutes depend on (seed, epoch, index), not on positions.
  const std::vector<std::vector<int64_t>> plan = {
      {17, 0, 8, 3}, {21, 5, 33, 4}, {9, 10, 11, 12}, {3, 4, 5, 21}};
  for (const int64_t epoch : {0, 1}) {
    one.start_epoch(epoch, plan);
    three.start_epoch(epoch, plan);
    const std::vector<Batch> a = drain(one);
    const std::vector<Batch> b = drain(three);
    ASSERT_EQ(a.size(), plan.size());
    ASSERT_EQ(b.size(), plan.size());
    for (size_t step = 0; step < plan.size(); ++step) {
      EXPECT_TRUE(torch::equal(a[step].indices, b[step].indices)) << "step " << step;
      EXPECT_TRUE(torch::equal(a[step].views, b[step].views)) << "step " << step;
      EXPECT_TRUE(torch::equal(a[step].labels, b[step].labels)) << "step " << step;
      EXPECT_EQ(a[step].bad_samples, b[step].bad_samples);
    }
    // The same planned bad index gets the same substitute within an epoch.
    EXPECT_EQ(a[0].indices[3].item<int64_t>(), a[3].indices[0].item<int64_t>());
    EXPECT_EQ(a[0].indices[0].item<int64_t>(), b[0].indices[0].item<int64_t>());
  }
  EXPECT_EQ(one.bad_samples(), three.bad_samples());
  EXPECT_EQ(one.bad_sources(), three.bad_sources());
}

TEST(BadSamplesTest, EachBadSourceIsLoggedOnce) {
  const FakeDataset dataset = dataset_with_bad_samples();
  CapturedLog log;
  {
    Loader loader(dataset, augment_for(dataset), options(/*workers=*/2, /*prefetch=*/2));
    for (const int64_t epoch : {0, 1, 2}) {
      loader.start_epoch(epoch, plan_in_order(40));
      drain(loader);
    }
  }
  for (const int64_t index : {3, 4, 5, 17}) {
    const std::string source = "fake#" + std::to_string(index);
    EXPECT_EQ(log.count(source + ":"), 1) << log.text();
    EXPECT_EQ(log.count(source + ": truncated file"), 1) << log.text();
  }
  EXPECT_EQ(log.count("fake#21: the image is 4x4 pixels"), 1) << log.text();
  EXPECT_EQ(log.count("bad sample"), 5) << log.text();
}

TEST(BadSamplesTest, NoGoodSampleLeftStopsTheRun) {
  FakeDatasetOptions fake;
  for (int64_t i = 0; i < 10; ++i) fake.bad.insert(i);
  const FakeDataset dataset(10, fake);
  Loader loader(dataset, augment_for(dataset), options(/*workers=*/1, /*prefetch=*/1));
  loader.start_epoch(0, {{0, 1}});
  try {
    loader.next();
    FAIL() << "expected an error";
  } catch (const BadSampleError&) {
    FAIL() << "a BadSampleError must not escape the loader";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("tried in its place"), std::string::npos)
        << error.what();
  }
}

TEST(BadSamplesTest, CheckBadFraction) {
  const std::vector<std::pair<std::string, int64_t>> worst = {{"a.jpg", 3}, {"b.jpg", 1}};
  EXPECT_NO_THROW(check_bad_fraction(0, 0, 0.0, {}));
  EXPECT_NO_THROW(check_bad_fraction(0, 100, 0.0, {}));
  EXPECT_NO_THROW(check_bad_fraction(1, 100, 0.01, worst));  // at the limit
  EXPECT_THROW(check_bad_fraction(1, 100, 0.0, worst), Error);
  try {
    check_bad_fraction(4, 100, 0.01, worst);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("data.max_bad_fraction"), std::string::npos) << message;
    EXPECT_NE(message.find("4 of 100"), std::string::npos) << message;
    EXPECT_NE(message.find("a.jpg (3x), b.jpg (1x)"), std::string::npos) << message;
  }
  // A long list is cut after the ten worst.
  std::vector<std::pair<std::string, int64_t>> many;
  for (int i = 0; i < 25; ++i) many.emplace_back("f" + std::to_string(i), 25 - i);
  try {
    check_bad_fraction(300, 1000, 0.01, many);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("f9 (16x)"), std::string::npos) << message;
    EXPECT_EQ(message.find("f10 "), std::string::npos) << message;
    EXPECT_NE(message.find("and 15 more"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace selfsup
