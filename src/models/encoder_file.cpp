#include "selfsup/models/encoder_file.h"

#include <map>
#include <set>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

using nlohmann::json;

// A metadata value of `file`, parsed as JSON; throws Error naming `path` and the key.
json metadata_json(const TensorFile& file, const std::string& path, const std::string& name) {
  const auto it = file.metadata.find(name);
  SELFSUP_CHECK(it != file.metadata.end(), path, " is not a selfsup encoder file: its metadata ",
                "has no \"", name, "\" (write one with `selfsup export`)");
  try {
    return json::parse(it->second);
  } catch (const json::exception&) {
    throw Error(path + ": metadata \"" + name + "\" is not valid JSON: " + it->second);
  }
}

}  // namespace

json encoder_architecture(const ModelConfig& model) {
  if (model.encoder == "convnet") {
    return {{"encoder", model.encoder},
            {"width", model.width},
            {"stem_stride", model.stem_stride},
            {"pool", model.pool}};
  }
  // ResNets: the stem shapes conv1 (files written before the stem was a choice have none: "small").
  return {{"encoder", model.encoder}, {"stem", model.stem}};
}

ModelConfig model_from_architecture(const std::string& architecture, const std::string& source) {
  ModelConfig model;
  try {
    const auto value = json::parse(architecture);
    model.encoder = value.at("encoder").get<std::string>();
    if (model.encoder == "convnet") {
      model.width = value.at("width").get<int>();
      model.stem_stride = value.at("stem_stride").get<int>();
      model.pool = value.at("pool").get<int>();
      SELFSUP_CHECK(model.width >= 1 && model.width <= 4096 && model.stem_stride >= 1 &&
                        model.stem_stride <= 2 && model.pool >= 1 && model.pool <= 16,
                    "out of range");
    } else {
      SELFSUP_CHECK(
          model.encoder == "resnet18" || model.encoder == "resnet34" || model.encoder == "resnet50",
          "unknown encoder \"", model.encoder, "\"");
      model.stem = value.value("stem", std::string("small"));
      SELFSUP_CHECK(model.stem == "small" || model.stem == "imagenet", "unknown stem \"",
                    model.stem, "\"");
    }
  } catch (const std::exception& e) {
    throw Error(source + ": metadata \"architecture\" = " + architecture +
                " does not describe a selfsup encoder (" + e.what() + ")");
  }
  return model;
}

std::vector<std::pair<std::string, torch::Tensor>> encoder_tensors(Encoder& encoder) {
  // The module tree already carries torchvision's names (models/encoder.cpp and SyncBatchNorm
  // register theirs under BatchNorm's names). Parameters first, then buffers, each in registration
  // order; the order does not matter to the format.
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : encoder.named_parameters()) out.emplace_back(item.key(), item.value());
  for (const auto& item : encoder.named_buffers()) out.emplace_back(item.key(), item.value());
  return out;
}

void load_encoder_weights(Encoder& encoder, const TensorFile& file, const std::string& path,
                          const EncoderFileCheck& check) {
  const auto& model = check.model;
  const auto& key = check.key;
  const int64_t in_channels = check.in_channels;
  // 1. The metadata must describe the encoder the config asks for.
  const auto format = file.metadata.find("format");
  SELFSUP_CHECK(format != file.metadata.end() && format->second == kEncoderFileFormat, key, " = ",
                path, " is not a selfsup encoder file (metadata \"format\" is not \"",
                kEncoderFileFormat, "\"); write one with `selfsup export`");
  auto stored = metadata_json(file, path, "architecture");
  // A ResNet file written before the stem was a choice has the small-image stem.
  if (stored.is_object() && stored.value("encoder", std::string()).rfind("resnet", 0) == 0 &&
      !stored.contains("stem"))
    stored["stem"] = "small";
  const auto expected = encoder_architecture(model);
  if (stored != expected) {
    std::string differences;
    for (const auto& item : expected.items()) {
      const auto found = stored.contains(item.key()) ? stored.at(item.key()).dump() : "absent";
      if (found != item.value().dump()) {
        differences += (differences.empty() ? "" : ", ") + std::string("model.") + item.key() +
                       " = " + item.value().dump() + " but the file has " + found;
      }
    }
    for (const auto& item : stored.items()) {
      if (!expected.contains(item.key())) {
        differences += (differences.empty() ? "" : ", ") + std::string("the file has ") +
                       item.key() + " = " + item.value().dump() + ", which model." + model.encoder +
                       " lacks";
      }
    }
    throw ConfigError(key + " = " + path + " holds another encoder than the config: " +
                      differences + " (file architecture " + stored.dump() + ")");
  }
  const auto input_size = metadata_json(file, path, "input_size");
  SELFSUP_CHECK(
      input_size.is_array() && input_size.size() == 3 && input_size[0].is_number_integer(), path,
      ": metadata \"input_size\" must be [C, H, W], got ", input_size.dump());
  const int64_t channels = input_size[0].get<int64_t>();
  if (channels != in_channels) {
    throw ConfigError(key + " = " + path + " holds an encoder for " + std::to_string(channels) +
                      "-channel images, but the dataset has " + std::to_string(in_channels) +
                      " channel(s)");
  }
  const auto feature_dim = metadata_json(file, path, "feature_dim");
  if (!feature_dim.is_number_integer() || feature_dim.get<int64_t>() != encoder.feature_dim()) {
    throw ConfigError(key + " = " + path + " holds an encoder of feature_dim " +
                      feature_dim.dump() + ", but the config's encoder has " +
                      std::to_string(encoder.feature_dim()));
  }

  // 2. Every tensor of the encoder, and nothing else, with the same shape and dtype.
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [name, tensor] : file.tensors) by_name[name] = &tensor;
  const auto targets = encoder_tensors(encoder);
  std::set<std::string> used;
  for (const auto& [name, target] : targets) {
    const auto it = by_name.find(name);
    SELFSUP_CHECK(it != by_name.end(), key, " = ", path, " lacks the encoder tensor \"", name,
                  "\"");
    const auto& source = *it->second;
    SELFSUP_CHECK(source.sizes() == target.sizes() && source.scalar_type() == target.scalar_type(),
                  key, " = ", path, ": tensor \"", name, "\" is ", source.scalar_type(), " ",
                  source.sizes(), " but the encoder expects ", target.scalar_type(), " ",
                  target.sizes());
    used.insert(name);
  }
  for (const auto& [name, tensor] : file.tensors) {
    SELFSUP_CHECK(used.count(name), key, " = ", path, " has a tensor \"", name,
                  "\" that the encoder does not have");
  }
  // 3. Copy (into the encoder's device and memory layout).
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : targets) {
    auto destination = target;
    destination.copy_(*by_name.at(name));
  }
}

void load_encoder_file(Encoder& encoder, const std::string& path, const EncoderFileCheck& check) {
  load_encoder_weights(encoder, read_safetensors(path), path, check);
}

}  // namespace selfsup
