// The threaded loader.
//
// Protocol (all shared state under mutex_, one condition variable for every wait):
//   1. start_epoch installs the step plan, resets the counters and bumps generation_.
//   2. A worker claims step next_to_claim_ (in order) once it is less than `prefetch` steps
//      ahead of next_to_return_, notes the generation, and builds the batch without holding the
//      lock.
//   3. It then stores the batch in ready_ (or the exception in error_), unless start_epoch ran in
//      the meantime (generation changed): stale work is dropped.
//   4. next() waits until ready_ holds next_to_return_ (or an error is stored), hands it out and
//      advances next_to_return_, which lets workers claim one more step.
// So at most `prefetch` batches are being built or waiting, and they come out in plan order.

#include "selfsup/data/loader.h"

#include <utility>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
Loader::Loader(const Dataset& dataset, SimClrAugment augment, LoaderOptions options)
    : dataset_(dataset), augment_(std::move(augment)), options_(options) {
  SELFSUP_CHECK(options_.workers >= 1, "data.workers = ", options_.workers, " must be >= 1");
  SELFSUP_CHECK(options_.prefetch >= 1, "data.prefetch = ", options_.prefetch, " must be >= 1");
  SELFSUP_CHECK(options_.views >= 1, "augment.views = ", options_.views, " must be >= 1");
  SELFSUP_CHECK(options_.local_views >= 0, "augment.local_views = ", options_.local_views,
                " must be >= 0");
  SELFSUP_CHECK(augment_.channels() == dataset_.channels(), dataset_.describe(), " has ",
                dataset_.channels(), " channel(s) but the augmentation was made for ",
                augment_.channels(), "; build it with SimClrAugment::for_dataset");
  SELFSUP_CHECK(!options_.pin_memory || torch::cuda::is_available(),
                "the loader was asked for pinned memory, which needs CUDA, and none is available; ",
                "data.pin_memory applies only when training on a CUDA device");
  workers_.reserve(static_cast<size_t>(options_.workers));
  try {
    for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (...) {
    stop_workers();
    throw;
  }
}

Loader::~Loader() { stop_workers(); }

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  workers_.clear();
}

void Loader::start_epoch(int64_t epoch, std::vector<std::vector<int64_t>> batches) {
  // Validate up front so that a bad plan fails here, not later in a worker.
  const int64_t size = dataset_.size();
  for (size_t step = 0; step < batches.size(); ++step) {
    for (const int64_t index : batches[step]) {
      SELFSUP_CHECK(index >= 0 && index < size, "step ", step, " of epoch ", epoch,
                    " asks for sample ", index, ", outside [0, ", size, ") of ",
                    dataset_.describe());
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++generation_;
    epoch_ = epoch;
    batches_ = std::move(batches);
    next_to_claim_ = 0;
    next_to_return_ = 0;
    ready_.clear();
    error_ = nullptr;
  }
  cv_.notify_all();
}

std::optional<Batch> Loader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto steps = static_cast<int64_t>(batches_.size());
  if (error_ == nullptr && next_to_return_ >= steps) return std::nullopt;
  cv_.wait(lock, [&] { return error_ != nullptr || ready_.count(next_to_return_) > 0; });
  // The error stays stored: the failed step can never come, so every later call rethrows it
  // until start_epoch begins afresh.
  if (error_ != nullptr) std::rethrow_exception(error_);
  auto found = ready_.find(next_to_return_);
  Batch batch = std::move(found->second);
  ready_.erase(found);
  ++next_to_return_;
  lock.unlock();
  cv_.notify_all();  // a prefetch slot is free
  return batch;
}

void Loader::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    cv_.wait(lock, [&] {
      return stopping_ ||
             (error_ == nullptr && next_to_claim_ < static_cast<int64_t>(batches_.size()) &&
              next_to_claim_ < next_to_return_ + options_.prefetch);
    });
    if (stopping_) return;
    const int64_t step = next_to_claim_++;
    const uint64_t generation = generation_;
    const int64_t epoch = epoch_;
    // A copy: start_epoch may replace batches_ while this batch is being built.
    const std::vector<int64_t> indices = batches_[static_cast<size_t>(step)];
    lock.unlock();

    std::optional<Batch> batch;
    std::exception_ptr error;
    try {
      batch = make_batch(epoch, step, indices);
    } catch (...) {
      error = std::current_exception();
    }

    lock.lock();
    if (generation != generation_) continue;  // start_epoch ran meanwhile: drop the stale work
    if (error != nullptr) {
      if (error_ == nullptr) error_ = error;
    } else {
      ready_.emplace(step, std::move(*batch));
    }
    cv_.notify_all();
  }
}

Batch Loader::make_batch(int64_t epoch, int64_t step, const std::vector<int64_t>& indices) const {
  const int64_t batch_size = static_cast<int64_t>(indices.size());
  const int64_t channels = augment_.channels();
  const int64_t global_side = augment_.global_size();
  const int64_t local_side = augment_.local_size();
  const int64_t global_floats = augment_.view_floats(ViewKind::kGlobal);
  const int64_t local_floats = augment_.view_floats(ViewKind::kLocal);
  const int views = options_.device_augment ? 0 : options_.views;
  const int local_views = options_.device_augment ? 0 : options_.local_views;
  const auto tensor_options = [&](torch::ScalarType dtype) {
    return torch::TensorOptions().dtype(dtype).pinned_memory(options_.pin_memory);
  };

  Batch batch;
  batch.epoch = epoch;
  batch.step_in_epoch = step;
  // Every view (or image) is written in place, straight into these tensors: no copies.
  float* view_data = nullptr;
  float* local_data = nullptr;
  uint8_t* image_data = nullptr;
  if (options_.device_augment) {
    batch.images = torch::empty({batch_size, channels, global_side, global_side},
                                tensor_options(torch::kUInt8));  // [B, C, S, S]
    image_data = batch.images.data_ptr<uint8_t>();
  } else {
    batch.views = torch::empty({views, batch_size, channels, global_side, global_side},
                               tensor_options(torch::kFloat32));  // [V, B, C, S, S]
    view_data = batch.views.data_ptr<float>();
    if (local_views > 0) {
      batch.local_views = torch::empty({local_views, batch_size, channels, local_side, local_side},
                                       tensor_options(torch::kFloat32));  // [L, B, C, s, s]
      local_data = batch.local_views.data_ptr<float>();
    }
  }
  batch.labels = torch::empty({batch_size}, tensor_options(torch::kInt64));
  batch.indices = torch::empty({batch_size}, tensor_options(torch::kInt64));
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  int64_t* batch_indices = batch.indices.data_ptr<int64_t>();

  for (int64_t i = 0; i < batch_size; ++i) {
    const int64_t index = indices[static_cast<size_t>(i)];
    const Sample sample = dataset_.get(index);
    SELFSUP_CHECK(!sample.image.empty() && sample.image.type() == CV_8UC(augment_.channels()),
                  "sample ", index, " (", dataset_.source(index), ") of ", dataset_.describe(),
                  " has OpenCV type ", sample.image.type(), " with ", sample.image.channels(),
                  " channel(s); expected uint8 with ", augment_.channels());
    labels[i] = sample.label;
    batch_indices[i] = index;
    if (image_data != nullptr) {
      resize_to_uint8(sample.image, static_cast<int>(global_side),
                      image_data + i * channels * global_side * global_side);
      continue;
    }
    // Keyed by (seed, epoch, planned index, view), local views numbered after the global ones:
    // the same view whatever worker or rank builds it.
    for (int v = 0; v < views + local_views; ++v) {
      KeyedRng rng(options_.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index),
                   static_cast<uint64_t>(v));
      if (v < views) {
        augment_.view(sample.image, rng, ViewKind::kGlobal,
                      view_data + (int64_t{v} * batch_size + i) * global_floats);
      } else {
        augment_.view(sample.image, rng, ViewKind::kLocal,
                      local_data + (int64_t{v - views} * batch_size + i) * local_floats);
      }
    }
  }
  return batch;
}

}  // namespace selfsup
