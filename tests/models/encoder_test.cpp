#include "selfsup/models/encoder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace selfsup {
namespace {

TEST(Encoder, ConvNetShapesAndFeatureDim) {
  ModelConfig config;
  config.width = 8;
  config.pool = 2;
  auto encoder = make_encoder(config, 1);
  const auto out = encoder->forward(torch::randn({3, 1, 28, 28}));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, 4 * 8 * 2 * 2}));
  EXPECT_EQ(encoder->feature_dim(), 128);
}

TEST(Encoder, ChannelsLastComputesTheSameFunction) {
  ModelConfig config;
  config.width = 8;
  config.channels_last = false;
  torch::manual_seed(1);
  auto plain = make_encoder(config, 1);
  config.channels_last = true;
  torch::manual_seed(1);
  auto nhwc = make_encoder(config, 1);
  const auto x = torch::randn({4, 1, 28, 28});
  EXPECT_TRUE(torch::allclose(plain->forward(x), nhwc->forward(x), 1e-4, 1e-5));
}

TEST(Encoder, ResNet18UsesTorchvisionNames) {
  ModelConfig config;
  config.encoder = "resnet18";
  auto encoder = make_encoder(config, 3);
  const auto params = encoder->named_parameters();
  for (const auto* name :
       {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.bias", "layer4.1.bn2.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  EXPECT_EQ(encoder->forward(torch::randn({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 512}));
  int64_t count = 0;
  for (const auto& p : encoder->parameters()) count += p.numel();
  // torchvision's resnet18 has 11 689 512 parameters; the small-image stem (3x3 conv1 instead of
  // 7x7) and no fc layer: 11 689 512 - 64*3*(49-9) - (512*1000 + 1000) = 11 168 832.
  EXPECT_EQ(count, 11168832);
}

int64_t parameter_count(torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) count += p.numel();
  return count;
}

// torchvision's counts without the classifier (fc: 512 or 2048 x 1000 + 1000): resnet34
// 21 797 672 - 513 000, resnet50 25 557 032 - 2 049 000. The small stem's 3x3 conv1 has
// 64*3*(49 - 9) = 7 680 fewer weights than the 7x7 one.
TEST(Encoder, ResNet34And50HaveTorchvisionNamesAndSizes) {
  struct Case {
    const char* encoder;
    const char* stem;
    int64_t parameters;
    int64_t features;
    std::vector<const char*> names;
  };
  const std::vector<Case> cases{
      {"resnet34",
       "imagenet",
       21284672,
       512,
       {"conv1.weight", "layer1.2.conv2.weight", "layer3.5.bn2.running_var",
        "layer4.0.downsample.0.weight"}},
      {"resnet50",
       "imagenet",
       23508032,
       2048,
       {"conv1.weight", "layer1.0.downsample.0.weight", "layer1.0.conv3.weight",
        "layer3.5.bn3.running_mean", "layer4.2.conv3.weight", "layer4.0.downsample.1.bias"}},
      {"resnet50", "small", 23508032 - 7680, 2048, {"layer2.3.conv2.weight"}},
  };
  for (const auto& c : cases) {
    ModelConfig config;
    config.encoder = c.encoder;
    config.stem = c.stem;
    auto encoder = make_encoder(config, 3);
    EXPECT_EQ(parameter_count(*encoder), c.parameters) << c.encoder << " " << c.stem;
    EXPECT_EQ(encoder->feature_dim(), c.features);
    auto names = encoder->named_parameters();
    const auto buffers = encoder->named_buffers();
    for (const auto* name : c.names)
      EXPECT_TRUE(names.contains(name) || buffers.contains(name)) << c.encoder << ": " << name;
  }
}

TEST(Encoder, ResNetStemsSetTheResolution) {
  // The ImageNet stem divides the side by 4 before layer1 (conv stride 2, max-pool stride 2), the
  // small one by 1; both end in global pooling, so any side >= 32 works. The 7x7 conv1 proves
  // which stem was built.
  for (const std::string stem : {"imagenet", "small"}) {
    ModelConfig config;
    config.encoder = "resnet18";
    config.stem = stem;
    auto encoder = make_encoder(config, 3);
    EXPECT_EQ(encoder->named_parameters()["conv1.weight"].size(3), stem == "imagenet" ? 7 : 3);
    encoder->eval();
    EXPECT_EQ(encoder->forward(torch::randn({2, 3, 64, 64})).sizes(),
              (std::vector<int64_t>{2, 512}));
  }
  ModelConfig config;
  config.encoder = "resnet50";
  config.stem = "imagenet";
  auto encoder = make_encoder(config, 1);
  encoder->eval();
  EXPECT_EQ(encoder->forward(torch::randn({1, 1, 96, 96})).sizes(),
            (std::vector<int64_t>{1, 2048}));
}

TEST(Encoder, BottleneckComputesTheTorchvisionBlock) {
  // out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + downsample(x)), stride on the
  // 3x3 conv2, written out with the block's own weights.
  torch::manual_seed(3);
  Bottleneck block(8, 4, 2, batch_norm_factory());
  block->eval();
  auto p = block->named_parameters();
  auto b = block->named_buffers();
  auto bn = [&](const torch::Tensor& x, const std::string& name) {
    return torch::batch_norm(x, p[name + ".weight"], p[name + ".bias"], b[name + ".running_mean"],
                             b[name + ".running_var"], false, 0.1, 1e-5, false);
  };
  const auto x = torch::randn({2, 8, 9, 9});
  auto y = torch::relu(bn(torch::conv2d(x, p["conv1.weight"]), "bn1"));
  y = torch::relu(bn(torch::conv2d(y, p["conv2.weight"], {}, 2, 1), "bn2"));
  y = bn(torch::conv2d(y, p["conv3.weight"]), "bn3");
  const auto identity = bn(torch::conv2d(x, p["downsample.0.weight"], {}, 2), "downsample.1");
  const auto expected = torch::relu(y + identity);
  EXPECT_EQ(expected.sizes(), (std::vector<int64_t>{2, 16, 5, 5}));
  EXPECT_TRUE(torch::allclose(block->forward(x), expected, 1e-5, 1e-6));
}

TEST(ProjectionHead, Shapes) {
  ProjectionHead head(32, 64, 16);
  EXPECT_EQ(head->forward(torch::randn({5, 32})).sizes(), (std::vector<int64_t>{5, 16}));
}

TEST(ProjectionHead, DepthSetsTheLayers) {
  // 3 layers (SimCLR v2): fc1 -> bn1 -> relu -> fc2 -> bn2 -> relu -> fc3; 1 layer: linear.
  ProjectionHead deep(32, 64, 16, batch_norm_factory(), 3);
  const auto names = deep->named_parameters();
  for (const auto* name :
       {"fc1.weight", "bn1.weight", "fc2.weight", "bn2.bias", "fc3.weight", "fc3.bias"})
    EXPECT_TRUE(names.contains(name)) << name;
  EXPECT_FALSE(names.contains("fc1.bias"));  // followed by batch norm
  EXPECT_FALSE(names.contains("fc4.weight"));
  EXPECT_EQ(parameter_count(*deep), 32 * 64 + 2 * 64 + 64 * 64 + 2 * 64 + 64 * 16 + 16);
  EXPECT_EQ(deep->forward(torch::randn({5, 32})).sizes(), (std::vector<int64_t>{5, 16}));

  ProjectionHead linear(32, 64, 16, batch_norm_factory(), 1);
  auto p = linear->named_parameters();
  EXPECT_EQ(p.size(), 2u);
  const auto x = torch::randn({5, 32});
  EXPECT_TRUE(torch::allclose(linear->forward(x), torch::linear(x, p["fc1.weight"], p["fc1.bias"]),
                              1e-6, 1e-6));
}

}  // namespace
}  // namespace selfsup
