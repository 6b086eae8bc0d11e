// Loader: batch order and contents against SimClrAugment directly, worker-count independence,
// epoch restarts, bounded prefetch and error propagation.

#include "selfsup/data/loader.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/sampler.h"

namespace selfsup {
namespace {

constexpr int kHeight = 12;
constexpr int kWidth = 10;

// An in-memory dataset of `count` [12, 10] images; it can fail on one index and slow down get().
class FakeDataset : public Dataset {
 public:
  explicit FakeDataset(int64_t count, int64_t failing_index = -1,
                       std::chrono::microseconds delay = std::chrono::microseconds(0))
      : count_(count), failing_index_(failing_index), delay_(delay) {}

  int64_t size() const override { return count_; }
  Sample get(int64_t index) const override {
    ++gets_;
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    if (index == failing_index_) throw Error("broken sample " + std::to_string(index));
    Sample sample;
    sample.image.create(kHeight, kWidth, CV_8UC1);
    for (int y = 0; y < kHeight; ++y) {
      for (int x = 0; x < kWidth; ++x) {
        sample.image.at<uint8_t>(y, x) = static_cast<uint8_t>((index * 13 + y * 29 + x * x) % 256);
      }
    }
    sample.label = index % 7;
    return sample;
  }
  int64_t num_classes() const override { return 7; }
  int channels() const override { return 1; }
  int height() const override { return kHeight; }
  int width() const override { return kWidth; }
  std::string source(int64_t index) const override { return "fake#" + std::to_string(index); }
  std::string describe() const override { return "fake (" + std::to_string(count_) + ")"; }

  int64_t gets() const { return gets_.load(); }

 private:
  int64_t count_;
  int64_t failing_index_;
  std::chrono::microseconds delay_;
  mutable std::atomic<int64_t> gets_{0};
};

LoaderOptions options(int workers, int prefetch = 3) {
  LoaderOptions result;
  result.seed = 17;
  result.workers = workers;
  result.prefetch = prefetch;
  result.views = 2;
  return result;
}

// Every batch of one epoch, in order.
std::vector<Batch> drain(Loader& loader) {
  std::vector<Batch> batches;
  while (std::optional<Batch> batch = loader.next()) batches.push_back(std::move(*batch));
  return batches;
}

// Checks a batch against the plan and against SimClrAugment called directly with the matching key.
void expect_batch(const Batch& batch, const FakeDataset& dataset, const SimClrAugment& augment,
                  uint64_t seed, int64_t epoch, int64_t step, const std::vector<int64_t>& plan) {
  const int64_t batch_size = static_cast<int64_t>(plan.size());
  EXPECT_EQ(batch.epoch, epoch);
  EXPECT_EQ(batch.step_in_epoch, step);
  ASSERT_EQ(batch.views.sizes(), (std::vector<int64_t>{2, batch_size, 1, kHeight, kWidth}));
  ASSERT_EQ(batch.views.dtype(), torch::kFloat32);
  ASSERT_TRUE(batch.views.is_contiguous());
  ASSERT_EQ(batch.labels.dtype(), torch::kInt64);
  ASSERT_EQ(batch.indices.dtype(), torch::kInt64);
  std::vector<float> expected(kHeight * kWidth);
  for (int64_t i = 0; i < batch_size; ++i) {
    EXPECT_EQ(batch.indices[i].item<int64_t>(), plan[i]);
    EXPECT_EQ(batch.labels[i].item<int64_t>(), plan[i] % 7);
    for (int v = 0; v < 2; ++v) {
      KeyedRng rng(seed, epoch, plan[i], v);
      augment.view(dataset.get(plan[i]).image, rng, expected.data());
      const torch::Tensor actual = batch.views[v][i].contiguous();
      ASSERT_EQ(
          std::memcmp(actual.data_ptr<float>(), expected.data(), expected.size() * sizeof(float)),
          0)
          << "epoch " << epoch << " step " << step << " sample " << i << " view " << v;
    }
  }
}

TEST(LoaderTest, BatchesFollowThePlanAndMatchTheAugmentation) {
  const FakeDataset dataset(40);
  const SimClrAugment augment{AugmentConfig{}};
  // Rank 1 of 2: local batches of 4 out of global batches of 8.
  const DistributedSampler sampler(40, 8, /*rank=*/1, /*world=*/2, /*seed=*/17);
  Loader loader(dataset, augment, options(/*workers=*/3, /*prefetch=*/2));
  for (const int64_t epoch : {0, 1}) {
    const auto plan = sampler.local_batches(epoch);
    loader.start_epoch(epoch, plan);
    const std::vector<Batch> batches = drain(loader);
    ASSERT_EQ(batches.size(), plan.size());
    for (size_t step = 0; step < plan.size(); ++step) {
      expect_batch(batches[step], dataset, augment, 17, epoch, step, plan[step]);
    }
    EXPECT_FALSE(loader.next().has_value());  // stays done
  }
}

TEST(LoaderTest, NextBeforeAnyEpochIsEmpty) {
  const FakeDataset dataset(4);
  Loader loader(dataset, SimClrAugment{AugmentConfig{}}, options(2));
  EXPECT_FALSE(loader.next().has_value());
}

TEST(LoaderTest, IndependentOfWorkerCount) {
  const FakeDataset dataset(64);
  const DistributedSampler sampler(64, 8, 0, 1, 3);
  Loader one(dataset, SimClrAugment{AugmentConfig{}}, options(/*workers=*/1, /*prefetch=*/1));
  Loader four(dataset, SimClrAugment{AugmentConfig{}}, options(/*workers=*/4, /*prefetch=*/6));
  for (const int64_t epoch : {0, 1}) {
    one.start_epoch(epoch, sampler.local_batches(epoch));
    four.start_epoch(epoch, sampler.local_batches(epoch));
    const std::vector<Batch> a = drain(one);
    const std::vector<Batch> b = drain(four);
    ASSERT_EQ(a.size(), 8u);
    ASSERT_EQ(b.size(), 8u);
    for (size_t step = 0; step < a.size(); ++step) {
      EXPECT_TRUE(torch::equal(a[step].views, b[step].views)) << "step " << step;
      EXPECT_TRUE(torch::equal(a[step].indices, b[step].indices));
      EXPECT_TRUE(torch::equal(a[step].labels, b[step].labels));
    }
  }
}

TEST(LoaderTest, StartEpochMidEpochDiscardsTheOldOne) {
  // Slow samples, so that workers are busy with epoch 0 when epoch 1 starts.
  const FakeDataset dataset(48, -1, std::chrono::microseconds(300));
  const SimClrAugment augment{AugmentConfig{}};
  const DistributedSampler sampler(48, 6, 0, 1, 17);
  Loader loader(dataset, augment, options(/*workers=*/4, /*prefetch=*/4));

  loader.start_epoch(0, sampler.local_batches(0));
  ASSERT_TRUE(loader.next().has_value());
  // Restart twice in a row, once without consuming anything in between.
  loader.start_epoch(5, sampler.local_batches(5));
  const auto plan = sampler.local_batches(1);
  loader.start_epoch(1, plan);
  const std::vector<Batch> batches = drain(loader);
  ASSERT_EQ(batches.size(), plan.size());
  for (size_t step = 0; step < plan.size(); ++step) {
    expect_batch(batches[step], dataset, augment, 17, 1, step, plan[step]);
  }
}

TEST(LoaderTest, PrefetchIsBounded) {
  const FakeDataset dataset(60);
  const DistributedSampler sampler(60, 3, 0, 1, 0);
  Loader loader(dataset, SimClrAugment{AugmentConfig{}}, options(/*workers=*/4, /*prefetch=*/2));
  loader.start_epoch(0, sampler.local_batches(0));
  // Whatever the timing, at most `prefetch` batches of 3 samples are built ahead.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LE(dataset.gets(), 2 * 3);
  ASSERT_TRUE(loader.next().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LE(dataset.gets(), 3 * 3);
  EXPECT_EQ(drain(loader).size(), 19u);
  EXPECT_EQ(dataset.gets(), 60);
}

TEST(LoaderTest, WorkerExceptionsReachNext) {
  const FakeDataset dataset(20, /*failing_index=*/13);
  Loader loader(dataset, SimClrAugment{AugmentConfig{}}, options(/*workers=*/3, /*prefetch=*/2));
  std::vector<std::vector<int64_t>> plan = {{0, 1}, {2, 3}, {12, 13}, {4, 5}};
  loader.start_epoch(0, plan);
  bool thrown = false;
  for (int call = 0; call < 4 && !thrown; ++call) {
    try {
      loader.next();
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("broken sample 13"), std::string::npos);
      thrown = true;
    }
  }
  EXPECT_TRUE(thrown);
  EXPECT_THROW(loader.next(), Error);  // the failed step never comes: the error stays

  // A new epoch starts afresh.
  loader.start_epoch(1, {{0, 1}, {2, 3}});
  EXPECT_EQ(drain(loader).size(), 2u);
}

TEST(LoaderTest, RejectsIndicesOutsideTheDataset) {
  const FakeDataset dataset(10);
  Loader loader(dataset, SimClrAugment{AugmentConfig{}}, options(2));
  EXPECT_THROW(loader.start_epoch(0, {{0, 10}}), Error);
  EXPECT_THROW(loader.start_epoch(0, {{-1}}), Error);
}

TEST(LoaderTest, DestroyedMidEpoch) {
  const FakeDataset dataset(64, -1, std::chrono::microseconds(200));
  const DistributedSampler sampler(64, 4, 0, 1, 0);
  {
    Loader loader(dataset, SimClrAugment{AugmentConfig{}}, options(4, 4));
    loader.start_epoch(0, sampler.local_batches(0));
    ASSERT_TRUE(loader.next().has_value());
  }  // joins its workers without hanging
  SUCCEED();
}

}  // namespace
}  // namespace selfsup
