// In-painting: the holes (exact place when centred, inside the view and keyed only by the sample
// when random), the encoder's input (zero exactly in the hole, untouched elsewhere), the masked
// loss against a naive per-pixel formula and its gradient (none outside the hole), learning, and
// the optional adversarial term (the joint loss recomputed from the module's own parts, the
// discriminator's step in end_step against a hand-made SGD step, its optimizer in checkpoints).

#include "selfsup/objectives/inpainting.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "own_optimizers_checkpoint.h"
#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

constexpr int64_t kSide = 16;
constexpr int64_t kChannels = 3;

Config small_config(const std::string& mask, double size) {
  Config config;
  config.pretext.task = "inpainting";
  config.pretext.inpainting.mask = mask;
  config.pretext.inpainting.size = size;
  config.pretext.decoder_width = 16;
  config.model.encoder = "convnet";
  config.model.width = 8;
  config.augment.size = kSide;
  config.seed = 11;
  return config;
}

// [B, 1, side, side]: 1 where top <= y < top + hole and left <= x < left + hole, by loops.
torch::Tensor square(const std::vector<std::pair<int64_t, int64_t>>& corners, int64_t hole,
                     int64_t side) {
  auto mask = torch::zeros({int64_t(corners.size()), 1, side, side});
  auto a = mask.accessor<float, 4>();
  for (size_t i = 0; i < corners.size(); ++i)
    for (int64_t y = corners[i].first; y < corners[i].first + hole; ++y)
      for (int64_t x = corners[i].second; x < corners[i].second + hole; ++x) a[i][0][y][x] = 1.0f;
  return mask;
}

// The (top, left) corner of a mask [1, side, side] holding one square: its first set pixel.
std::pair<int64_t, int64_t> corner_of(const torch::Tensor& mask) {
  const auto set = mask[0].nonzero();  // [n, 2], row-major order
  return {set[0][0].item<int64_t>(), set[0][1].item<int64_t>()};
}

TEST(InpaintingMask, CenterHoleHasExactCoordinates) {
  const auto keys = torch::arange(3, torch::kLong);
  InpaintingConfig center;
  // 16 px, size 0.5: an 8 px hole from (4, 4) to (11, 11).
  center.size = 0.5;
  EXPECT_EQ(inpainting_hole_side(center, 16), 8);
  EXPECT_TRUE(torch::equal(inpainting_mask(keys, center, 16, 0, 0),
                           square({{4, 4}, {4, 4}, {4, 4}}, 8, 16)));
  // 15 px, size 0.3: round(4.5) = 5 px, from ((15 - 5) / 2 = 5, 5); 13 px, size 0.5: round(6.5) =
  // 7 px from (3, 3).
  center.size = 0.3;
  EXPECT_EQ(inpainting_hole_side(center, 15), 5);
  EXPECT_TRUE(torch::equal(inpainting_mask(keys, center, 15, 0, 0),
                           square({{5, 5}, {5, 5}, {5, 5}}, 5, 15)));
  center.size = 0.5;
  EXPECT_TRUE(torch::equal(inpainting_mask(keys, center, 13, 0, 0),
                           square({{3, 3}, {3, 3}, {3, 3}}, 7, 13)));
}

TEST(InpaintingMask, RandomHoleLiesInsideAndDependsOnlyOnTheKey) {
  InpaintingConfig random;
  random.mask = "random";
  random.size = 0.25;  // 4 px of 16: corners 0 .. 12
  const int64_t hole = 4, last = kSide - hole;
  const auto keys = torch::arange(100, 300, torch::kLong);
  const auto masks = inpainting_mask(keys, random, kSide, /*seed=*/5, /*epoch=*/2);
  ASSERT_EQ(masks.sizes(), (std::vector<int64_t>{200, 1, kSide, kSide}));
  std::vector<std::pair<int64_t, int64_t>> corners;
  int64_t lowest = kSide, highest = -1;
  for (int64_t i = 0; i < keys.numel(); ++i) {
    corners.push_back(corner_of(masks[i]));
    for (const int64_t c : {corners.back().first, corners.back().second}) {
      lowest = std::min(lowest, c);
      highest = std::max(highest, c);
    }
  }
  // Each mask is exactly one hole x hole square inside the view (square() would write out of
  // bounds otherwise: checked first), and the corners reach both ends of their range.
  EXPECT_GE(lowest, 0);
  EXPECT_LE(highest, last);
  ASSERT_TRUE(lowest >= 0 && highest <= last);
  EXPECT_TRUE(torch::equal(masks, square(corners, hole, kSide)));
  EXPECT_EQ(lowest, 0);
  EXPECT_EQ(highest, last);

  // The same keys in another order, in a smaller batch: the same holes.
  const auto some = torch::tensor({250, 100, 171}, torch::kLong);
  const auto again = inpainting_mask(some, random, kSide, 5, 2);
  for (int64_t i = 0; i < some.numel(); ++i)
    EXPECT_TRUE(torch::equal(again[i], masks[some[i].item<int64_t>() - 100]));
  // Another epoch or seed moves them.
  EXPECT_FALSE(torch::equal(inpainting_mask(keys, random, kSide, 5, 3), masks));
  EXPECT_FALSE(torch::equal(inpainting_mask(keys, random, kSide, 6, 2), masks));
}

TEST(InpaintingObjective, EncoderInputIsZeroExactlyInTheHole) {
  for (const std::string mask : {"center", "random"}) {
    SCOPED_TRACE(mask);
    const auto config = small_config(mask, 0.375);  // 6 px holes
    InpaintingObjective objective(config, {kChannels, kSide},
                                  std::make_shared<LocalCommunicator>());
    torch::manual_seed(3);
    ObjectiveInput input;
    input.views = torch::randn({1, 4, kChannels, kSide, kSide}) + 3.0;  // no zero pixels
    input.keys = torch::tensor({7, 1, 30, 12}, torch::kLong);
    input.epoch = 4;
    const auto batch = objective.prepare(input);
    EXPECT_TRUE(torch::equal(batch.mask, inpainting_mask(input.keys, config.pretext.inpainting,
                                                         kSide, config.seed, input.epoch)));
    EXPECT_TRUE(torch::equal(batch.target, input.views[0]));
    // Per pixel, by loops: 0 in all channels in the hole, the view's value elsewhere.
    auto m = batch.mask.accessor<float, 4>();
    auto v = input.views.accessor<float, 5>();
    auto c = batch.context.accessor<float, 4>();
    int64_t zeros = 0;
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t ch = 0; ch < kChannels; ++ch)
        for (int64_t y = 0; y < kSide; ++y)
          for (int64_t x = 0; x < kSide; ++x) {
            const float expected = m[i][0][y][x] == 1.0f ? 0.0f : v[0][i][ch][y][x];
            EXPECT_EQ(c[i][ch][y][x], expected);
            zeros += c[i][ch][y][x] == 0.0f;
          }
    EXPECT_EQ(zeros, 4 * kChannels * 6 * 6);
  }
}

TEST(MaskedMse, MatchesNaiveFormulaAndHasNoGradientOutsideTheMask) {
  torch::manual_seed(4);
  const int64_t batch = 3, side = 5;
  auto prediction = torch::randn({batch, kChannels, side, side}, torch::kDouble).requires_grad_();
  const auto target = torch::randn({batch, kChannels, side, side}, torch::kDouble);
  // Holes of different sizes (1, 4 and 9 pixels), so that the per-sample mean is seen.
  const auto mask = torch::zeros({batch, 1, side, side}, torch::kDouble);
  mask[0][0][0][0] = 1.0;
  mask[1][0].slice(0, 1, 3).slice(1, 2, 4).fill_(1.0);
  mask[2][0].slice(0, 2, 5).slice(1, 1, 4).fill_(1.0);
  ASSERT_TRUE(torch::equal(mask.sum({1, 2, 3}), torch::tensor({1.0, 4.0, 9.0}, torch::kDouble)));
  const auto loss = masked_mse(prediction, target, mask);

  // Naive: per sample, the squared error summed over masked pixels and channels / their count.
  double expected = 0.0;
  const auto detached = prediction.detach();
  auto p = detached.accessor<double, 4>();
  auto t = target.accessor<double, 4>();
  auto m = mask.accessor<double, 4>();
  for (int64_t i = 0; i < batch; ++i) {
    double sum = 0.0, count = 0.0;
    for (int64_t ch = 0; ch < kChannels; ++ch)
      for (int64_t y = 0; y < side; ++y)
        for (int64_t x = 0; x < side; ++x)
          if (m[i][0][y][x] == 1.0) {
            sum += (p[i][ch][y][x] - t[i][ch][y][x]) * (p[i][ch][y][x] - t[i][ch][y][x]);
            count += 1.0;
          }
    expected += sum / count / double(batch);
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);

  loss.backward();
  const auto grad = prediction.grad();
  const auto outside = (mask == 0).expand_as(grad);
  EXPECT_EQ(grad.masked_select(outside).abs().max().item<double>(), 0.0);
  EXPECT_GT(grad.masked_select(~outside).abs().min().item<double>(), 0.0);
  // Inside: 2 (p - t) / (batch * count_i), the derivative of the formula above.
  const auto counts = mask.sum({1, 2, 3}, /*keepdim=*/true) * double(kChannels);
  EXPECT_TRUE(torch::allclose(grad, 2.0 * (prediction.detach() - target) * mask / counts / batch,
                              1e-12, 1e-14));
}

TEST(InpaintingObjective, LossLearnsOnAFixedBatch) {
  auto config = small_config("random", 0.5);
  const auto objective =
      make_objective(config, kChannels, std::make_shared<LocalCommunicator>(), kSide);
  ASSERT_NE(std::dynamic_pointer_cast<InpaintingObjective>(objective), nullptr);
  torch::manual_seed(5);
  ObjectiveInput input;
  // Smooth images (bilinear from 4 x 4), so that the hole is predictable from its context.
  namespace F = torch::nn::functional;
  input.views = F::interpolate(torch::randn({8, kChannels, 4, 4}),
                               F::InterpolateFuncOptions()
                                   .size(std::vector<int64_t>{kSide, kSide})
                                   .mode(torch::kBilinear)
                                   .align_corners(false))
                    .unsqueeze(0);
  input.keys = torch::arange(8, torch::kLong);
  torch::optim::Adam adam(objective->trainable_parameters(), torch::optim::AdamOptions(3e-3));
  std::vector<double> losses;
  for (int step = 0; step < 30; ++step) {
    adam.zero_grad();
    const auto out = objective->compute(input);
    EXPECT_DOUBLE_EQ(out.metrics.at("hole_mse"), out.loss.item<double>());
    EXPECT_TRUE(out.metrics.count("context_mse"));
    out.loss.backward();
    adam.step();
    losses.push_back(out.loss.item<double>());
  }
  std::printf("inpainting losses: first %.4f, last %.4f\n", losses.front(), losses.back());
  // Random images and a tiny model: the loss falls by a third or more in these steps (measured
  // 0.49-0.57 of the first), against none without learning.
  EXPECT_LT(losses.back(), 0.67 * losses.front());
}

// The adversarial variant: plain SGD without momentum or weight decay, so that the
// discriminator's step can be written by hand, built at a learning rate (1.0) other than the
// step's (kStepLr), so that a step at the wrong one shows.
constexpr double kAdversarialWeight = 0.25;  // large enough that a wrong term moves the loss
constexpr double kStepLr = 0.05;

Config adversarial_config() {
  auto config = small_config("random", 0.375);  // 6 px holes
  config.pretext.inpainting.adversarial_weight = kAdversarialWeight;
  config.optim.name = "sgd";
  config.optim.lr = 1.0;
  config.optim.momentum = 0.0;
  config.optim.weight_decay = 0.0;
  return config;
}

ObjectiveInput adversarial_input(int64_t epoch) {
  torch::manual_seed(6);
  ObjectiveInput input;
  input.views = torch::randn({1, 4, kChannels, kSide, kSide});
  input.keys = torch::tensor({9, 2, 40, 17}, torch::kLong);
  input.epoch = epoch;
  input.lr = kStepLr;
  return input;
}

std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> copies;
  for (const auto& t : tensors) copies.push_back(t.detach().clone());
  return copies;
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

TEST(InpaintingObjective, WithoutTheAdversarialTermThereIsNoDiscriminator) {
  const auto config = small_config("random", 0.375);
  ASSERT_EQ(config.pretext.inpainting.adversarial_weight, 0.0);  // the default
  torch::manual_seed(7);
  InpaintingObjective objective(config, {kChannels, kSide}, std::make_shared<LocalCommunicator>());
  // The tensors and checkpoint files of the L2-only task, as before the adversarial term existed.
  for (const auto& item : objective.named_parameters())
    EXPECT_TRUE(item.key().rfind("encoder.", 0) == 0 || item.key().rfind("decoder.", 0) == 0)
        << item.key();
  EXPECT_TRUE(objective.discriminator().is_empty());
  EXPECT_TRUE(objective.own_optimizers().empty());
  EXPECT_EQ(objective.trainable_parameters().size(), objective.parameters().size());

  // The loss is the hole's L2 alone, recomputed from the module's own encoder and decoder.
  const auto input = adversarial_input(0);
  const auto batch = objective.prepare(input);
  auto decoder = objective.decoder();
  const auto prediction = decoder(objective.encoder()->forward(batch.context));
  const double expected = masked_mse(prediction, batch.target, batch.mask).item<double>();
  const auto out = objective.compute(input);
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-6 * std::max(1.0, expected));
  EXPECT_EQ(out.metrics.size(), 2u);  // hole_mse and context_mse only
  EXPECT_EQ(out.metrics.count("adversarial"), 0u);
  out.loss.backward();
  objective.end_step(/*applied=*/true);  // nothing to step
  EXPECT_EQ(objective.discriminator_steps(), 0);
}

TEST(InpaintingObjective, TheAdversarialTermJoinsTheLossAndTheDiscriminatorStepsInEndStep) {
  const auto config = adversarial_config();
  torch::manual_seed(8);
  InpaintingObjective objective(config, {kChannels, kSide}, std::make_shared<LocalCommunicator>());
  auto discriminator = objective.discriminator();
  ASSERT_FALSE(discriminator.is_empty());
  EXPECT_TRUE(objective.named_parameters().contains("discriminator.fc.weight"));
  ASSERT_EQ(objective.own_optimizers().count("discriminator"), 1u);
  // The Trainer's optimizer gets the encoder and the decoder, not the discriminator.
  auto decoder = objective.decoder();
  const auto trainable = objective.trainable_parameters();
  EXPECT_EQ(trainable.size(),
            objective.encoder()->parameters().size() + decoder->parameters().size());
  for (const auto& p : discriminator->parameters())
    for (const auto& t : trainable) EXPECT_FALSE(p.is_same(t));

  // The joint loss from the module's own parts: the fake is the prediction in the hole and the
  // real view around it (where the context equals the view).
  const auto input = adversarial_input(1);
  const auto batch = objective.prepare(input);
  const auto prediction = decoder(objective.encoder()->forward(batch.context));
  const auto fake = torch::where(batch.mask.to(torch::kBool), prediction, batch.target);
  const auto fake_logits = discriminator(fake);
  namespace F = torch::nn::functional;
  const auto l2 = masked_mse(prediction, batch.target, batch.mask);
  const auto adversarial = F::softplus(-fake_logits).mean();
  const auto expected = (1.0 - kAdversarialWeight) * l2 + kAdversarialWeight * adversarial;
  const auto out = objective.compute(input);
  const double tolerance = 1e-6 * std::max(1.0, expected.item<double>());
  EXPECT_NEAR(out.loss.item<double>(), expected.item<double>(), tolerance);
  // The adversarial term weighs in: the loss is not the L2 term alone.
  EXPECT_GT(std::abs(out.loss.item<double>() - l2.item<double>()), 100 * tolerance);
  EXPECT_NEAR(out.metrics.at("hole_mse"), l2.item<double>(), tolerance);
  EXPECT_NEAR(out.metrics.at("adversarial"), adversarial.item<double>(), tolerance);
  EXPECT_NEAR(out.metrics.at("d_fake"), torch::sigmoid(fake_logits).mean().item<double>(), 1e-6);
  EXPECT_NEAR(out.metrics.at("d_real"),
              torch::sigmoid(discriminator(batch.target)).mean().item<double>(), 1e-6);

  // The adversarial term's gradient reaches the decoder (through the prediction), as the formula
  // says: d loss = (1 - w) d l2 + w d adversarial, with a non-zero second part.
  const auto decoder_parameters = decoder->parameters();
  const auto loss_grads = torch::autograd::grad({out.loss}, decoder_parameters, {},
                                                /*retain_graph=*/true);
  const auto expected_grads = torch::autograd::grad({expected}, decoder_parameters, {},
                                                    /*retain_graph=*/true);
  const auto adversarial_grads = torch::autograd::grad({adversarial}, decoder_parameters, {},
                                                       /*retain_graph=*/true);
  double adversarial_norm = 0.0;
  for (size_t i = 0; i < decoder_parameters.size(); ++i) {
    EXPECT_TRUE(torch::allclose(loss_grads[i], expected_grads[i], 1e-4, 1e-7)) << i;
    adversarial_norm += adversarial_grads[i].abs().sum().item<double>();
  }
  EXPECT_GT(adversarial_norm, 1e-6);

  // The discriminator's step, by hand: SGD at the step's learning rate on
  // L_D = mean softplus(-D(real)) + mean softplus(D(fake)), from zero gradients (the generator
  // term's backward below leaves gradients in D that must not enter its step).
  const auto d_parameters = discriminator->parameters();
  const auto d_before = clones(d_parameters);
  const auto d_loss = F::softplus(-discriminator(batch.target)).mean() +
                      F::softplus(discriminator(fake.detach())).mean();
  const auto d_grads = torch::autograd::grad({d_loss}, d_parameters);
  const auto encoder_before = clones(objective.encoder()->parameters());
  const auto decoder_before = clones(decoder_parameters);

  out.loss.backward();  // as the Trainer does; its optimizer does not step here
  double stale = 0.0;
  for (const auto& p : d_parameters)
    if (p.grad().defined()) stale += p.grad().abs().sum().item<double>();
  EXPECT_GT(stale, 0.0);  // what end_step must zero first
  objective.end_step(/*applied=*/true);
  EXPECT_EQ(objective.discriminator_steps(), 1);
  for (size_t i = 0; i < d_parameters.size(); ++i) {
    EXPECT_FALSE(torch::equal(d_parameters[i], d_before[i])) << i;
    EXPECT_TRUE(torch::allclose(d_parameters[i], d_before[i] - kStepLr * d_grads[i], 1e-5, 1e-7))
        << "discriminator parameter " << i << ": max error "
        << (d_parameters[i] - (d_before[i] - kStepLr * d_grads[i])).abs().max().item<double>();
  }
  // end_step steps the discriminator only.
  EXPECT_TRUE(all_equal(clones(objective.encoder()->parameters()), encoder_before));
  EXPECT_TRUE(all_equal(clones(decoder_parameters), decoder_before));

  // A skipped step leaves the discriminator alone, and drops the pending views: a later
  // end_step(true) without a compute has nothing to step either.
  const auto d_after = clones(d_parameters);
  objective.compute(adversarial_input(2)).loss.backward();
  objective.end_step(/*applied=*/false);
  objective.end_step(/*applied=*/true);
  EXPECT_EQ(objective.discriminator_steps(), 1);
  EXPECT_TRUE(all_equal(clones(d_parameters), d_after));
}

TEST(InpaintingObjective, TheDiscriminatorsOptimizerIsCheckpointed) {
  auto config = adversarial_config();
  config.optim.name = "adam";  // state beyond the weights: the moments
  config.optim.lr = 1e-3;
  expect_own_optimizer_checkpointed(
      config,
      [&] {
        return make_objective(config, kChannels, std::make_shared<LocalCommunicator>(), kSide);
      },
      [](Objective& o, torch::optim::Optimizer& opt, int64_t epoch) {
        opt.zero_grad();
        auto input = adversarial_input(epoch);
        input.lr = 1e-3;
        o.compute(input).loss.backward();
        opt.step();
        o.end_step(true);
      },
      "discriminator");
}

}  // namespace
}  // namespace selfsup
