#pragma once
// Encoder export: the encoder of a trained objective, alone (no projection head, momentum key
// encoder or queue), as a safetensors file that PyTorch users can load by hand
// (docs/export_example.py) and that selfsup reads back (model.init, `selfsup transfer --encoder`,
// `selfsup embed`). The file layout and metadata keys: selfsup/models/encoder_file.h.

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/models/encoder.h"

namespace selfsup {

/// What the exported file records beside the weights.
struct EncoderExportInfo {
  int64_t channels = 1;  // input images: C, H, W
  int64_t height = 28;
  int64_t width = 28;
  std::string checkpoint;  // the checkpoint directory the weights came from
  int64_t step = 0;        // its optimizer step
};

/// The metadata of an encoder file for `encoder`, built from `config` (model.*, augment.mean/std).
std::map<std::string, std::string> encoder_file_metadata(const Config& config,
                                                         const Encoder& encoder,
                                                         const EncoderExportInfo& info);

/// Writes the parameters and buffers of `encoder` (torchvision names) and their metadata to `path`
/// atomically.
void export_encoder(Encoder& encoder, const Config& config, const EncoderExportInfo& info,
                    const std::string& path);

/// An encoder rebuilt from an encoder file alone, in evaluation mode on the CPU, with what is
/// needed to feed it.
struct ExportedEncoder {
  std::shared_ptr<Encoder> encoder;
  ModelConfig model;                // the architecture fields of the file
  std::vector<int64_t> input_size;  // [C, H, W] of the training images
  std::vector<double> mean;         // per channel: the encoder takes (x - mean) / std, x in [0, 1]
  std::vector<double> std;
};

/// Reads `path` (a file of `selfsup export`) and rebuilds its encoder; throws Error naming the file
/// when it is not a valid encoder file.
ExportedEncoder open_exported_encoder(const std::string& path);

/// Features [N, feature_dim] (float32, CPU) of `images`: [N, C, H, W] (or [N, H, W] when C = 1)
/// pixels, float in [0, 1] or uint8 in [0, 255], normalised with the file's mean and std, in
/// batches of `batch_size`. Throws Error when the channel count differs from the file's.
torch::Tensor embed_images(ExportedEncoder& exported, torch::Tensor images, int64_t batch_size);

}  // namespace selfsup
