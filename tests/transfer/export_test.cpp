#include "selfsup/transfer/export.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/models/encoder_file.h"
#include "selfsup/models/safetensors_io.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {
namespace fs = std::filesystem;

Config small_config() {
  Config config;
  config.model.width = 4;
  config.model.head_hidden = 16;
  config.model.proj_dim = 8;
  return config;
}

std::string temp_file(const std::string& name) {
  return (fs::temp_directory_path() / ("selfsup_export_test_" + name)).string();
}

// Every tensor of the encoder set to values no initialiser gives (running statistics included).
void scramble(Encoder& encoder, int64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : encoder_tensors(encoder)) {
    if (tensor.is_floating_point()) {
      tensor.copy_(torch::rand_like(tensor) + 0.5);
    } else {
      tensor.fill_(seed);
    }
  }
}

std::shared_ptr<Objective> objective_for(const Config& config, int64_t channels = 1) {
  return make_objective(config, channels, std::make_shared<LocalCommunicator>());
}

EncoderExportInfo info_for(int64_t channels = 1) {
  EncoderExportInfo info;
  info.channels = channels;
  info.checkpoint = "checkpoints/step_7";
  info.step = 7;
  return info;
}

TEST(EncoderExport, SyncBatchNormGetsTorchvisionNamesAndHeadIsDropped) {
  auto config = small_config();
  config.model.encoder = "resnet18";
  config.model.batch_norm = "sync";
  config.negatives.momentum = 0.9;  // a key encoder and key head exist, and must not be exported
  config.negatives.queue_size = 16;
  const auto objective = objective_for(config, 3);
  const auto path = temp_file("resnet.safetensors");
  export_encoder(*objective->encoder(), config, info_for(3), path);
  const auto file = read_safetensors(path);
  std::set<std::string> names;
  for (const auto& [name, tensor] : file.tensors) names.insert(name);
  for (const auto* name :
       {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
        "bn1.num_batches_tracked", "layer1.0.conv1.weight", "layer1.0.bn2.running_var",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
        "layer4.1.bn2.num_batches_tracked"}) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  // torchvision's resnet18 state dict without fc, the 7x7 stem replaced by 3x3: 20 convolutions
  // and batch norms of 5 tensors each -> 20 + 20 * 5 = 120 tensors.
  EXPECT_EQ(names.size(), 120u);
  for (const auto& name : names) {
    EXPECT_EQ(name.find("head"), std::string::npos) << name;
    EXPECT_EQ(name.find("key"), std::string::npos) << name;
    EXPECT_EQ(name.find("queue"), std::string::npos) << name;
  }
  EXPECT_EQ(file.at("bn1.num_batches_tracked", path).scalar_type(), torch::kLong);
  EXPECT_EQ(file.at("conv1.weight", path).sizes(), (std::vector<int64_t>{64, 3, 3, 3}));
  EXPECT_EQ(file.metadata.at("architecture"), R"({"encoder":"resnet18","stem":"small"})");
  EXPECT_EQ(file.metadata.at("input_size"), "[3,28,28]");
  EXPECT_EQ(file.metadata.at("feature_dim"), "512");
  EXPECT_EQ(file.metadata.at("step"), "7");
  EXPECT_EQ(file.metadata.at("source_checkpoint"), "checkpoints/step_7");
  EXPECT_EQ(file.metadata.at("selfsup_version"), SELFSUP_VERSION);
  EXPECT_EQ(file.metadata.at("format"), kEncoderFileFormat);
  fs::remove(path);
}

TEST(EncoderExport, ModelInitLoadsTheExportedWeights) {
  auto config = small_config();
  config.negatives.momentum = 0.9;
  const auto source = objective_for(config);
  scramble(*source->encoder(), 3);
  const auto path = temp_file("convnet.safetensors");
  export_encoder(*source->encoder(), config, info_for(), path);
  EXPECT_EQ(read_safetensors(path).metadata.at("normalization"),
            R"({"mean":[0.286],"std":[0.353]})");

  config.model.init = path;
  torch::manual_seed(99);  // a different random initialisation, replaced by the file
  const auto loaded = objective_for(config);
  const auto expected = encoder_tensors(*source->encoder());
  const auto actual = encoder_tensors(*loaded->encoder());
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_EQ(actual[i].first, expected[i].first);
    EXPECT_TRUE(torch::equal(actual[i].second, expected[i].second)) << actual[i].first;
  }
  // The momentum key encoder starts from the loaded weights too.
  const auto named = loaded->named_parameters();
  EXPECT_TRUE(
      torch::equal(named["key_encoder.features.0.weight"], named["encoder.features.0.weight"]));
  // And the features are the same function.
  source->encoder()->eval();
  loaded->encoder()->eval();
  const auto x = torch::randn({2, 1, 28, 28});
  EXPECT_TRUE(torch::equal(source->encoder()->forward(x), loaded->encoder()->forward(x)));
  fs::remove(path);
}

TEST(EncoderExport, ModelInitMismatchNamesTheKeyAndTheDifference) {
  auto config = small_config();
  const auto path = temp_file("mismatch.safetensors");
  export_encoder(*objective_for(config)->encoder(), config, info_for(), path);
  auto expect_config_error = [&](const Config& other, int64_t channels,
                                 std::vector<std::string> fragments) {
    try {
      objective_for(other, channels);
      ADD_FAILURE() << "no error";
    } catch (const ConfigError& e) {
      const std::string message = e.what();
      fragments.push_back("model.init = " + path);
      for (const auto& fragment : fragments) {
        EXPECT_NE(message.find(fragment), std::string::npos) << fragment << " in: " << message;
      }
    }
  };
  auto wider = config;
  wider.model.init = path;
  wider.model.width = 8;
  expect_config_error(wider, 1, {"model.width = 8 but the file has 4"});
  auto resnet = config;
  resnet.model.init = path;
  resnet.model.encoder = "resnet18";
  expect_config_error(resnet, 1, {"model.encoder = \"resnet18\" but the file has \"convnet\""});
  auto same = config;
  same.model.init = path;
  expect_config_error(same, 3, {"1-channel images", "3 channel(s)"});
  same.model.init = temp_file("missing.safetensors");
  EXPECT_THROW(objective_for(same), SafetensorsError);
  fs::remove(path);
}

TEST(EncoderExport, ResNetStemIsPartOfTheArchitecture) {
  auto config = small_config();
  config.model.encoder = "resnet18";
  config.model.batch_norm = "local";
  const auto path = temp_file("stem.safetensors");
  export_encoder(*objective_for(config, 3)->encoder(), config, info_for(3), path);
  // A file written before the stem was a choice has no "stem": it is the small-image stem.
  auto file = read_safetensors(path);
  file.metadata["architecture"] = R"({"encoder":"resnet18"})";
  write_safetensors(path, file.tensors, file.metadata);
  auto init = config;
  init.model.init = path;
  EXPECT_NO_THROW(objective_for(init, 3));
  // The ImageNet stem's 7x7 conv1 is another encoder, named as such.
  init.model.stem = "imagenet";
  try {
    objective_for(init, 3);
    ADD_FAILURE() << "no error for the other stem";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("model.stem = \"imagenet\" but the file has \"small\""),
              std::string::npos)
        << message;
  }
  fs::remove(path);
}

TEST(EncoderExport, EmbedMatchesTheEncoderOnNormalisedImages) {
  auto config = small_config();
  const auto objective = objective_for(config);
  scramble(*objective->encoder(), 5);
  const auto path = temp_file("embed.safetensors");
  export_encoder(*objective->encoder(), config, info_for(), path);
  auto exported = open_exported_encoder(path);
  EXPECT_EQ(exported.model.width, 4);
  EXPECT_EQ(exported.input_size, (std::vector<int64_t>{1, 28, 28}));
  const auto pixels = torch::randint(0, 256, {5, 28, 28}, torch::kUInt8);
  const auto features = embed_images(exported, pixels, /*batch_size=*/2);
  objective->encoder()->eval();
  torch::NoGradGuard no_grad;
  const auto normalised = (pixels.unsqueeze(1).to(torch::kFloat) / 255.0 - 0.286f) / 0.353f;
  const auto expected = objective->encoder()->forward(normalised);
  EXPECT_EQ(features.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(features, expected, 1e-5, 1e-6));
  EXPECT_THROW(embed_images(exported, torch::rand({2, 3, 28, 28}), 2), Error);
  fs::remove(path);
}

}  // namespace
}  // namespace selfsup
