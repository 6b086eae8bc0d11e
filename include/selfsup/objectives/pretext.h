#pragma once
// What the pretext tasks beyond contrastive learning share: the base class (one view per image,
// the encoder that transfers, the norm layers of the config), per-sample random draws keyed like
// the augmentations, and the factories of the tasks (one source file each under
// src/objectives/).

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/models/encoder.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {

class Communicator;

/// The images a pretext objective is built for.
struct PretextShape {
  int64_t channels = 0;  // C of the views
  int64_t side = 0;      // H = W of the views, pixels
};

/// Base of the non-contrastive objectives: holds the config, the communicator, the norm layers of
/// `model.batch_norm` (synchronised by default, so that N ranks equal one rank) and the encoder,
/// registered as "encoder" and initialised from `model.init` when set, as SimCLR's.
class PretextObjective : public Objective {
 public:
  PretextObjective(const Config& config, PretextShape shape, std::shared_ptr<Communicator> comm);
  std::shared_ptr<Encoder> encoder() const override { return encoder_; }
  std::string name() const override { return config_.pretext.task; }

 protected:
  /// Checks that `input` holds one view of the expected shape and no local views; returns the
  /// images [B_local, C, side, side].
  torch::Tensor single_view(const ObjectiveInput& input) const;
  /// A normalisation-layer factory for pretext heads and decoders (same kind as the encoder's).
  const NormFactory& norm() const { return norm_; }

  Config config_;
  PretextShape shape_;
  std::shared_ptr<Communicator> comm_;
  NormFactory norm_;
  std::shared_ptr<Encoder> encoder_;
};

/// Stream identifiers of the per-sample draws (so that two draws of one sample never coincide).
enum class PretextStream : uint64_t {
  kJigsawPermutation = 101,
  kJigsawOffsets = 102,
  kInpaintingMask = 103,
  kAutoencoderNoise = 104,
  kGanLatent = 105,
  kDiffusionTime = 106,
  kDiffusionNoise = 107,
};

/// Per-sample draws keyed by (seed, epoch, keys[i], stream): the same sample gets the same draw
/// on any rank and in any batch position. All return CPU tensors with a leading dim B =
/// keys.numel(). Standard normal, float32 [B, shape...].
torch::Tensor keyed_normal(const torch::Tensor& keys, std::vector<int64_t> shape, uint64_t seed,
                           int64_t epoch, PretextStream stream);
/// Uniform in [0, 1), float32 [B, shape...].
torch::Tensor keyed_uniform(const torch::Tensor& keys, std::vector<int64_t> shape, uint64_t seed,
                            int64_t epoch, PretextStream stream);
/// Uniform integers in [0, high), int64 [B, count].
torch::Tensor keyed_integers(const torch::Tensor& keys, int64_t count, int64_t high, uint64_t seed,
                             int64_t epoch, PretextStream stream);

/// The tasks. Each validates its fit (check_pretext_fit ran already) and builds its heads.
std::shared_ptr<Objective> make_rotation_objective(const Config& config, PretextShape shape,
                                                   std::shared_ptr<Communicator> comm);
std::shared_ptr<Objective> make_jigsaw_objective(const Config& config, PretextShape shape,
                                                 std::shared_ptr<Communicator> comm);
std::shared_ptr<Objective> make_colorization_objective(const Config& config, PretextShape shape,
                                                       std::shared_ptr<Communicator> comm);
std::shared_ptr<Objective> make_inpainting_objective(const Config& config, PretextShape shape,
                                                     std::shared_ptr<Communicator> comm);
std::shared_ptr<Objective> make_superres_objective(const Config& config, PretextShape shape,
                                                   std::shared_ptr<Communicator> comm);
std::shared_ptr<Objective> make_autoencoder_objective(const Config& config, PretextShape shape,
                                                      std::shared_ptr<Communicator> comm);
std::shared_ptr<Objective> make_gan_objective(const Config& config, PretextShape shape,
                                              std::shared_ptr<Communicator> comm);
std::shared_ptr<Objective> make_diffusion_objective(const Config& config, PretextShape shape,
                                                    std::shared_ptr<Communicator> comm);

}  // namespace selfsup
