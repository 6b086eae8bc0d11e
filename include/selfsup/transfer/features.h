#pragma once
// Frozen-encoder features and labelled subsets for the transfer stage. Features come from the
// encoder alone (the projection head is dropped), on un-augmented images normalised like training
// views, with batch norm on its running statistics.

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/data/dataset.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder.h"
#include "selfsup/transfer/probes.h"

namespace selfsup {

/// Which samples to extract features of, and how.
struct ExtractOptions {
  explicit ExtractOptions(AugmentConfig augment) : augment(std::move(augment)) {}
  AugmentConfig augment;         // only the normalisation (mean, std) is used
  int64_t batch_size = 1024;     // images per forward pass (per rank)
  std::vector<int64_t> indices;  // dataset indices, in output order; empty: every sample
};

/// Features [N, D] and labels [N] of the samples named by `options`, on this rank alone.
FeatureSet extract_features(Encoder& encoder, const Dataset& dataset,
                            const ExtractOptions& options);

/// The same features computed in parallel (collective: every rank calls it with the same
/// arguments and receives the whole result):
///   1. the N requested samples are cut into `size` contiguous shards of ceil(N / size) rows (the
///      last ones shorter or empty), and each rank extracts its own shard;
///   2. each rank pads its shard to ceil(N / size) rows, since a collective needs the same shape on
///      every rank, and one all_gather each brings features and labels to every rank;
///   3. only the last non-empty shard and the empty ones carry padding, so the first N gathered
///      rows are the N samples in order.
/// Equal to extract_features on one rank up to the kernels' floating-point behaviour on shards.
FeatureSet extract_features_distributed(Encoder& encoder, const Dataset& dataset,
                                        const ExtractOptions& options, Communicator& comm);

/// Raw normalised pixels of the samples named by `options`, flattened: [N, C*H*W].
FeatureSet pixel_features(const Dataset& dataset, const ExtractOptions& options);

/// Every sample of `dataset`, this rank alone (the forms of the first transfer stage).
inline FeatureSet extract_features(Encoder& encoder, const Dataset& dataset,
                                   const AugmentConfig& augment, int64_t batch_size) {
  ExtractOptions options(augment);
  options.batch_size = batch_size;
  return extract_features(encoder, dataset, options);
}
inline FeatureSet pixel_features(const Dataset& dataset, const AugmentConfig& augment) {
  return pixel_features(dataset, ExtractOptions(augment));
}

/// Labels of every sample of `dataset`: [N] int64 (decodes every sample once).
torch::Tensor dataset_labels(const Dataset& dataset);

/// A class-balanced subset of the samples with `labels` ([N] int64 in [0, num_classes)): the same
/// number, max(1, round(fraction * N / num_classes)), of every class (all of a class that has
/// fewer), and every sample when fraction is 1. Each class's samples are taken in an order drawn
/// from (seed, class) alone, so the subset is a function of (labels, fraction, seed) - the same on
/// every rank - and a smaller fraction's subset is contained in a larger one's. Returns dataset
/// indices in increasing order.
std::vector<int64_t> class_balanced_subset(const torch::Tensor& labels, int64_t num_classes,
                                           double fraction, uint64_t seed);

}  // namespace selfsup
