#pragma once
// Downstream probes on frozen features: a linear probe (multinomial logistic regression on
// standardised features) and a weighted kNN classifier (cosine similarity).

#include <torch/torch.h>

#include <cstdint>

#include "selfsup/core/config.h"

namespace selfsup {

/// Features and labels of one split.
struct FeatureSet {
  torch::Tensor features;  // [N, D] float32
  torch::Tensor labels;    // [N] int64 in [0, num_classes)
};

struct ProbeResult {
  double top1 = 0.0;        // test accuracy, percent
  double train_top1 = 0.0;  // accuracy on the training features, percent
};

/// Trains a multinomial logistic regression on `train` (features standardised with the training
/// split's mean and standard deviation) and scores it on `test`. Deterministic for a given seed.
ProbeResult linear_probe(const FeatureSet& train, const FeatureSet& test, int64_t num_classes,
                         const LinearProbeConfig& config, uint64_t seed);

/// Weighted kNN: each test feature votes with its k most cosine-similar training features, weighted
/// by exp(similarity / temperature). Returns test top-1 accuracy in percent.
double knn_top1(const FeatureSet& train, const FeatureSet& test, int64_t num_classes,
                const KnnConfig& config);

}  // namespace selfsup
