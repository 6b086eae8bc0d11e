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
  // augment.backend "device": the decoded images, [B_local, C, S', S'] uint8, not augmented
  // (views and local_views are then undefined; the trainer augments on the device). S' is the
  // images' own side when they are all one square size, else 8/7 of augment.size (central square).
  torch::Tensor images;
  // [B_local] int64 labels and dataset indices of the images in the batch: for a bad sample, its
  // substitute's (the views stay keyed by the planned index, so they differ from the
  // substitute's own views).
  torch::Tensor labels;
  torch::Tensor indices;
  // [B_local] int64: the planned dataset indices, which key the views' randomness; they differ
  // from `indices` where a bad sample was replaced (the device augmentation keys by these too).
  torch::Tensor keys;
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
///
/// Bad samples: when dataset.get throws BadSampleError, or the image is empty or smaller than
/// kMinImageSide on a side, the sample is replaced by a substitute drawn deterministically from
/// (seed, epoch, index), the same on every rank and in every run, so batch shapes never change.
/// Each bad source is logged once per loader (with the rank, through the rank-prefixed logger)
/// when the batch that met it is handed out; the counts cover the batches handed out.
class Loader {
 public:
  /// Images with a side shorter than this are bad samples.
  static constexpr int kMinImageSide = selfsup::kMinImageSide;
  /// Candidates probed for a bad sample's substitute before the loader gives up.
  static constexpr int kMaxSubstituteProbes = 64;

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

  /// Samples replaced by a substitute, over every batch next() has handed out (all epochs).
  int64_t bad_samples() const;
  /// Samples in every batch next() has handed out (all epochs).
  int64_t samples_seen() const;
  /// Every bad source met in the batches handed out, with how often it failed to load (as a
  /// planned sample or as a substitute candidate); most frequent first, then by name.
  std::vector<std::pair<std::string, int64_t>> bad_sources() const;

 private:
  // A sample that could not be used, met while building a batch.
  struct BadSample {
    std::string source;
    std::string reason;
  };
  // A batch and the bad samples met while building it (logged and counted once handed out).
  struct BuiltBatch {
    Batch batch;
    std::vector<BadSample> bad;
  };

  void worker_loop();
  void stop_workers();
  /// Decodes and augments `indices` (step `step` of `epoch`) into a new Batch; runs unlocked.
  BuiltBatch make_batch(int64_t epoch, int64_t step, const std::vector<int64_t>& indices) const;
  /// Sample `index`, or nullopt (with the reason appended to `bad`) when it is a bad sample.
  std::optional<Sample> try_get(int64_t index, std::vector<BadSample>& bad) const;
  /// Sample `index` of `epoch`, or its deterministic substitute when it is bad; `used_index` is
  /// the index actually loaded.
  Sample get_or_substitute(int64_t epoch, int64_t index, int64_t& used_index,
                           std::vector<BadSample>& bad) const;

  const Dataset& dataset_;
  SimClrAugment augment_;
  LoaderOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  int64_t epoch_ = 0;
  uint64_t generation_ = 0;                    // bumped by start_epoch; stale work is dropped
  std::vector<std::vector<int64_t>> batches_;  // the current epoch's plan
  int64_t next_to_claim_ = 0;                  // next step a worker will build
  int64_t next_to_return_ = 0;                 // next step next() hands out
  std::map<int64_t, BuiltBatch> ready_;        // finished, not yet returned
  std::exception_ptr error_;
  // Over the batches handed out: failures per bad source, replaced and total samples.
  std::map<std::string, int64_t> bad_source_counts_;
  int64_t bad_samples_ = 0;
  int64_t samples_seen_ = 0;
};

/// Stops the run when too many samples were bad: throws Error when `bad` of `seen` samples (counts
/// summed over ranks) is more than `max_fraction` (data.max_bad_fraction) of them. The message
/// names data.max_bad_fraction and lists the first entries of `worst` (source, failures), most
/// frequent first as Loader::bad_sources gives them. Meant for running totals, e.g. at epoch ends;
/// every rank must call it with the same numbers so that all stop together.
void check_bad_fraction(int64_t bad, int64_t seen, double max_fraction,
                        const std::vector<std::pair<std::string, int64_t>>& worst);

}  // namespace selfsup
