#pragma once
// Private to src/objectives/: the pieces several pretext tasks share, so that each task's file
// holds only what is its own.

#include <torch/torch.h>

#include <cstdint>

#include "selfsup/core/config.h"
#include "selfsup/models/decoder.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// The options of an encoder-decoder task's decoder: the encoder's `feature_dim` features back to
/// `out_channels` x shape.side x shape.side, pretext.decoder_width channels wide.
ConvDecoderOptions image_decoder_options(const Config& config, const PretextShape& shape,
                                         int64_t feature_dim, int64_t out_channels);

/// A classification task's output: cross-entropy of `logits` [N, classes] against `labels` [N],
/// and the "accuracy" metric.
ObjectiveOutput classification_output(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace selfsup
