#include "selfsup/objectives/info_nce.h"

#include <cmath>
#include <limits>

#include "selfsup/core/error.h"

namespace selfsup {

InfoNceResult info_nce(const torch::Tensor& local, const torch::Tensor& global, int64_t offset,
                       const InfoNceOptions& options) {
  SELFSUP_CHECK(local.dim() == 3 && global.dim() == 3,
                "info_nce expects [B, V, D] projections, got ", local.sizes(), " and ",
                global.sizes());
  const int64_t b_local = local.size(0), views = local.size(1), dim = local.size(2);
  const int64_t b_global = global.size(0);
  SELFSUP_CHECK(global.size(1) == views && global.size(2) == dim, "info_nce: local ", local.sizes(),
                " and global ", global.sizes(), " disagree");
  SELFSUP_CHECK(views >= 2, "info_nce needs at least 2 views per image, got ", views);
  SELFSUP_CHECK(offset >= 0 && offset + b_local <= b_global, "info_nce: offset ", offset,
                " out of range for B_local ", b_local, " and B_global ", b_global);

  const int64_t rows = b_local * views, cols = b_global * views;
  const auto anchors = local.reshape({rows, dim});      // row r = b*V + v
  const auto candidates = global.reshape({cols, dim});  // col c = b*V + v
  const auto cosine = anchors.matmul(candidates.t());   // [rows, cols]
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

  const auto self_mask =
      torch::zeros({rows, cols}, torch::TensorOptions().dtype(torch::kBool).device(local.device()))
          .scatter_(1, self_col.unsqueeze(1), true);
  const auto masked = logits.masked_fill(self_mask, -std::numeric_limits<double>::infinity());
  const auto log_normaliser = torch::logsumexp(masked, 1);      // [rows]
  const auto pos_logits = logits.gather(1, pos_cols);           // [rows, V-1]
  const auto per_anchor = log_normaliser - pos_logits.mean(1);  // [rows]

  InfoNceResult result;
  result.loss = per_anchor.mean();
  result.candidates_per_anchor = cols - 1;
  {
    torch::NoGradGuard no_grad;
    const auto cos = cosine.detach().to(torch::kDouble);
    const auto pos_cos = cos.gather(1, pos_cols);
    const double pos_sum = pos_cos.sum().item<double>();
    const double self_sum = cos.gather(1, self_col.unsqueeze(1)).sum().item<double>();
    const double total = cos.sum().item<double>();
    const int64_t n_pos = rows * (views - 1);
    const int64_t n_neg = rows * (cols - views);
    result.pos_sim = pos_sum / double(n_pos);
    result.neg_sim = n_neg > 0 ? (total - self_sum - pos_sum) / double(n_neg) : 0.0;
    // Unit vectors: |zi - zj|^2 = 2 - 2 cos.
    result.alignment = 2.0 - 2.0 * result.pos_sim;
    // Uniformity over pairs of different images (positives and the anchor itself excluded).
    const auto kernel = torch::exp(4.0 * cos - 4.0).masked_fill(self_mask, 0.0);
    const double positive_kernel = torch::exp(4.0 * pos_cos - 4.0).sum().item<double>();
    result.uniformity =
        n_neg > 0 ? std::log((kernel.sum().item<double>() - positive_kernel) / double(n_neg)) : 0.0;
  }
  return result;
}

}  // namespace selfsup
