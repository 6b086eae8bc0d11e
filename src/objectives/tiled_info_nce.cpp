#include "selfsup/objectives/tiled_info_nce.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "info_nce_shapes.h"
#include "selfsup/core/error.h"

namespace selfsup {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// One block of columns: its vectors and where they sit among the global columns.
struct ColumnBlock {
  torch::Tensor vectors;  // [n, D], a view into the candidates or the queue
  int64_t first_col;      // global column of vectors[0]: gathered columns first, then the queue
  bool from_queue;        // queue columns are negatives only: never positives, never masked
};

// Calls `visit(block)` for the gathered columns [cols, D], then for the queue [K, D], in blocks of
// at most `block_size` columns (a block never spans both).
template <typename Visit>
void for_each_block(const torch::Tensor& candidates, const torch::Tensor& queue, int64_t block_size,
                    Visit&& visit) {
  const int64_t cols = candidates.size(0);
  for (int64_t start = 0; start < cols; start += block_size) {
    visit(ColumnBlock{candidates.narrow(0, start, std::min(block_size, cols - start)), start,
                      /*from_queue=*/false});
  }
  const int64_t queue_size = queue.size(0);
  for (int64_t start = 0; start < queue_size; start += block_size) {
    visit(ColumnBlock{queue.narrow(0, start, std::min(block_size, queue_size - start)),
                      cols + start, /*from_queue=*/true});
  }
}

// The masks of one block of gathered columns, at global indices.
struct BlockMasks {
  torch::Tensor excluded;  // [rows, n] bool: not a candidate (the anchor's own column; without
                           // batch negatives also the other images' columns)
  torch::Tensor positive;  // [rows, n] bool: another view of the anchor's image
  torch::Tensor negative;  // [rows, n] bool: a candidate that is not a positive
};

// self_col: [rows] global column of each anchor (offset*V + r); an image's views are the columns
// image*V ... image*V + V-1.
BlockMasks block_masks(const torch::Tensor& self_col, int64_t views, bool batch_negatives,
                       const ColumnBlock& block) {
  const int64_t n = block.vectors.size(0);
  const auto col = torch::arange(block.first_col, block.first_col + n, self_col.options());
  BlockMasks masks;
  const auto self = col.unsqueeze(0) == self_col.unsqueeze(1);  // [rows, n]
  const auto same_image = torch::div(col, views, "floor").unsqueeze(0) ==
                          torch::div(self_col, views, "floor").unsqueeze(1);
  masks.positive = same_image & self.logical_not();
  masks.excluded = batch_negatives ? self : same_image.logical_not() | self;
  masks.negative = (masks.excluded | masks.positive).logical_not();
  return masks;
}

torch::Tensor self_columns(int64_t rows, int64_t offset, int64_t views,
                           const torch::Device& device) {
  return torch::arange(rows, torch::TensorOptions().dtype(torch::kLong).device(device)) +
         offset * views;  // [rows]
}

// Statistics accumulated by the forward pass, in this order (float64 sums over this rank's rows).
enum Statistic : int64_t { kPositiveCosine = 0, kNegativeCosine, kNegativeKernel, kNumStatistics };

// The loss of info_nce, streamed over column blocks. Inputs: anchors [rows, D], candidates
// [cols, D], queue [K, D] (no gradient). Outputs: the loss (scalar) and the statistics (float64
// [kNumStatistics], not differentiable).
class TiledInfoNce : public torch::autograd::Function<TiledInfoNce> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const torch::Tensor& anchors,
                                                const torch::Tensor& candidates,
                                                const torch::Tensor& queue, int64_t offset,
                                                int64_t views, double temperature,
                                                int64_t block_size, bool batch_negatives) {
    const int64_t rows = anchors.size(0);
    const auto self_col = self_columns(rows, offset, views, anchors.device());
    // Per row: the online log-sum-exp over every column but its own (running maximum, and the sum
    // of exp(logit - maximum)), and the sum of its positive logits.
    auto running_max = torch::full({rows}, -kInf, anchors.options());
    auto running_sum = torch::zeros({rows}, anchors.options());
    auto positive_logits = torch::zeros({rows}, anchors.options());
    auto statistics = torch::zeros({kNumStatistics}, anchors.options().dtype(torch::kDouble));

    for_each_block(candidates, queue, block_size, [&](const ColumnBlock& block) {
      const auto cosine = anchors.matmul(block.vectors.t());  // [rows, n]
      auto logits = cosine / temperature;                     // [rows, n]
      // Statistics in float64, as the dense path: |zi - zj|^2 = 2 - 2 cos for unit vectors, so the
      // uniformity kernel exp(-2 |zi - zj|^2) is exp(4 cos - 4).
      const auto cos = cosine.to(torch::kDouble);
      const auto kernel = torch::exp(4.0 * cos - 4.0);
      if (block.from_queue) {
        statistics[kNegativeCosine] += cos.sum();
        statistics[kNegativeKernel] += kernel.sum();
      } else {
        const auto masks = block_masks(self_col, views, batch_negatives, block);
        const auto not_negative = masks.negative.logical_not();
        positive_logits += logits.masked_fill(masks.positive.logical_not(), 0.0).sum(1);
        statistics[kPositiveCosine] += cos.masked_fill(masks.positive.logical_not(), 0.0).sum();
        statistics[kNegativeCosine] += cos.masked_fill(not_negative, 0.0).sum();
        statistics[kNegativeKernel] += kernel.masked_fill(not_negative, 0.0).sum();
        logits = logits.masked_fill(masks.excluded, -kInf);
      }
      const auto block_max = std::get<0>(logits.max(1));  // [rows]
      const auto new_max = torch::maximum(running_max, block_max);
      // A row that has seen only its own (masked) column has maximum -inf: shift by 0 there, so
      // that the exponentials give 0 rather than NaN.
      const auto shift = new_max.masked_fill(new_max == -kInf, 0.0);
      running_sum = running_sum * torch::exp(running_max - shift) +
                    torch::exp(logits - shift.unsqueeze(1)).sum(1);
      running_max = new_max;
    });

    const auto log_normaliser = running_max + torch::log(running_sum);  // [rows]
    const auto loss = (log_normaliser - positive_logits / double(views - 1)).mean();
    ctx->save_for_backward({anchors, candidates, queue, log_normaliser});
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["views"] = views;
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["block_size"] = block_size;
    ctx->saved_data["batch_negatives"] = batch_negatives;
    ctx->mark_non_differentiable({statistics});
    return {loss, statistics};
  }

  // With p = softmax over the unmasked columns and P the positive indicator,
  //   d loss / d logit[r, c] = (p[r, c] - P[r, c] / (V - 1)) / rows,   logit = <a_r, c_c> / T,
  // so grad_anchors = G C / T and grad_candidates = G^T A / T, recomputed block by block.
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &anchors = saved[0], &candidates = saved[1], &queue = saved[2];
    const auto& log_normaliser = saved[3];
    const int64_t offset = ctx->saved_data["offset"].toInt();
    const int64_t views = ctx->saved_data["views"].toInt();
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const int64_t block_size = ctx->saved_data["block_size"].toInt();
    const bool batch_negatives = ctx->saved_data["batch_negatives"].toBool();
    // Keys of a momentum encoder get no gradient: skip their matrix product.
    const bool grad_for_candidates = ctx->needs_input_grad(1);
    const int64_t rows = anchors.size(0);
    const auto self_col = self_columns(rows, offset, views, anchors.device());
    const auto scale = grads[0] / (double(rows) * temperature);  // d loss_out / d loss, over rows*T

    auto grad_anchors = torch::zeros_like(anchors);  // [rows, D]
    auto grad_candidates =
        grad_for_candidates ? torch::zeros_like(candidates) : torch::Tensor();  // [cols, D]
    for_each_block(candidates, queue, block_size, [&](const ColumnBlock& block) {
      auto logits = anchors.matmul(block.vectors.t()) / temperature;  // [rows, n]
      BlockMasks masks;
      if (!block.from_queue) {
        masks = block_masks(self_col, views, batch_negatives, block);
        logits = logits.masked_fill(masks.excluded, -kInf);
      }
      auto grad_logits = torch::exp(logits - log_normaliser.unsqueeze(1));  // softmax, [rows, n]
      if (!block.from_queue)
        grad_logits -= masks.positive.to(grad_logits.dtype()) / double(views - 1);
      grad_logits *= scale;
      grad_anchors.addmm_(grad_logits, block.vectors);
      if (!block.from_queue && grad_for_candidates) {
        grad_candidates.narrow(0, block.first_col, block.vectors.size(0))
            .copy_(grad_logits.t().matmul(anchors));
      }
    });
    // Inputs: anchors, candidates, queue (no gradient), offset, views, temperature, block_size,
    // batch_negatives.
    return {grad_anchors,    grad_for_candidates ? grad_candidates : torch::Tensor(),
            torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

InfoNceResult info_nce_tiled(const torch::Tensor& local, const torch::Tensor& global,
                             int64_t offset, const InfoNceOptions& options) {
  const auto shapes =
      detail::check_info_nce_inputs(local, global, offset, options, "info_nce_tiled");
  const int64_t views = shapes.views, rows = shapes.rows, cols = shapes.cols;
  const auto queue = detail::queue_or_empty(options, global, shapes.dim);  // [K, D], no gradient
  const auto anchors = local.reshape({rows, shapes.dim});                  // row r = b*V + v
  const auto candidates = global.reshape({cols, shapes.dim});              // col c = b*V + v
  const auto outputs =
      TiledInfoNce::apply(anchors, candidates, queue, offset, views, options.temperature(),
                          options.block_size(), options.batch_negatives());

  InfoNceResult result;
  result.loss = outputs[0];
  result.candidates_per_anchor =
      options.batch_negatives() ? cols + shapes.queue_size - 1 : views - 1 + shapes.queue_size;
  const auto statistics = outputs[1].cpu();  // one device-to-host copy
  const auto sums = statistics.accessor<double, 1>();
  const int64_t n_pos = rows * (views - 1);
  const int64_t n_neg = rows * (result.candidates_per_anchor - (views - 1));
  result.pos_sim = sums[kPositiveCosine] / double(n_pos);
  result.neg_sim = n_neg > 0 ? sums[kNegativeCosine] / double(n_neg) : 0.0;
  result.alignment = 2.0 - 2.0 * result.pos_sim;
  result.uniformity = n_neg > 0 ? std::log(sums[kNegativeKernel] / double(n_neg)) : 0.0;
  return result;
}

}  // namespace selfsup
