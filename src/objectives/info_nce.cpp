#include "selfsup/objectives/info_nce.h"

#include <cmath>
#include <limits>

#include "info_nce_shapes.h"
#include "selfsup/core/error.h"

namespace selfsup {
namespace detail {

InfoNceShapes check_info_nce_inputs(const torch::Tensor& local, const torch::Tensor& global,
                                    int64_t offset, const InfoNceOptions& options,
                                    const char* who) {
  SELFSUP_CHECK(local.dim() == 3 && global.dim() == 3, who, " expects [B, V, D] projections, got ",
                local.sizes(), " and ", global.sizes());
  InfoNceShapes shapes;
  shapes.b_local = local.size(0);
  shapes.views = local.size(1);
  shapes.dim = local.size(2);
  shapes.b_global = global.size(0);
  SELFSUP_CHECK(global.size(1) == shapes.views && global.size(2) == shapes.dim, who, ": local ",
                local.sizes(), " and global ", global.sizes(), " disagree");
  SELFSUP_CHECK(shapes.views >= 2, who, " needs at least 2 views per image, got ", shapes.views);
  SELFSUP_CHECK(offset >= 0 && offset + shapes.b_local <= shapes.b_global, who, ": offset ", offset,
                " out of range for B_local ", shapes.b_local, " and B_global ", shapes.b_global);
  const auto& queue = options.queue();
  if (queue.defined()) {
    SELFSUP_CHECK(queue.dim() == 2 && (queue.size(0) == 0 || queue.size(1) == shapes.dim), who,
                  ": the queue must be [K, D] with D = ", shapes.dim, ", got ", queue.sizes());
    SELFSUP_CHECK(queue.size(0) == 0 || (queue.scalar_type() == global.scalar_type() &&
                                         queue.device() == global.device()),
                  who, ": the queue (", queue.scalar_type(), " on ", queue.device(),
                  ") must have the dtype and device of the projections (", global.scalar_type(),
                  " on ", global.device(), ")");
    shapes.queue_size = queue.size(0);
  }
  SELFSUP_CHECK(options.block_size() >= 1, who, ": block_size must be >= 1, got ",
                options.block_size());
  shapes.rows = shapes.b_local * shapes.views;
  shapes.cols = shapes.b_global * shapes.views;
  return shapes;
}

torch::Tensor queue_or_empty(const InfoNceOptions& options, const torch::Tensor& like,
                             int64_t dim) {
  const auto& queue = options.queue();
  if (queue.defined() && queue.size(0) > 0) return queue.detach();
  return torch::empty({0, dim}, like.options().requires_grad(false));
}

}  // namespace detail

InfoNceResult info_nce(const torch::Tensor& local, const torch::Tensor& global, int64_t offset,
                       const InfoNceOptions& options) {
  const auto shapes = detail::check_info_nce_inputs(local, global, offset, options, "info_nce");
  const int64_t views = shapes.views, dim = shapes.dim;
  const auto queue = detail::queue_or_empty(options, global, dim);  // [K, D], no gradient

  const int64_t rows = shapes.rows, cols = shapes.cols, queue_size = shapes.queue_size;
  const int64_t all_cols = cols + queue_size;
  const auto anchors = local.reshape({rows, dim});  // row r = b*V + v
  // Column c = b*V + v for c < cols, then the queue (negatives only): [cols + K, D].
  const auto columns = global.reshape({cols, dim});
  const auto candidates = queue_size > 0 ? torch::cat({columns, queue}) : columns;
  const auto cosine = anchors.matmul(candidates.t());  // [rows, cols + K]
  auto logits = cosine / options.temperature();

  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(local.device());
  // Global column of each anchor itself: (offset + b)*V + v = offset*V + r.
  const auto self_col = torch::arange(rows, long_opts) + offset * views;  // [rows]
  // Positives: the other V-1 views of the same image, [rows, V-1].
  const auto image_first_col = torch::div(self_col, views, "floor") * views;  // [rows]
  const auto view_of_row = self_col % views;                                  // [rows]
  auto other = torch::arange(views - 1, long_opts).unsqueeze(0).expand({rows, views - 1});
  other = other + (other >= view_of_row.unsqueeze(1)).to(torch::kLong);  // skip own view
  const auto pos_cols = image_first_col.unsqueeze(1) + other;            // [rows, V-1]

  // Per [row, column]: the anchor itself, its positives, and (without batch negatives) the other
  // images' columns are excluded from the negatives; queue columns are always negatives.
  const auto col = torch::arange(all_cols, long_opts).unsqueeze(0);  // [1, cols + K]
  const auto in_batch = col < cols;
  const auto self_mask = col == self_col.unsqueeze(1);  // [rows, cols + K]
  const auto same_image = in_batch & (torch::div(col, views, "floor") ==
                                      torch::div(self_col, views, "floor").unsqueeze(1));
  auto excluded = self_mask;
  if (!options.batch_negatives()) excluded = excluded | (in_batch & same_image.logical_not());
  const auto negative = (excluded | same_image).logical_not();
  const auto masked = logits.masked_fill(excluded, -std::numeric_limits<double>::infinity());
  const auto log_normaliser = torch::logsumexp(masked, 1);      // [rows]
  const auto pos_logits = logits.gather(1, pos_cols);           // [rows, V-1]
  const auto per_anchor = log_normaliser - pos_logits.mean(1);  // [rows]

  InfoNceResult result;
  result.loss = per_anchor.mean();
  result.candidates_per_anchor = options.batch_negatives() ? all_cols - 1 : views - 1 + queue_size;
  {
    torch::NoGradGuard no_grad;
    const auto cos = cosine.detach().to(torch::kDouble);
    const auto pos_cos = cos.gather(1, pos_cols);
    const int64_t n_pos = rows * (views - 1);
    const int64_t n_neg = negative.sum().item<int64_t>();
    result.pos_sim = pos_cos.sum().item<double>() / double(n_pos);
    result.neg_sim =
        n_neg > 0 ? cos.masked_fill(negative.logical_not(), 0.0).sum().item<double>() / n_neg : 0.0;
    // Unit vectors: |zi - zj|^2 = 2 - 2 cos.
    result.alignment = 2.0 - 2.0 * result.pos_sim;
    // Uniformity over the pairs of different images of the global batch (the queue, whose keys
    // come from older encoders, is left out: the uniformity describes the current embedding).
    const auto other_image = in_batch & same_image.logical_not();
    const int64_t n_pairs = rows * (cols - views);
    const auto kernel = torch::exp(4.0 * cos - 4.0).masked_fill(other_image.logical_not(), 0.0);
    result.uniformity = n_pairs > 0 ? std::log(kernel.sum().item<double>() / double(n_pairs)) : 0.0;
  }
  return result;
}

}  // namespace selfsup
