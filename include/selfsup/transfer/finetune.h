#pragma once
// Fine-tuning: the whole encoder plus a linear classifier, trained with cross-entropy on a labelled
// subset of the training split, data-parallel over the ranks, scored on the test split.

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/data/dataset.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder.h"

namespace selfsup {

/// The data of one fine-tuning run.
struct FinetuneData {
  const Dataset* train = nullptr;  // the labelled samples come from here
  std::vector<int64_t> labelled;   // indices into `train`, the same on every rank
  const Dataset* test = nullptr;   // scored on every sample
};

struct FinetuneResult {
  double top1 = 0.0;           // test accuracy, percent
  std::vector<double> losses;  // mean cross-entropy over the global batch, per step
  int64_t steps = 0;           // optimizer steps run
  int64_t global_batch = 0;    // images per step, all ranks together
  double epochs = 0.0;         // passes over the labelled subset: steps * global_batch / subset
  double seconds = 0.0;        // wall time of training and scoring
  std::shared_ptr<Encoder> encoder;       // the fine-tuned encoder
  torch::nn::Linear classifier{nullptr};  // its classifier: [feature_dim] -> [num_classes]
};

/// Fine-tunes a copy of `pretrained` (left unchanged), or, when it is null, a random
/// initialisation of `config.model`'s encoder (supervised training from scratch), with a linear
/// classifier, following `config.transfer.finetune`. Collective: every rank calls it with the same
/// arguments; each rank trains on its slice of every global batch (the DistributedSampler over
/// `data.labelled`), gradients are averaged over ranks, and batch norm follows `model.batch_norm`
/// ("sync": statistics of the global batch, so that the run does not depend on the world size).
/// Views are augmented with a random resized crop and a horizontal flip (finetune.augment) keyed by
/// (seed, epoch, sample index), as in pretraining. Every rank returns the same result.
FinetuneResult finetune(const Config& config, const FinetuneData& data, const Encoder* pretrained,
                        Communicator& comm);

}  // namespace selfsup
