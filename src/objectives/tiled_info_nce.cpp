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
  torch::Tensor excluded;     // [rows, n] bool: not a candidate (the anchor's own column; without
                              // batch negatives also the other images' columns)
  torch::Tensor positive;     // [rows, n] bool: another view of the anchor's image
  torch::Tensor negative;     // [rows, n] bool: a candidate that is not a positive
  torch::Tensor other_image;  // [rows, n] bool: a view of another image (the uniformity pairs)
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
  masks.other_image = same_image.logical_not();
  masks.positive = same_image & self.logical_not();
  masks.excluded = batch_negatives ? self : masks.other_image | self;
  masks.negative = (masks.excluded | masks.positive).logical_not();
  return masks;
}

torch::Tensor self_columns(int64_t rows, int64_t offset, int64_t views,
                           const torch::Device& device) {
  return torch::arange(rows, torch::TensorOptions().dtype(torch::kLong).device(device)) +
         offset * views;  // [rows]
}

// The largest row norm of each of `tensors` ([n, D] each; 0 when empty), in one device-to-host
// copy.
double max_norm_product(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c) {
  auto largest = [](const torch::Tensor& x) {
    return x.size(0) == 0 ? torch::zeros({}, x.options()) : x.norm(2, 1).max();
  };
  const auto norms = torch::stack({largest(a), torch::maximum(largest(b), largest(c))}).cpu();
  return norms[0].item<double>() * norms[1].item<double>();
}

// When no logit can exceed this in magnitude, exp(logit) neither overflows nor underflows in
// float32 (e^30 is about 1e13), so the log-sum-exp needs no running maximum: the sum of exp(logit)
// is taken as is. For unit vectors the bound is 1/T, so every temperature from 1/30 up takes this
// path; smaller ones (or longer vectors) take the online-maximum path.
constexpr double kFixedShiftBound = 30.0;

// Statistics accumulated by the forward pass, in this order (float64 sums over this rank's rows).
enum Statistic : int64_t {
  kPositiveCosine = 0,
  kNegativeCosine,    // over the candidates that are negatives (queue included)
  kUniformityKernel,  // exp(4 cos - 4) over the pairs of different images of the global batch
  kNumStatistics
};

// The loss of info_nce, streamed over column blocks. Inputs: anchors [rows, D], candidates
// [cols, D], queue [K, D] (no gradient). Outputs: the loss (scalar) and the statistics (float64
// [kNumStatistics], not differentiable).
//
// Per queue block the work is one matrix product and two passes over its [rows, n] logits
// (exponentiate in place, sum by row) in forward, and two matrix products and one pass (the
// exponential; the shift is the product's bias) in backward: the queue needs no masks, and the
// sum of its cosines is (sum of anchors) . (sum of the block), without the matrix.
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
    const auto scaled = anchors / temperature;  // logits = scaled . column: no division per block
    // (float32 and float64 only: e^30 overflows float16 and bfloat16's precision is too coarse.)
    const bool wide_float =
        anchors.scalar_type() == torch::kFloat || anchors.scalar_type() == torch::kDouble;
    const bool fixed_shift =
        wide_float && max_norm_product(scaled, candidates, queue) <= kFixedShiftBound;
    // Per row: the log-sum-exp over every candidate (a running maximum and the sum of
    // exp(logit - maximum); with a fixed shift the maximum stays 0), and the sum of its positive
    // logits.
    auto running_max = fixed_shift ? torch::zeros({rows}, anchors.options())
                                   : torch::full({rows}, -kInf, anchors.options());
    auto running_sum = torch::zeros({rows}, anchors.options());
    auto positive_logits = torch::zeros({rows}, anchors.options());
    auto statistics = torch::zeros({kNumStatistics}, anchors.options().dtype(torch::kDouble));
    const auto anchor_sum = anchors.to(torch::kDouble).sum(0);  // [D]

    for_each_block(candidates, queue, block_size, [&](const ColumnBlock& block) {
      auto logits = scaled.matmul(block.vectors.t());  // [rows, n]
      if (block.from_queue) {
        // Every queue column is a negative of every anchor: sum_r sum_c a_r . c = (sum_r a_r) .
        // (sum_c c).
        statistics[kNegativeCosine] += anchor_sum.dot(block.vectors.to(torch::kDouble).sum(0));
      } else {
        // The batch's columns (a few thousand at most): masks and statistics in float64, as the
        // dense path.
        const auto masks = block_masks(self_col, views, batch_negatives, block);
        const auto cos = (logits * temperature).to(torch::kDouble);
        positive_logits += logits.masked_fill(masks.positive.logical_not(), 0.0).sum(1);
        statistics[kPositiveCosine] += cos.masked_fill(masks.positive.logical_not(), 0.0).sum();
        statistics[kNegativeCosine] += cos.masked_fill(masks.negative.logical_not(), 0.0).sum();
        // |zi - zj|^2 = 2 - 2 cos for unit vectors: exp(-2 |zi - zj|^2) = exp(4 cos - 4).
        statistics[kUniformityKernel] +=
            torch::exp(4.0 * cos - 4.0).masked_fill(masks.other_image.logical_not(), 0.0).sum();
        logits.masked_fill_(masks.excluded, -kInf);
      }
      if (fixed_shift) {
        running_sum += logits.exp_().sum(1);
        return;
      }
      const auto block_max = std::get<0>(logits.max(1));  // [rows]
      const auto new_max = torch::maximum(running_max, block_max);
      // A row that has seen only excluded columns has maximum -inf: shift by 0 there, so that the
      // exponentials give 0 rather than NaN.
      const auto shift = new_max.masked_fill(new_max == -kInf, 0.0);
      running_sum = running_sum * torch::exp(running_max - shift) +
                    logits.sub_(shift.unsqueeze(1)).exp_().sum(1);
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

  // With p = softmax over the candidates and P the positive indicator,
  //   d loss / d logit[r, c] = (p[r, c] - P[r, c] / (V - 1)) / rows,   logit = <a_r, c_c> / T,
  // so grad_anchors = G C / T and grad_candidates = G^T A / T, recomputed block by block (the
  // constant factor applied once at the end).
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
    const auto scaled = anchors / temperature;
    const auto minus_log_normaliser = log_normaliser.neg().unsqueeze(1);  // [rows, 1]

    auto grad_anchors = torch::zeros_like(anchors);  // [rows, D]
    auto grad_candidates =
        grad_for_candidates ? torch::zeros_like(candidates) : torch::Tensor();  // [cols, D]
    for_each_block(candidates, queue, block_size, [&](const ColumnBlock& block) {
      // logit - log-normaliser in one product (the shift is its bias), then the softmax in place.
      auto grad_logits = torch::addmm(minus_log_normaliser, scaled, block.vectors.t());
      BlockMasks masks;
      if (!block.from_queue) {
        masks = block_masks(self_col, views, batch_negatives, block);
        grad_logits.masked_fill_(masks.excluded, -kInf);
      }
      grad_logits.exp_();  // [rows, n]
      if (!block.from_queue)
        grad_logits -= masks.positive.to(grad_logits.dtype()) / double(views - 1);
      grad_anchors.addmm_(grad_logits, block.vectors);
      if (!block.from_queue && grad_for_candidates) {
        grad_candidates.narrow(0, block.first_col, block.vectors.size(0))
            .copy_(grad_logits.t().matmul(anchors));
      }
    });
    const auto scale = grads[0] / (double(rows) * temperature);  // d loss_out / d loss, / rows*T
    grad_anchors.mul_(scale);
    if (grad_for_candidates) grad_candidates.mul_(scale);
    // Inputs: anchors, candidates, queue (no gradient), offset, views, temperature, block_size,
    // batch_negatives.
    return {grad_anchors,    grad_candidates, torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
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
  const int64_t n_pairs = rows * (cols - views);  // pairs of different images in the batch
  result.pos_sim = sums[kPositiveCosine] / double(n_pos);
  result.neg_sim = n_neg > 0 ? sums[kNegativeCosine] / double(n_neg) : 0.0;
  result.alignment = 2.0 - 2.0 * result.pos_sim;
  result.uniformity = n_pairs > 0 ? std::log(sums[kUniformityKernel] / double(n_pairs)) : 0.0;
  return result;
}

}  // namespace selfsup
