#include "selfsup/transfer/export.h"

#include <nlohmann/json.hpp>

#include "selfsup/core/error.h"
#include "selfsup/models/encoder_file.h"
#include "selfsup/models/safetensors_io.h"

namespace selfsup {
namespace {

using nlohmann::json;

// The per-channel values of a "normalization" entry: a list of `channels` numbers.
std::vector<double> channel_values(const json& normalization, const char* name, int64_t channels,
                                   const std::string& path) {
  const auto& value = normalization.at(name);
  SELFSUP_CHECK(value.is_array() && int64_t(value.size()) == channels, path,
                ": metadata \"normalization\" ", name, " must list ", channels, " number(s), got ",
                value.dump());
  return value.get<std::vector<double>>();
}

// `values` (one value for all channels, or one per channel) as one value per channel.
std::vector<double> channel_list(const std::vector<double>& values, int64_t channels) {
  if (values.size() == 1) return std::vector<double>(size_t(channels), values[0]);
  SELFSUP_CHECK(int64_t(values.size()) == channels, "the normalisation lists ", values.size(),
                " values for ", channels, "-channel images");
  return values;
}

}  // namespace

std::map<std::string, std::string> encoder_file_metadata(const Config& config,
                                                         const Encoder& encoder,
                                                         const EncoderExportInfo& info) {
  // The file lists the normalisation per channel, as torchvision's Normalize takes it.
  const json normalization = {
      {"mean", channel_list(config.augment.mean, info.channels)},
      {"std", channel_list(config.augment.std, info.channels)}};
  return {{"format", kEncoderFileFormat},
          {"architecture", encoder_architecture(config.model).dump()},
          {"input_size", json({info.channels, info.height, info.width}).dump()},
          {"normalization", normalization.dump()},
          {"feature_dim", std::to_string(encoder.feature_dim())},
          {"selfsup_version", SELFSUP_VERSION},
          {"source_checkpoint", info.checkpoint},
          {"step", std::to_string(info.step)}};
}

void export_encoder(Encoder& encoder, const Config& config, const EncoderExportInfo& info,
                    const std::string& path) {
  write_safetensors(path, encoder_tensors(encoder), encoder_file_metadata(config, encoder, info));
}

ExportedEncoder open_exported_encoder(const std::string& path) {
  const auto file = read_safetensors(path);
  auto meta = [&](const char* key) {
    const auto it = file.metadata.find(key);
    SELFSUP_CHECK(it != file.metadata.end(), path, " is not a selfsup encoder file: no \"", key,
                  "\" in its metadata (write one with `selfsup export`)");
    return it->second;
  };
  ExportedEncoder out;
  out.model = model_from_architecture(meta("architecture"), path);
  try {
    out.input_size = json::parse(meta("input_size")).get<std::vector<int64_t>>();
    SELFSUP_CHECK(out.input_size.size() == 3 && out.input_size[0] >= 1, "not [C, H, W]");
    const auto normalization = json::parse(meta("normalization"));
    out.mean = channel_values(normalization, "mean", out.input_size[0], path);
    out.std = channel_values(normalization, "std", out.input_size[0], path);
  } catch (const json::exception& e) {
    throw Error(path + ": metadata input_size / normalization malformed (" + e.what() + ")");
  }
  out.encoder = make_encoder(out.model, out.input_size[0]);
  load_encoder_weights(*out.encoder, file, path, {out.model, out.input_size[0], "--encoder"});
  out.encoder->eval();
  return out;
}

torch::Tensor embed_images(ExportedEncoder& exported, torch::Tensor images, int64_t batch_size) {
  SELFSUP_CHECK(batch_size >= 1, "batch size must be positive, got ", batch_size);
  const int64_t channels = exported.input_size[0];
  if (images.dim() == 3 && channels == 1) images = images.unsqueeze(1);
  SELFSUP_CHECK(images.dim() == 4 && images.size(1) == channels, "images must be [N, ", channels,
                ", H, W]", channels == 1 ? " or [N, H, W]" : "", " for this encoder, got ",
                images.sizes());
  if (images.scalar_type() == torch::kUInt8) {
    images = images.to(torch::kFloat) / 255.0;
  } else {
    SELFSUP_CHECK(images.is_floating_point(), "images must be float in [0, 1] or uint8, got ",
                  images.scalar_type());
    images = images.to(torch::kFloat);
  }
  const auto mean = torch::tensor(exported.mean, torch::kFloat).view({1, channels, 1, 1});
  const auto std = torch::tensor(exported.std, torch::kFloat).view({1, channels, 1, 1});
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> features;
  for (int64_t first = 0; first < images.size(0); first += batch_size) {
    const auto batch = images.narrow(0, first, std::min(batch_size, images.size(0) - first));
    features.push_back(exported.encoder->forward((batch - mean) / std).contiguous());
  }
  if (features.empty()) return torch::empty({0, exported.encoder->feature_dim()});
  return torch::cat(features);
}

}  // namespace selfsup
