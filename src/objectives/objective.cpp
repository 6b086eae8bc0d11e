#include "selfsup/objectives/objective.h"

#include "selfsup/dist/communicator.h"
#include "selfsup/dist/sync_batch_norm.h"

namespace selfsup {

NormFactory make_norm_factory(const ModelConfig& model, std::shared_ptr<Communicator> comm) {
  // "sync" uses SyncBatchNorm in a world of one too: torch's fused kernel computes the same
  // function with a different rounding (parameters 1e-4 apart after five steps, against 1e-6
  // between 1 and 4 ranks on one code path), and a run should not depend on the world size.
  if (model.batch_norm == "local") return batch_norm_factory();
  return [comm](int64_t features, bool /*spatial*/) {
    return torch::nn::AnyModule(SyncBatchNorm(features, comm));
  };
}

std::shared_ptr<Objective> make_objective(const Config& config, int64_t in_channels,
                                          std::shared_ptr<Communicator> comm) {
  auto encoder = make_encoder(config.model, in_channels, make_norm_factory(config.model, comm));
  return std::make_shared<SimClrObjective>(std::move(encoder), config.model, config.loss,
                                           std::move(comm));
}

}  // namespace selfsup
