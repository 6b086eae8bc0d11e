// Loader: batch order and contents against SimClrAugment directly (grayscale, RGB, images of
// varying size, multi-crop local views, the device backend's uint8 images), worker-count
// independence, epoch restarts, bounded prefetch and error propagation. Bad samples:
// bad_samples_test.cpp.

#include "selfsup/data/loader.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fake_dataset.h"
#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/sampler.h"

namespace selfsup {
namespace {

// Side of the square views of the [12, 10] fake images.
constexpr int kSide = 8;

AugmentConfig test_config() {
  AugmentConfig config;
  config.size = kSide;
  return config;
}

SimClrAugment test_augment(const Dataset& dataset, AugmentConfig config = test_config()) {
  return SimClrAugment::for_dataset(std::move(config), dataset);
}

FakeDataset slow_dataset(int64_t count, std::chrono::microseconds delay) {
  FakeDatasetOptions fake;
  fake.delay = delay;
  return FakeDataset(count, fake);
}

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

// Checks a batch against the plan and against SimClrAugment called directly with the matching key:
// global views keyed 0 .. V-1, then local views keyed V .. V+L-1.
void expect_batch(const Batch& batch, const Dataset& dataset, const SimClrAugment& augment,
                  uint64_t seed, int64_t epoch, int64_t step, const std::vector<int64_t>& plan,
                  int local_views = 0) {
  const int64_t batch_size = static_cast<int64_t>(plan.size());
  const int64_t c = augment.channels(), s = augment.global_size(), l = augment.local_size();
  EXPECT_EQ(batch.epoch, epoch);
  EXPECT_EQ(batch.step_in_epoch, step);
  EXPECT_EQ(batch.bad_samples, 0);
  EXPECT_FALSE(batch.images.defined());
  ASSERT_EQ(batch.views.sizes(), (std::vector<int64_t>{2, batch_size, c, s, s}));
  if (local_views > 0) {
    ASSERT_EQ(batch.local_views.sizes(), (std::vector<int64_t>{local_views, batch_size, c, l, l}));
    ASSERT_TRUE(batch.local_views.is_contiguous());
  } else {
    EXPECT_FALSE(batch.local_views.defined());
  }
  ASSERT_EQ(batch.views.dtype(), torch::kFloat32);
  ASSERT_TRUE(batch.views.is_contiguous());
  ASSERT_EQ(batch.labels.dtype(), torch::kInt64);
  ASSERT_EQ(batch.indices.dtype(), torch::kInt64);
  for (int64_t i = 0; i < batch_size; ++i) {
    EXPECT_EQ(batch.indices[i].item<int64_t>(), plan[i]);
    EXPECT_EQ(batch.labels[i].item<int64_t>(), plan[i] % FakeDataset::kClasses);
    for (int v = 0; v < 2 + local_views; ++v) {
      const ViewKind kind = v < 2 ? ViewKind::kGlobal : ViewKind::kLocal;
      std::vector<float> expected(static_cast<size_t>(augment.view_floats(kind)));
      KeyedRng rng(seed, epoch, plan[i], v);
      augment.view(dataset.get(plan[i]).image, rng, kind, expected.data());
      const torch::Tensor actual =
          (v < 2 ? batch.views[v][i] : batch.local_views[v - 2][i]).contiguous();
      ASSERT_EQ(
          std::memcmp(actual.data_ptr<float>(), expected.data(), expected.size() * sizeof(float)),
          0)
          << "epoch " << epoch << " step " << step << " sample " << i << " view " << v;
    }
  }
}

TEST(LoaderTest, BatchesFollowThePlanAndMatchTheAugmentation) {
  const FakeDataset dataset(40);
  const SimClrAugment augment = test_augment(dataset);
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
  Loader loader(dataset, test_augment(dataset), options(2));
  EXPECT_FALSE(loader.next().has_value());
}

TEST(LoaderTest, IndependentOfWorkerCount) {
  const FakeDataset dataset(64);
  const DistributedSampler sampler(64, 8, 0, 1, 3);
  Loader one(dataset, test_augment(dataset), options(/*workers=*/1, /*prefetch=*/1));
  Loader four(dataset, test_augment(dataset), options(/*workers=*/4, /*prefetch=*/6));
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
  const FakeDataset dataset = slow_dataset(48, std::chrono::microseconds(300));
  const SimClrAugment augment = test_augment(dataset);
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
  Loader loader(dataset, test_augment(dataset), options(/*workers=*/4, /*prefetch=*/2));
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
  FakeDatasetOptions fake;
  fake.failing_index = 13;
  const FakeDataset dataset(20, fake);
  Loader loader(dataset, test_augment(dataset), options(/*workers=*/3, /*prefetch=*/2));
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
  Loader loader(dataset, test_augment(dataset), options(2));
  EXPECT_THROW(loader.start_epoch(0, {{0, 10}}), Error);
  EXPECT_THROW(loader.start_epoch(0, {{-1}}), Error);
}

TEST(LoaderTest, DestroyedMidEpoch) {
  const FakeDataset dataset = slow_dataset(64, std::chrono::microseconds(200));
  const DistributedSampler sampler(64, 4, 0, 1, 0);
  {
    Loader loader(dataset, test_augment(dataset), options(4, 4));
    loader.start_epoch(0, sampler.local_batches(0));
    ASSERT_TRUE(loader.next().has_value());
  }  // joins its workers without hanging
  SUCCEED();
}

TEST(LoaderTest, RgbImagesInPlanOrderWithOneAndThreeWorkers) {
  FakeDatasetOptions fake;
  fake.channels = 3;
  const FakeDataset dataset(24, fake);
  AugmentConfig config = test_config();
  config.mean = {0.5, 0.4, 0.3};
  config.std = {0.2, 0.25, 0.3};
  const SimClrAugment augment = test_augment(dataset, config);
  const DistributedSampler sampler(24, 6, 0, 1, 5);
  for (const int workers : {1, 3}) {
    Loader loader(dataset, augment, options(workers, /*prefetch=*/2));
    const auto plan = sampler.local_batches(0);
    loader.start_epoch(0, plan);
    const std::vector<Batch> batches = drain(loader);
    ASSERT_EQ(batches.size(), plan.size());
    for (size_t step = 0; step < plan.size(); ++step) {
      expect_batch(batches[step], dataset, augment, 17, 0, step, plan[step]);
    }
  }
}

TEST(LoaderTest, ImagesOfVaryingSize) {
  FakeDatasetOptions fake;
  fake.varying_sizes = true;
  fake.channels = 3;
  const FakeDataset dataset(20, fake);
  // augment.size = 0 means "the image's side", which varying sizes do not have.
  EXPECT_THROW(SimClrAugment::for_dataset(AugmentConfig{}, dataset), ConfigError);
  const SimClrAugment augment = test_augment(dataset);
  const DistributedSampler sampler(20, 5, 0, 1, 2);
  Loader loader(dataset, augment, options(/*workers=*/3));
  const auto plan = sampler.local_batches(1);
  loader.start_epoch(1, plan);
  const std::vector<Batch> batches = drain(loader);
  ASSERT_EQ(batches.size(), plan.size());
  for (size_t step = 0; step < plan.size(); ++step) {
    expect_batch(batches[step], dataset, augment, 17, 1, step, plan[step]);
  }
}

TEST(LoaderTest, LocalViewsOfMultiCrop) {
  FakeDatasetOptions fake;
  fake.channels = 3;
  const FakeDataset dataset(16, fake);
  AugmentConfig config = test_config();
  config.local_views = 3;
  config.local_size = 5;
  const SimClrAugment augment = test_augment(dataset, config);
  LoaderOptions loader_options = options(/*workers=*/2);
  loader_options.local_views = 3;
  Loader loader(dataset, augment, loader_options);
  const std::vector<std::vector<int64_t>> plan = {{3, 1, 4, 15}, {9, 2, 6, 5}};
  loader.start_epoch(2, plan);
  const std::vector<Batch> batches = drain(loader);
  ASSERT_EQ(batches.size(), 2u);
  for (size_t step = 0; step < plan.size(); ++step) {
    expect_batch(batches[step], dataset, augment, 17, 2, step, plan[step], /*local_views=*/3);
  }
}

TEST(LoaderTest, DeviceBackendCarriesResizedImages) {
  FakeDatasetOptions fake;
  fake.channels = 3;
  fake.varying_sizes = true;
  const FakeDataset dataset(12, fake);
  const SimClrAugment augment = test_augment(dataset);
  LoaderOptions loader_options = options(/*workers=*/2);
  loader_options.device_augment = true;
  Loader loader(dataset, augment, loader_options);
  const std::vector<std::vector<int64_t>> plan = {{0, 5, 7}, {11, 2, 3}};
  loader.start_epoch(0, plan);
  const std::vector<Batch> batches = drain(loader);
  ASSERT_EQ(batches.size(), 2u);
  // Images of varying size reach the device as their central square at 8/7 of the view side.
  const int64_t side = (kSide * 8 + 6) / 7;
  std::vector<uint8_t> expected(3 * side * side);
  for (size_t step = 0; step < plan.size(); ++step) {
    const Batch& batch = batches[step];
    EXPECT_FALSE(batch.views.defined());
    EXPECT_FALSE(batch.local_views.defined());
    ASSERT_EQ(batch.images.sizes(), (std::vector<int64_t>{3, 3, side, side}));
    ASSERT_EQ(batch.images.dtype(), torch::kUInt8);
    for (size_t i = 0; i < plan[step].size(); ++i) {
      resize_to_uint8(dataset.get(plan[step][i]).image, int(side), expected.data());
      const torch::Tensor actual = batch.images[i].contiguous();
      ASSERT_EQ(std::memcmp(actual.data_ptr<uint8_t>(), expected.data(), expected.size()), 0)
          << "step " << step << " sample " << i;
      EXPECT_EQ(batch.indices[i].item<int64_t>(), plan[step][i]);
    }
  }
}

TEST(LoaderTest, RejectsAnAugmentationForOtherChannels) {
  FakeDatasetOptions fake;
  fake.channels = 3;
  const FakeDataset dataset(4, fake);
  EXPECT_THROW(
      { Loader loader(dataset, SimClrAugment(test_config(), /*channels=*/1, 0), options(1)); },
      Error);
}

TEST(LoaderTest, PinnedMemoryNeedsCuda) {
  const FakeDataset dataset(8);
  LoaderOptions loader_options = options(1);
  loader_options.pin_memory = true;
  if (torch::cuda::is_available()) {
    Loader loader(dataset, test_augment(dataset), loader_options);
    loader.start_epoch(0, {{0, 1}});
    const std::optional<Batch> batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_TRUE(batch->views.is_pinned());
    EXPECT_TRUE(batch->labels.is_pinned());
  } else {
    // On a machine without CUDA the option is a mistake: refused with a clear error.
    EXPECT_THROW({ Loader loader(dataset, test_augment(dataset), loader_options); }, Error);
  }
}

}  // namespace
}  // namespace selfsup
