#include "selfsup/core/config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// The message of the ConfigError thrown by parsing `text` with `overrides` (fails the test if
// none).
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, "test.json", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for " << text;
  return "";
}

TEST(Config, DefaultsWhenEmpty) {
  const auto config = parse_config("{}", "test.json");
  EXPECT_EQ(config.model.encoder, "convnet");
  EXPECT_EQ(config.train.batch_size, 256);
  EXPECT_DOUBLE_EQ(config.loss.temperature, 0.5);
}

TEST(Config, ReadsNestedValues) {
  const auto config = parse_config(
      R"({"name": "x", "seed": 7, "optim": {"lr": 0.5, "name": "sgd"},
          "augment": {"crop_scale": [0.3, 0.9]}, "transfer": {"knn": {"k": 20}}})",
      "test.json");
  EXPECT_EQ(config.name, "x");
  EXPECT_EQ(config.seed, 7u);
  EXPECT_DOUBLE_EQ(config.optim.lr, 0.5);
  EXPECT_EQ(config.optim.name, "sgd");
  EXPECT_EQ(config.augment.crop_scale, (std::vector<double>{0.3, 0.9}));
  EXPECT_EQ(config.transfer.knn.k, 20);
}

TEST(Config, UnknownKeyNamesThePath) {
  const auto message = error_of(R"({"optim": {"learning_rate": 0.1}})");
  EXPECT_NE(message.find("optim.learning_rate"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown"), std::string::npos) << message;
  EXPECT_NE(message.find("lr"), std::string::npos) << message;  // lists the known keys
}

TEST(Config, WrongTypeNamesPathValueAndExpectation) {
  const auto message = error_of(R"({"train": {"batch_size": "big"}})");
  EXPECT_NE(message.find("train.batch_size"), std::string::npos) << message;
  EXPECT_NE(message.find("\"big\""), std::string::npos) << message;
  EXPECT_NE(message.find("integer"), std::string::npos) << message;
}

TEST(Config, OutOfRangeNamesTheRange) {
  const auto message = error_of(R"({"loss": {"temperature": -1}})");
  EXPECT_NE(message.find("loss.temperature"), std::string::npos) << message;
  EXPECT_NE(message.find("-1"), std::string::npos) << message;
  EXPECT_NE(message.find("in ["), std::string::npos) << message;
}

TEST(Config, RejectsFractionalIntegersBadChoicesAndBadPairs) {
  EXPECT_NE(error_of(R"({"train": {"epochs": 1.5}})").find("train.epochs"), std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"encoder": "vit"}})").find("convnet"), std::string::npos);
  EXPECT_NE(error_of(R"({"augment": {"crop_scale": [0.9, 0.2]}})").find("low <= high"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"augment": {"crop_scale": [0.2]}})").find("augment.crop_scale"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"data": 3})").find("data"), std::string::npos);
}

TEST(Config, ScaleRecipeKeys) {
  const auto config = parse_config(
      R"({"device": "cuda", "model": {"encoder": "resnet50", "stem": "imagenet",
          "head_layers": 3, "head_hidden": 2048},
          "optim": {"name": "lars", "lr": 0.3, "lr_scaling": "linear", "trust_coefficient": 0.001},
          "train": {"precision": "bf16"}})",
      "test.json");
  EXPECT_EQ(config.model.encoder, "resnet50");
  EXPECT_EQ(config.model.stem, "imagenet");
  EXPECT_EQ(config.model.head_layers, 3);
  EXPECT_EQ(config.optim.name, "lars");
  EXPECT_EQ(config.optim.lr_scaling, "linear");
  EXPECT_EQ(resolved_precision(config), "bf16");
  EXPECT_NE(error_of(R"({"model": {"stem": "tiny"}})").find("model.stem"), std::string::npos);
  EXPECT_NE(error_of(R"({"optim": {"lr_scaling": "log"}})").find("sqrt"), std::string::npos);
}

TEST(Config, PrecisionAutoFollowsTheDeviceAndTask) {
  EXPECT_EQ(resolved_precision(parse_config(R"({"train": {"precision": "auto"}})", "t.json")),
            "fp32");
  EXPECT_EQ(resolved_precision(
                parse_config(R"({"device": "cuda", "train": {"precision": "auto"}})", "t.json")),
            "bf16");
  EXPECT_EQ(resolved_precision(parse_config(
                R"({"device": "cuda", "train": {"precision": "auto"},
                    "augment": {"views": 1}, "pretext": {"task": "rotation"}})",
                "t.json")),
            "fp32");
  EXPECT_EQ(resolved_precision(parse_config("{}", "t.json")), "fp32");
}

TEST(Config, ScaleBadInputSaysWhatToChange) {
  // bf16 on a CPU: what to set instead.
  auto message = error_of(R"({"train": {"precision": "bf16"}})");
  EXPECT_NE(message.find("train.precision"), std::string::npos) << message;
  EXPECT_NE(message.find("\"auto\""), std::string::npos) << message;
  EXPECT_NE(message.find("device"), std::string::npos) << message;
  // LARS with a zero trust coefficient: every step would be zero.
  message = error_of(R"({"optim": {"name": "lars", "trust_coefficient": 0}})");
  EXPECT_NE(message.find("optim.trust_coefficient"), std::string::npos) << message;
  EXPECT_NE(message.find("0.001"), std::string::npos) << message;
  // bf16 for a pretext task that trains in fp32.
  message = error_of(R"({"device": "cuda", "train": {"precision": "bf16"},
                        "augment": {"views": 1}, "pretext": {"task": "rotation"}})");
  EXPECT_NE(message.find("simclr"), std::string::npos) << message;
  // SGD ignores the trust coefficient, so 0 is fine there.
  EXPECT_NO_THROW(parse_config(R"({"optim": {"name": "sgd", "trust_coefficient": 0}})", "t.json"));
}

TEST(Config, GradientAccumulation) {
  EXPECT_EQ(parse_config("{}", "t.json").train.accumulate_steps, 1);
  EXPECT_EQ(parse_config(R"({"train": {"accumulate_steps": 4}})", "t.json").train.accumulate_steps,
            4);
  auto message = error_of(R"({"train": {"accumulate_steps": 0}})");
  EXPECT_NE(message.find("train.accumulate_steps"), std::string::npos) << message;
  // Two networks in alternating updates: the GAN, and in-painting with its adversarial term.
  message = error_of(R"({"train": {"accumulate_steps": 2}, "augment": {"views": 1},
                        "pretext": {"task": "gan"}})");
  EXPECT_NE(message.find("train.accumulate_steps = 2"), std::string::npos) << message;
  EXPECT_NE(message.find("set train.accumulate_steps to 1"), std::string::npos) << message;
  message = error_of(R"({"train": {"accumulate_steps": 2}, "augment": {"views": 1},
                        "pretext": {"task": "inpainting", "inpainting": {"adversarial_weight": 0.001}}})");
  EXPECT_NE(message.find("pretext.inpainting.adversarial_weight"), std::string::npos) << message;
  // Without the adversarial term in-painting accumulates like any per-sample loss.
  EXPECT_NO_THROW(parse_config(R"({"train": {"accumulate_steps": 2}, "augment": {"views": 1},
                                  "pretext": {"task": "inpainting"}})",
                               "t.json"));
}

TEST(Config, TiledLossKeys) {
  const auto defaults = parse_config("{}", "test.json");
  EXPECT_FALSE(defaults.loss.tiled);
  EXPECT_EQ(defaults.loss.block_size, 4096);
  const auto config =
      parse_config(R"({"loss": {"tiled": true, "block_size": 2147483648}})", "test.json");
  EXPECT_TRUE(config.loss.tiled);
  EXPECT_EQ(config.loss.block_size, int64_t(1) << 31);
  EXPECT_NE(error_of(R"({"loss": {"block_size": 0}})").find("loss.block_size"), std::string::npos);
  EXPECT_NE(error_of(R"({"loss": {"block_size": 2147483649}})").find("in [1, "), std::string::npos);
  EXPECT_NE(error_of(R"({"loss": {"tiled": 1}})").find("true or false"), std::string::npos);
}

TEST(Config, MalformedJsonIsAConfigError) {
  const auto message = error_of(R"({"train": {"epochs": 1,}})");
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
}

TEST(Config, OverridesApplyBeforeValidation) {
  const auto config = parse_config("{}", "test.json",
                                   {"optim.lr=0.25", "model.encoder=resnet18", "train.epochs=3",
                                    "augment.crop_scale=[0.5,1.0]", "transfer.enabled=false"});
  EXPECT_DOUBLE_EQ(config.optim.lr, 0.25);
  EXPECT_EQ(config.model.encoder, "resnet18");  // not valid JSON, taken as a string
  EXPECT_EQ(config.train.epochs, 3);
  EXPECT_EQ(config.augment.crop_scale[0], 0.5);
  EXPECT_FALSE(config.transfer.enabled);

  EXPECT_NE(error_of("{}", {"optim.lrr=1"}).find("optim.lrr"), std::string::npos);
  EXPECT_NE(error_of("{}", {"train.epochs=zero"}).find("train.epochs"), std::string::npos);
  EXPECT_NE(error_of("{}", {"no_equals_sign"}).find("key.path=value"), std::string::npos);
  EXPECT_NE(error_of("{}", {"seed.x=1"}).find("seed"), std::string::npos);
}

TEST(Config, ResolvedJsonRoundTrips) {
  auto config = parse_config(R"({"name": "rt", "optim": {"lr": 0.125}})", "test.json");
  const auto text = config_to_json(config);
  const auto again = parse_config(text, "resolved.json");
  EXPECT_EQ(config_to_json(again), text);
  const auto json = nlohmann::json::parse(text);
  EXPECT_DOUBLE_EQ(json["optim"]["lr"].get<double>(), 0.125);
  EXPECT_TRUE(json.contains("transfer"));  // every field is written, defaults included
}

}  // namespace
}  // namespace selfsup
