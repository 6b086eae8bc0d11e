// Rotation prediction: the rotated batch against index arithmetic done by hand (not torch::rot90),
// the labels, the loss against a cross-entropy computed from the logits, and that it learns.

#include "selfsup/objectives/rotation.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <memory>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {
namespace {

Config rotation_config() {
  Config config;
  config.seed = 3;
  config.pretext.task = "rotation";
  config.augment.views = 1;
  config.model.width = 4;
  config.model.head_hidden = 16;
  return config;
}

// Where pixel (i, j) of a side x side image lands after k counter-clockwise quarter turns:
// one turn moves (i, j) to (side - 1 - j, i) (the row index runs down, so the top row becomes
// the left column read upwards).
std::pair<int64_t, int64_t> rotated_position(int64_t i, int64_t j, int64_t k, int64_t side) {
  for (int64_t turn = 0; turn < k; ++turn) {
    const int64_t row = side - 1 - j;
    j = i;
    i = row;
  }
  return {i, j};
}

TEST(Rotation, BatchHoldsTheFourQuarterTurnsOfEveryImage) {
  torch::manual_seed(1);
  const int64_t batch = 3, channels = 2, side = 5;  // odd side: the centre pixel stays put
  const auto images = torch::randn({batch, channels, side, side});
  const auto rotated = rotate_batch(images);
  ASSERT_EQ(rotated.images.sizes(), torch::IntArrayRef({4 * batch, channels, side, side}));
  ASSERT_EQ(rotated.labels.sizes(), torch::IntArrayRef({4 * batch}));
  const auto in = images.accessor<float, 4>();
  const auto out = rotated.images.accessor<float, 4>();
  const auto labels = rotated.labels.accessor<int64_t, 1>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t k = 0; k < 4; ++k) {
      const int64_t row = 4 * b + k;
      EXPECT_EQ(labels[row], k);
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < side; ++i)
          for (int64_t j = 0; j < side; ++j) {
            const auto [y, x] = rotated_position(i, j, k, side);
            ASSERT_EQ(out[row][c][y][x], in[b][c][i][j])
                << "image " << b << ", " << k << " turns, pixel (" << i << ", " << j << ")";
          }
    }
  }
  // A worked case of one turn on a 3x3 image: [[0 1 2] [3 4 5] [6 7 8]] -> [[2 5 8] [1 4 7]
  // [0 3 6]] (the top row becomes the left column, read upwards).
  const auto small = rotate_batch(torch::arange(9, torch::kFloat).view({1, 1, 3, 3}));
  EXPECT_TRUE(
      torch::equal(small.images[1][0],
                   torch::tensor({2.f, 5.f, 8.f, 1.f, 4.f, 7.f, 0.f, 3.f, 6.f}).view({3, 3})));
}

TEST(Rotation, LossIsTheCrossEntropyOfTheRotationsAndAccuracyCounts) {
  const auto config = rotation_config();
  auto objective = make_objective(config, 1, std::make_shared<LocalCommunicator>(), 8);
  EXPECT_EQ(objective->name(), "rotation");
  torch::manual_seed(2);
  const int64_t batch = 4;
  const auto views = torch::randn({1, batch, 1, 8, 8});
  const auto out = objective->compute(views);
  EXPECT_EQ(out.loss.dim(), 0);
  EXPECT_EQ(out.candidates_per_anchor, 0);

  // The same loss by hand: the rotations in another order (rotation-major; batch norm does not
  // care), through the objective's own encoder and head, and the cross-entropy written out.
  auto head = std::dynamic_pointer_cast<ProjectionHeadImpl>(objective->named_children()["head"]);
  ASSERT_TRUE(head);
  std::vector<torch::Tensor> turned;
  for (int64_t k = 0; k < 4; ++k) turned.push_back(torch::rot90(views[0], k, {2, 3}));
  const auto logits = head->forward(objective->encoder()->forward(torch::cat(turned)));
  const auto labels = torch::arange(4, torch::kLong).repeat_interleave(batch);  // [4B]
  const auto log_p = torch::log_softmax(logits.to(torch::kDouble), 1);
  const double expected = -log_p.gather(1, labels.unsqueeze(1)).mean().item<double>();
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-5);
  const double expected_accuracy =
      logits.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>();
  EXPECT_DOUBLE_EQ(out.metrics.at("accuracy"), expected_accuracy);
  // Close to log 4 at initialisation (a head that knows nothing yet).
  EXPECT_NEAR(out.loss.item<double>(), std::log(4.0), 0.5);

  // The views must be [1, B, C, side, side].
  EXPECT_THROW(objective->compute(torch::randn({2, batch, 1, 8, 8})), Error);
}

TEST(Rotation, LearnsOnAFixedBatch) {
  auto config = rotation_config();
  auto objective = make_objective(config, 1, std::make_shared<LocalCommunicator>(), 12);
  // Images with an up and a down: a bright bar near the top and a dot below it, at random
  // positions, so the rotation shows.
  torch::manual_seed(4);
  const int64_t batch = 8;
  auto images = 0.1 * torch::randn({batch, 1, 12, 12});
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t top = b % 3, left = b % 4;
    images[b][0].narrow(0, top, 2).narrow(1, left, 7).add_(2.0);
    images[b][0][top + 6][left + 3].add_(2.0);
  }
  const auto views = images.unsqueeze(0);
  torch::optim::Adam optimizer(objective->trainable_parameters(), torch::optim::AdamOptions(3e-3));
  double first = 0.0, last = 0.0, last_accuracy = 0.0;
  for (int step = 0; step < 30; ++step) {
    optimizer.zero_grad();
    const auto out = objective->compute(views);
    out.loss.backward();
    optimizer.step();
    if (step == 0) first = out.loss.item<double>();
    last = out.loss.item<double>();
    last_accuracy = out.metrics.at("accuracy");
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
  EXPECT_GE(last_accuracy, 0.75);
}

}  // namespace
}  // namespace selfsup
