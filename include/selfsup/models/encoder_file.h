#pragma once
// An encoder's weights as a safetensors file (encoder.safetensors): the parameters and buffers of
// the encoder alone, under torchvision's names where the architecture has a twin (conv1.weight,
// bn1.running_mean, layer1.0.conv1.weight, layer1.0.downsample.1.bias, ...), with string metadata
// that says how to rebuild and feed it:
//
//   format             "selfsup-encoder/1"
//   architecture       JSON: {"encoder": "convnet", "width": 64, "stem_stride": 1, "pool": 2}
//                      or {"encoder": "resnet18"}
//   input_size         JSON [C, H, W] of the training images
//   normalization      JSON {"mean": [..C], "std": [..C]}: the encoder expects (x - mean) / std of
//                      pixels x in [0, 1]
//   feature_dim        the length of a feature vector, in decimal
//   selfsup_version, source_checkpoint, step: where the weights came from
//
// Writing the file is the transfer stage's job (selfsup/transfer/export.h); reading it back into an
// encoder (model.init, `selfsup transfer --encoder`, `selfsup embed`) is here.

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/models/encoder.h"
#include "selfsup/models/safetensors_io.h"

namespace selfsup {

/// The value of the "format" metadata key of files this version writes.
constexpr const char* kEncoderFileFormat = "selfsup-encoder/1";

/// The "architecture" metadata of an encoder built from `model`: model.encoder and the fields that
/// shape its weights.
nlohmann::json encoder_architecture(const ModelConfig& model);

/// The ModelConfig fields of an "architecture" value (the rest keep their defaults); throws
/// Error naming `source` when the value is malformed.
ModelConfig model_from_architecture(const std::string& architecture, const std::string& source);

/// The parameters and buffers of `encoder` by name (torchvision's, see above), in registration
/// order; the tensors are the encoder's own (not copies).
std::vector<std::pair<std::string, torch::Tensor>> encoder_tensors(Encoder& encoder);

/// What an encoder file must match before it is loaded.
struct EncoderFileCheck {
  ModelConfig model;        // the architecture fields the encoder was built from
  int64_t in_channels = 1;  // image channels of the data
  std::string key;          // the config key or option that named the file, for errors
};

/// Checks that `file` (read from `path`) holds an encoder as `check` describes, then copies its
/// tensors into `encoder` (any device and layout). A different architecture, channel count or
/// feature dimension throws ConfigError naming `check.key` and the difference; a missing, extra or
/// misshapen tensor throws Error naming it.
void load_encoder_weights(Encoder& encoder, const TensorFile& file, const std::string& path,
                          const EncoderFileCheck& check);

/// Reads `path` and loads it as load_encoder_weights does.
void load_encoder_file(Encoder& encoder, const std::string& path, const EncoderFileCheck& check);

}  // namespace selfsup
