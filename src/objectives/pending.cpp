// TEMPORARY (development only, removed before merge): factories not written yet.
#include "selfsup/core/error.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {
#define SELFSUP_PENDING(fn)                                                                   \
  std::shared_ptr<Objective> fn(const Config&, PretextShape, std::shared_ptr<Communicator>) { \
    throw Error(#fn " is not written yet");                                                   \
  }
SELFSUP_PENDING(make_rotation_objective)
SELFSUP_PENDING(make_jigsaw_objective)
SELFSUP_PENDING(make_colorization_objective)
SELFSUP_PENDING(make_inpainting_objective)
SELFSUP_PENDING(make_superres_objective)
SELFSUP_PENDING(make_autoencoder_objective)
SELFSUP_PENDING(make_gan_objective)
SELFSUP_PENDING(make_diffusion_objective)
}  // namespace selfsup
