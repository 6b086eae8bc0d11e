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
//      advances next_to_return_, which lets workers claim one more step. It also counts the bad
//      samples the batch met and logs the sources not logged before (after unlocking).
// So at most `prefetch` batches are being built or waiting, and they come out in plan order; the
// bad-sample counts and logs follow the plan too, whatever the workers' timing.
//
// Bad samples (see loader.h): a bad sample's substitute is the first good one among candidates
// drawn from a KeyedRng keyed by (seed, epoch, index) on its own stream, so every rank and every
// run picks the same one, and a run of consecutive bad files does not send them all to one
// neighbour.

#include "selfsup/data/loader.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// Separates the substitute probes from every other stream drawn from the loader's seed.
constexpr uint64_t kSubstituteStream = 0x73756273746974ULL;  // "substit"
// check_bad_fraction lists at most this many of the worst sources.
constexpr size_t kWorstListed = 10;

}  // namespace

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
  BuiltBatch built = std::move(found->second);
  ready_.erase(found);
  ++next_to_return_;
  bad_samples_ += built.batch.bad_samples;
  samples_seen_ += built.batch.indices.numel();
  std::vector<const BadSample*> first_seen;  // sources met for the first time, logged once
  for (const BadSample& bad : built.bad) {
    if (bad_source_counts_[bad.source]++ == 0) first_seen.push_back(&bad);
  }
  lock.unlock();
  cv_.notify_all();  // a prefetch slot is free
  for (const BadSample* bad : first_seen) {
    spdlog::warn("bad sample {}: {}; replaced by a substitute (each bad source is logged once)",
                 bad->source, bad->reason);
  }
  return std::move(built.batch);
}

int64_t Loader::bad_samples() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bad_samples_;
}

int64_t Loader::samples_seen() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return samples_seen_;
}

std::vector<std::pair<std::string, int64_t>> Loader::bad_sources() const {
  std::vector<std::pair<std::string, int64_t>> sources;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    sources.assign(bad_source_counts_.begin(), bad_source_counts_.end());
  }
  std::stable_sort(sources.begin(), sources.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return sources;
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

    std::optional<BuiltBatch> batch;
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

std::optional<Sample> Loader::try_get(int64_t index, std::vector<BadSample>& bad) const {
  Sample sample;
  try {
    sample = dataset_.get(index);
  } catch (const BadSampleError& error) {
    bad.push_back({error.source(), error.reason()});
    return std::nullopt;
  }
  const cv::Mat& image = sample.image;
  if (image.empty() || std::min(image.rows, image.cols) < kMinImageSide) {
    bad.push_back({dataset_.source(index),
                   detail::concat("the image is ", image.cols, "x", image.rows,
                                  " pixels, smaller than ", kMinImageSide, " on a side")});
    return std::nullopt;
  }
  // A dataset bug, not a bad file: decoded images have the dataset's channels.
  SELFSUP_CHECK(image.type() == CV_8UC(dataset_.channels()), "sample ", index, " (",
                dataset_.source(index), ") of ", dataset_.describe(), " has OpenCV type ",
                image.type(), " with ", image.channels(), " channel(s); expected uint8 with ",
                dataset_.channels());
  return sample;
}

Sample Loader::get_or_substitute(int64_t epoch, int64_t index, int64_t& used_index,
                                 std::vector<BadSample>& bad) const {
  used_index = index;
  if (std::optional<Sample> sample = try_get(index, bad)) return std::move(*sample);
  const int64_t size = dataset_.size();
  SELFSUP_CHECK(size > 1, "sample ", index, " of ", dataset_.describe(),
                " is bad and there is no other sample to replace it: ", bad.back().source, ": ",
                bad.back().reason);
  // Candidates uniform over the other samples, drawn from (seed, epoch, index) only.
  KeyedRng rng(mix_key(options_.seed, kSubstituteStream), static_cast<uint64_t>(epoch),
               static_cast<uint64_t>(index), 0);
  for (int probe = 0; probe < kMaxSubstituteProbes; ++probe) {
    int64_t candidate = rng.integer(0, size - 2);
    if (candidate >= index) ++candidate;  // never the bad sample itself
    if (std::optional<Sample> sample = try_get(candidate, bad)) {
      used_index = candidate;
      return std::move(*sample);
    }
  }
  throw Error(detail::concat("sample ", index, " of ", dataset_.describe(), " is bad (",
                             dataset_.source(index), ") and so were the ", kMaxSubstituteProbes,
                             " samples tried in its place; most of the dataset is unreadable: ",
                             "check it with `selfsup validate-data`"));
}

Loader::BuiltBatch Loader::make_batch(int64_t epoch, int64_t step,
                                      const std::vector<int64_t>& indices) const {
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

  BuiltBatch built;
  Batch& batch = built.batch;
  batch.epoch = epoch;
  batch.step_in_epoch = step;
  // Every view (or image) is written in place, straight into these tensors: no copies.
  float* view_data = nullptr;
  float* local_data = nullptr;
  uint8_t* image_data = nullptr;
  // Device augmentation crops from these images: the native pixels when every image is the same
  // square (what the CPU path crops from), else the central square at 8/7 of the view side (the
  // "resize 256, crop 224" convention), so that small crops keep some resolution.
  const bool fixed_square = dataset_.height() > 0 && dataset_.height() == dataset_.width();
  const int64_t image_side = fixed_square ? dataset_.height() : (global_side * 8 + 6) / 7;
  if (options_.device_augment) {
    batch.images = torch::empty({batch_size, channels, image_side, image_side},
                                tensor_options(torch::kUInt8));  // [B, C, S', S']
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
  batch.keys = torch::empty({batch_size}, tensor_options(torch::kInt64));
  int64_t* keys = batch.keys.data_ptr<int64_t>();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  int64_t* batch_indices = batch.indices.data_ptr<int64_t>();

  for (int64_t i = 0; i < batch_size; ++i) {
    const int64_t index = indices[static_cast<size_t>(i)];
    int64_t used_index = index;
    const Sample sample = get_or_substitute(epoch, index, used_index, built.bad);
    if (used_index != index) ++batch.bad_samples;
    labels[i] = sample.label;
    batch_indices[i] = used_index;
    keys[i] = index;
    if (image_data != nullptr) {
      resize_to_uint8(sample.image, static_cast<int>(image_side),
                      image_data + i * channels * image_side * image_side);
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
  return built;
}

void check_bad_fraction(int64_t bad, int64_t seen, double max_fraction,
                        const std::vector<std::pair<std::string, int64_t>>& worst) {
  if (bad == 0 || static_cast<double>(bad) <= max_fraction * static_cast<double>(seen)) return;
  std::string listed;
  for (size_t i = 0; i < std::min(worst.size(), kWorstListed); ++i) {
    listed += detail::concat(i == 0 ? "" : ", ", worst[i].first, " (", worst[i].second, "x)");
  }
  if (worst.size() > kWorstListed) {
    listed += detail::concat(" and ", worst.size() - kWorstListed, " more");
  }
  const double percent =
      100.0 * static_cast<double>(bad) / static_cast<double>(std::max<int64_t>(seen, bad));
  throw Error(
      detail::concat(bad, " of ", seen, " samples (", percent,
                     " %) could not be used, more than data.max_bad_fraction = ", max_fraction,
                     " of them", listed.empty() ? "" : "; the worst: ", listed,
                     ". Fix or remove these files (selfsup validate-data lists them all), or raise "
                     "data.max_bad_fraction"));
}

}  // namespace selfsup
