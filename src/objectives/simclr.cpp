#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/info_nce.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/objectives/tiled_info_nce.h"

namespace selfsup {

SimClrObjective::SimClrObjective(std::shared_ptr<Encoder> encoder, const ModelConfig& model,
                                 const LossConfig& loss, std::shared_ptr<Communicator> comm)
    : encoder_(std::move(encoder)), loss_(loss), comm_(std::move(comm)) {
  register_module("encoder", encoder_);
  head_ = register_module("head", ProjectionHead(encoder_->feature_dim(), model.head_hidden,
                                                 model.proj_dim, make_norm_factory(model, comm_)));
}

ObjectiveOutput SimClrObjective::compute(const torch::Tensor& views) {
  const int64_t num_views = views.size(0), b_local = views.size(1);
  // All views go through the encoder in one batch: [V*B_local, C, H, W] -> [V*B_local, D].
  auto z = head_->forward(encoder_->forward(views.flatten(0, 1)));
  z = torch::nn::functional::normalize(z, torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto local = z.view({num_views, b_local, -1}).transpose(0, 1).contiguous();  // [B, V, D]
  const auto global = all_gather_with_grad(local, *comm_);  // [B_global, V, D]
  const int64_t offset = int64_t(comm_->rank()) * b_local;
  const auto options = InfoNceOptions(loss_.temperature).block_size(loss_.block_size);
  // Tiled: the same loss and gradients with memory O(B_local*V x block_size) instead of
  // O(B_local*V x B_global*V).
  const auto nce = loss_.tiled ? info_nce_tiled(local, global, offset, options)
                               : info_nce(local, global, offset, options);
  ObjectiveOutput out;
  out.loss = nce.loss;
  out.candidates_per_anchor = nce.candidates_per_anchor;
  out.metrics = {{"pos_sim", nce.pos_sim},
                 {"neg_sim", nce.neg_sim},
                 {"alignment", nce.alignment},
                 {"uniformity", nce.uniformity}};
  return out;
}

}  // namespace selfsup
