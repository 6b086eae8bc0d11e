#pragma once
// The threaded loader: worker threads decode and augment samples straight into the batch tensor;
// a bounded prefetch queue holds at most `prefetch` finished batches; batches come out in exactly
// the order the sampler decided, whichever worker finished first.

#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "selfsup/data/augment.h"
#include "selfsup/data/dataset.h"

namespace selfsup {

/// One rank's slice of a global batch.
struct Batch {
  // augment.backend "cpu": the augmented views. [V, B_local, C, S, S] float32, normalised
  // (S = augment.size); the local views of multi-crop are [L, B_local, C, s, s] (s =
  // augment.local_size), undefined when augment.local_views = 0.
  torch::Tensor views;
  torch::Tensor local_views;
  // augment.backend "device": the decoded images, [B_local, C, S, S] uint8, resized but not
  // augmented (views and local_views are then undefined; the trainer augments on the device).
  torch::Tensor images;
  torch::Tensor labels;   // [B_local] int64 (unused by self-supervised objectives; kept for probes)
  torch::Tensor indices;  // [B_local] int64 dataset indices
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
  int64_t bad_samples = 0;  // samples of this batch replaced by their deterministic substitute
};

struct LoaderOptions {
  uint64_t seed = 0;            // augmentation randomness is keyed by (seed, epoch, index, view)
  int workers = 2;              // worker threads
  int prefetch = 4;             // finished batches held at most
  int views = 2;                // global views per image (augment.views); keys 0 .. V-1
  int local_views = 0;          // local views per image (augment.local_views); keys V .. V+L-1
  bool device_augment = false;  // augment.backend "device": batches carry `images`, not views
  // Batch tensors in pinned (page-locked) memory, for asynchronous copies to the GPU. Set it only
  // when the training device is CUDA (data.pin_memory); without CUDA the loader refuses it.
  bool pin_memory = false;
};

/// Produces augmented batches for one epoch at a time.
class Loader {
 public:
  /// `augment` must be made for the dataset's channels (SimClrAugment::for_dataset).
  Loader(const Dataset& dataset, SimClrAugment augment, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  /// Starts producing the batches of `epoch`; `batches[s]` are the dataset indices of step s.
  /// Any batches of a previous epoch not yet consumed are discarded.
  void start_epoch(int64_t epoch, std::vector<std::vector<int64_t>> batches);

  /// The next batch of the current epoch, in order; nullopt when the epoch is done. Rethrows a
  /// worker's exception.
  std::optional<Batch> next();

 private:
  void worker_loop();
  void stop_workers();
  /// Decodes and augments `indices` (step `step` of `epoch`) into a new Batch; runs unlocked.
  Batch make_batch(int64_t epoch, int64_t step, const std::vector<int64_t>& indices) const;

  const Dataset& dataset_;
  SimClrAugment augment_;
  LoaderOptions options_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  int64_t epoch_ = 0;
  uint64_t generation_ = 0;                    // bumped by start_epoch; stale work is dropped
  std::vector<std::vector<int64_t>> batches_;  // the current epoch's plan
  int64_t next_to_claim_ = 0;                  // next step a worker will build
  int64_t next_to_return_ = 0;                 // next step next() hands out
  std::map<int64_t, Batch> ready_;             // finished, not yet returned
  std::exception_ptr error_;
};

}  // namespace selfsup
