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

TEST(ProjectionHead, Shapes) {
  ProjectionHead head(32, 64, 16);
  EXPECT_EQ(head->forward(torch::randn({5, 32})).sizes(), (std::vector<int64_t>{5, 16}));
}

}  // namespace
}  // namespace selfsup
