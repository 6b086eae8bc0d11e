// Autoencoders: the corruption is keyed by (seed, epoch, sample) only, its statistics (Gaussian:
// zero mean, std sigma; mask: the fraction of pixels, all channels of a pixel together), the plain
// autoencoder reads the view itself, and the loss learns.

#include "selfsup/objectives/autoencoder.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

constexpr int64_t kSide = 16;
constexpr int64_t kChannels = 3;

Config small_config(const std::string& noise) {
  Config config;
  config.pretext.task = "autoencoder";
  config.pretext.autoencoder.noise = noise;
  config.pretext.autoencoder.sigma = 0.5;
  config.pretext.autoencoder.mask_prob = 0.3;
  config.pretext.decoder_width = 16;
  config.model.encoder = "convnet";
  config.model.width = 8;
  config.augment.size = kSide;
  config.seed = 13;
  return config;
}

AutoencoderConfig corruption(const std::string& noise, double sigma = 0.5, double mask_prob = 0.3) {
  AutoencoderConfig autoencoder;
  autoencoder.noise = noise;
  autoencoder.sigma = sigma;
  autoencoder.mask_prob = mask_prob;
  return autoencoder;
}

TEST(AutoencoderCorrupt, DependsOnlyOnSeedEpochAndKey) {
  torch::manual_seed(1);
  const auto views = torch::randn({4, kChannels, 8, 8}) + 5.0;  // no zero pixels
  const auto keys = torch::tensor({5, 6, 7, 8}, torch::kLong);
  // Key 8 again, first in a batch of two with another view: its noise (gaussian: the difference;
  // mask: where the pixels are zero) is the same.
  const auto other_views = torch::randn({2, kChannels, 8, 8}) - 5.0;
  const auto other_keys = torch::tensor({8, 5}, torch::kLong);
  for (const std::string noise : {"gaussian", "mask"}) {
    SCOPED_TRACE(noise);
    const auto config = corruption(noise);
    // What the corruption did to each sample: the added noise, or the kept-pixel pattern.
    auto effect = [&](const torch::Tensor& v, const torch::Tensor& k, uint64_t seed,
                      int64_t epoch) {
      const auto corrupted = autoencoder_corrupt(v, k, config, seed, epoch);
      return noise == "gaussian" ? corrupted - v : (corrupted != 0).to(torch::kFloat);
    };
    const auto base = effect(views, keys, 3, 1);
    const auto other = effect(other_views, other_keys, 3, 1);
    EXPECT_TRUE(torch::allclose(other[0], base[3], 0.0, 1e-5));
    EXPECT_TRUE(torch::allclose(other[1], base[0], 0.0, 1e-5));
    // Different keys differ; another epoch or seed changes the draws.
    EXPECT_FALSE(torch::allclose(base[0], base[1]));
    EXPECT_FALSE(torch::allclose(effect(views, keys, 3, 2), base));
    EXPECT_FALSE(torch::allclose(effect(views, keys, 4, 1), base));
  }
}

TEST(AutoencoderCorrupt, GaussianNoiseHasStdSigma) {
  const auto views = torch::zeros({64, kChannels, kSide, kSide});
  const auto keys = torch::arange(64, torch::kLong);
  for (const double sigma : {0.1, 0.5, 2.0}) {
    SCOPED_TRACE(sigma);
    const auto noise =
        autoencoder_corrupt(views, keys, corruption("gaussian", sigma), 9, 0).to(torch::kDouble);
    // 49152 draws: the sample std is within 1% of sigma (its own std is sigma / sqrt(2 n) =
    // 0.3%), the mean within 2% of sigma (std sigma / sqrt(n) = 0.45%).
    EXPECT_NEAR(noise.std().item<double>(), sigma, 0.01 * sigma);
    EXPECT_NEAR(noise.mean().item<double>(), 0.0, 0.02 * sigma);
    // Independent across channels: the correlation of two channels is near 0.
    const auto a = noise.select(1, 0).flatten(), b = noise.select(1, 1).flatten();
    EXPECT_NEAR(((a * b).mean() / (a.std() * b.std())).item<double>(), 0.0, 0.05);
  }
}

TEST(AutoencoderCorrupt, MaskZeroesWholePixelsWithProbabilityMaskProb) {
  torch::manual_seed(2);
  const auto views = torch::rand({64, kChannels, kSide, kSide}) + 1.0;  // no zero pixels
  const auto keys = torch::arange(1000, 1064, torch::kLong);
  for (const double mask_prob : {0.1, 0.3, 0.75}) {
    SCOPED_TRACE(mask_prob);
    const auto corrupted =
        autoencoder_corrupt(views, keys, corruption("mask", 0.5, mask_prob), 9, 0);
    const auto zero = corrupted == 0;  // [B, C, H, W]
    // All channels of a pixel together: zero in one channel means zero in every channel.
    const auto any = zero.any(1), all = zero.all(1);
    EXPECT_TRUE(torch::equal(any, all));
    // The rest untouched.
    EXPECT_TRUE(torch::equal(corrupted.masked_select(~zero), views.masked_select(~zero)));
    // 16384 pixels: the fraction's std is sqrt(p (1 - p) / n) <= 0.4%; allow 1.5%.
    EXPECT_NEAR(all.to(torch::kDouble).mean().item<double>(), mask_prob, 0.015);
  }
}

TEST(AutoencoderObjective, PlainReadsTheViewItself) {
  torch::manual_seed(3);
  ObjectiveInput input;
  input.views = torch::randn({1, 4, kChannels, kSide, kSide});
  input.keys = torch::arange(4, torch::kLong);
  AutoencoderObjective plain(small_config("none"), {kChannels, kSide},
                             std::make_shared<LocalCommunicator>());
  EXPECT_TRUE(torch::equal(plain.encoder_input(input), input.views[0]));
  // A denoising one reads autoencoder_corrupt of the config's seed and the input's epoch.
  input.epoch = 6;
  const auto config = small_config("gaussian");
  AutoencoderObjective denoising(config, {kChannels, kSide}, std::make_shared<LocalCommunicator>());
  EXPECT_TRUE(torch::equal(
      denoising.encoder_input(input),
      autoencoder_corrupt(input.views[0], input.keys, config.pretext.autoencoder, config.seed, 6)));
  EXPECT_FALSE(torch::equal(denoising.encoder_input(input), input.views[0]));
}

TEST(AutoencoderObjective, LossLearnsOnAFixedBatch) {
  for (const std::string noise : {"none", "mask"}) {
    SCOPED_TRACE(noise);
    const auto config = small_config(noise);
    const auto objective =
        make_objective(config, kChannels, std::make_shared<LocalCommunicator>(), kSide);
    ASSERT_NE(std::dynamic_pointer_cast<AutoencoderObjective>(objective), nullptr);
    torch::manual_seed(5);
    ObjectiveInput input;
    input.views = torch::randn({1, 8, kChannels, kSide, kSide});
    input.keys = torch::arange(8, torch::kLong);
    const double input_mse =
        (std::dynamic_pointer_cast<AutoencoderObjective>(objective)->encoder_input(input) -
         input.views[0])
            .pow(2)
            .mean()
            .item<double>();
    torch::optim::Adam adam(objective->trainable_parameters(), torch::optim::AdamOptions(3e-3));
    std::vector<double> losses;
    for (int step = 0; step < 30; ++step) {
      adam.zero_grad();
      const auto out = objective->compute(input);
      EXPECT_DOUBLE_EQ(out.metrics.at("mse"), out.loss.item<double>());
      EXPECT_NEAR(out.metrics.at("input_mse"), input_mse, 1e-9);
      out.loss.backward();
      adam.step();
      losses.push_back(out.loss.item<double>());
    }
    std::printf("autoencoder %s losses: first %.4f, last %.4f\n", noise.c_str(), losses.front(),
                losses.back());
    // Random images and a tiny model: the loss falls by a third or more in these steps (measured
    // 0.49-0.57 of the first), against none without learning.
    EXPECT_LT(losses.back(), 0.67 * losses.front());
  }
}

}  // namespace
}  // namespace selfsup
