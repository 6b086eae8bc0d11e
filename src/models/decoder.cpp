#include "selfsup/models/decoder.h"

#include <string>

#include "selfsup/core/error.h"

namespace selfsup {

ConvDecoderImpl::ConvDecoderImpl(const ConvDecoderOptions& options, const NormFactory& norm)
    : options_(options) {
  SELFSUP_CHECK(options.side() >= 2, "decoder: output side must be at least 2 px, got ",
                options.side());
  int64_t stages = 2;
  while ((options.side() + (int64_t(1) << stages) - 1) >> stages > 8) ++stages;
  start_side_ = (options.side() + (int64_t(1) << stages) - 1) >> stages;
  const int64_t width = options.width();
  fc =
      register_module("fc", torch::nn::Linear(options.in_dim(), width * start_side_ * start_side_));
  fc_norm = norm(width, /*spatial=*/true);
  register_module("fc_norm", fc_norm.ptr());
  for (int64_t i = 0; i < stages; ++i) {
    const auto index = std::to_string(i);
    convs_.push_back(register_module(
        "conv" + index,
        torch::nn::Conv2d(torch::nn::Conv2dOptions(width, width, 3).padding(1).bias(false))));
    norms_.push_back(norm(width, /*spatial=*/true));
    register_module("norm" + index, norms_.back().ptr());
    if (options.cond_dim() > 0)
      conds_.push_back(
          register_module("cond" + index, torch::nn::Linear(options.cond_dim(), width)));
  }
  out = register_module(
      "out",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(width, options.out_channels(), 3).padding(1)));
}

torch::Tensor ConvDecoderImpl::forward(const torch::Tensor& x, const torch::Tensor& cond) {
  SELFSUP_CHECK(x.dim() == 2 && x.size(1) == options_.in_dim(), "decoder: expected [B, ",
                options_.in_dim(), "] features, got ", x.sizes());
  SELFSUP_CHECK(options_.cond_dim() == 0 || (cond.defined() && cond.size(0) == x.size(0)),
                "decoder: a conditioning vector [B, ", options_.cond_dim(), "] is required");
  namespace F = torch::nn::functional;
  // [B, width, s0, s0]
  auto h = fc(x).view({x.size(0), options_.width(), start_side_, start_side_});
  h = torch::relu(fc_norm.forward(h));
  for (size_t i = 0; i < convs_.size(); ++i) {
    h = F::interpolate(h, F::InterpolateFuncOptions()
                              .scale_factor(std::vector<double>{2.0, 2.0})
                              .mode(torch::kNearest));
    h = norms_[i].forward(convs_[i](h));
    // The condition shifts every channel of the stage after the normalisation ([B, width] ->
    // [B, width, 1, 1]): before it, batch norm would remove the shift's batch mean.
    if (!conds_.empty()) h = h + conds_[i](cond).unsqueeze(-1).unsqueeze(-1);
    h = torch::relu(h);
  }
  if (h.size(-1) != options_.side()) {
    h = F::interpolate(h, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{options_.side(), options_.side()})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  return out(h);  // [B, out_channels, side, side]
}

}  // namespace selfsup
