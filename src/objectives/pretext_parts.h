#pragma once
// Private to src/objectives/: the pieces several pretext tasks share, so that each task's file
// holds only what is its own.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/gradient_reducer.h"
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

/// The step of a task's own second network (the GAN's generator, the in-painting discriminator),
/// once its loss has been back-propagated: `reducer` averages the gradients of `parameters` over
/// ranks; a non-finite average (the same on every rank, so every rank decides alike) skips the
/// step with the warning "<who>'s gradient is not finite; its step is skipped"; otherwise
/// `optimizer` steps at `lr`. Returns whether it stepped.
bool step_own_network(GradientReducer& reducer, const std::vector<torch::Tensor>& parameters,
                      torch::optim::Optimizer& optimizer, double lr, const std::string& who);

}  // namespace selfsup
