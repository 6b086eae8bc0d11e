// Jigsaw puzzles: the permutation set (distinct, far apart, deterministic, each pick the best by
// brute force), the tiles (cut from the right cells at the right offsets of an image whose pixels
// encode their coordinates, keyed by sample and not by batch position), the loss against a
// cross-entropy written out, and that it learns.

#include "selfsup/objectives/jigsaw.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <iostream>
#include <memory>
#include <set>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {
namespace {

Config jigsaw_config(int64_t permutations) {
  Config config;
  config.seed = 7;
  config.pretext.task = "jigsaw";
  config.pretext.jigsaw.permutations = permutations;
  config.augment.views = 1;
  config.model.width = 4;
  config.model.head_hidden = 32;
  return config;
}

std::shared_ptr<JigsawObjective> make_jigsaw(const Config& config, int64_t channels, int64_t side) {
  auto objective = std::dynamic_pointer_cast<JigsawObjective>(
      make_objective(config, channels, std::make_shared<LocalCommunicator>(), side));
  EXPECT_TRUE(objective);
  return objective;
}

// ---- the permutation set ------------------------------------------------------------------------

TEST(JigsawPermutations, AreDistinctFarApartAndFast) {
  const int64_t count = 100;
  const auto start = std::chrono::steady_clock::now();
  const auto set = max_hamming_permutations(count, /*seed=*/0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(set.sizes(), torch::IntArrayRef({count, 9}));
  ASSERT_EQ(set.scalar_type(), torch::kLong);
  std::set<std::vector<int64_t>> distinct;
  for (int64_t i = 0; i < count; ++i) {
    const auto row = set[i].contiguous();
    std::vector<int64_t> cells(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + 9);
    distinct.insert(cells);
    std::sort(cells.begin(), cells.end());
    EXPECT_EQ(cells, std::vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7, 8})) << "row " << i;
  }
  EXPECT_EQ(int64_t(distinct.size()), count);

  // Far apart: at least as far as a random set of the same size (a few of those, seeded).
  const int64_t chosen = min_hamming_distance(set);
  int64_t best_random = 0;
  torch::manual_seed(11);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < count; ++i) rows.push_back(torch::randperm(9, torch::kLong));
    best_random = std::max(best_random, min_hamming_distance(torch::stack(rows)));
  }
  std::cout << "[ jigsaw  ] " << count << " permutations: minimum Hamming distance " << chosen
            << " (best of 5 random sets: " << best_random << "), built in " << seconds << " s\n";
  EXPECT_GE(chosen, best_random);
  EXPECT_GE(chosen, 6);  // Noroozi & Favaro's maximal sets: about 6-8
#ifdef NDEBUG
  EXPECT_LT(seconds, 1.0);
#endif
}

TEST(JigsawPermutations, EachPickIsTheFarthestOfAllByBruteForce) {
  // A second implementation of one greedy step: over all 9! permutations (std::next_permutation),
  // the largest minimum distance to the ones chosen before must be the one the set's next row has.
  const int64_t count = 6;
  const auto set = max_hamming_permutations(count, /*seed=*/5);
  const auto rows = set.accessor<int64_t, 2>();
  auto distance = [&](const std::array<int64_t, 9>& a, int64_t row) {
    int64_t d = 0;
    for (int p = 0; p < 9; ++p) d += a[p] != rows[row][p];
    return d;
  };
  for (int64_t k = 1; k < count; ++k) {
    std::array<int64_t, 9> candidate{0, 1, 2, 3, 4, 5, 6, 7, 8};
    int64_t best = 0;
    do {
      int64_t nearest = 9;
      for (int64_t j = 0; j < k; ++j) nearest = std::min(nearest, distance(candidate, j));
      best = std::max(best, nearest);
    } while (std::next_permutation(candidate.begin(), candidate.end()));
    std::array<int64_t, 9> picked;
    for (int p = 0; p < 9; ++p) picked[p] = rows[k][p];
    int64_t nearest = 9;
    for (int64_t j = 0; j < k; ++j) nearest = std::min(nearest, distance(picked, j));
    EXPECT_EQ(nearest, best) << "pick " << k;
  }
}

TEST(JigsawPermutations, DependOnTheSeedOnlyAndAreACheckpointedBuffer) {
  EXPECT_TRUE(torch::equal(max_hamming_permutations(30, 1), max_hamming_permutations(30, 1)));
  EXPECT_FALSE(torch::equal(max_hamming_permutations(30, 1), max_hamming_permutations(30, 2)));
  auto config = jigsaw_config(12);
  auto objective = make_jigsaw(config, 1, 24);
  const auto buffers = objective->named_buffers();
  ASSERT_TRUE(buffers.contains("permutations"));
  EXPECT_TRUE(torch::equal(buffers["permutations"], max_hamming_permutations(12, config.seed)));
  EXPECT_THROW(max_hamming_permutations(0, 1), Error);
  EXPECT_THROW(max_hamming_permutations(362881, 1), Error);
}

// ---- the tiles ----------------------------------------------------------------------------------

// [B, 3, side, side]: channel 0 holds the row of each pixel, channel 1 its column, channel 2 the
// image's `tag`, so a tile says where it came from.
torch::Tensor coordinate_images(const std::vector<int64_t>& tags, int64_t side) {
  const auto rows = torch::arange(side, torch::kFloat).view({side, 1}).expand({side, side});
  const auto cols = torch::arange(side, torch::kFloat).view({1, side}).expand({side, side});
  std::vector<torch::Tensor> images;
  for (const int64_t tag : tags)
    images.push_back(torch::stack({rows, cols, torch::full({side, side}, float(tag))}));
  return torch::stack(images);
}

TEST(JigsawTiles, ComeFromTheirCellsAtTheirOffsets) {
  auto config = jigsaw_config(10);
  config.pretext.jigsaw.gap = 0.3;
  const int64_t side = 20;  // cells of 6 px (two pixels left over), tiles of 4 px
  auto objective = make_jigsaw(config, 3, side);
  const auto geometry = objective->geometry();
  ASSERT_EQ(geometry.cell, 6);
  ASSERT_EQ(geometry.tile, 4);
  const std::vector<int64_t> keys{5, 17, 2, 40};
  const auto images = coordinate_images(keys, side);
  const auto puzzles = objective->make_puzzles(images, torch::tensor(keys), /*epoch=*/3);
  const int64_t batch = int64_t(keys.size());
  ASSERT_EQ(puzzles.tiles.sizes(), torch::IntArrayRef({batch, 9, 3, 4, 4}));

  // The draws are the keyed ones of their streams.
  const auto labels =
      keyed_integers(torch::tensor(keys), 1, 10, config.seed, 3, PretextStream::kJigsawPermutation);
  EXPECT_TRUE(torch::equal(puzzles.labels, labels.view({batch})));
  const auto offsets =
      keyed_integers(torch::tensor(keys), 18, 3, config.seed, 3, PretextStream::kJigsawOffsets);
  EXPECT_TRUE(torch::equal(puzzles.offsets, offsets.view({batch, 9, 2})));

  const auto permutations = objective->permutations().accessor<int64_t, 2>();
  const auto tiles = puzzles.tiles.accessor<float, 5>();
  const auto offset = puzzles.offsets.accessor<int64_t, 3>();
  const auto label = puzzles.labels.accessor<int64_t, 1>();
  for (int64_t b = 0; b < batch; ++b) {
    // Reassemble the image from its shuffled tiles: every tile goes back where it came from.
    auto canvas = torch::full({3, side, side}, -1.0f);
    for (int64_t p = 0; p < 9; ++p) {
      const int64_t cell = permutations[label[b]][p];  // the cell shown at position p
      EXPECT_EQ(puzzles.cells[b][p].item<int64_t>(), cell);
      const int64_t dy = offset[b][cell][0], dx = offset[b][cell][1];
      EXPECT_TRUE(dy >= 0 && dy <= 2 && dx >= 0 && dx <= 2) << dy << ", " << dx;
      const int64_t top = cell / 3 * 6 + dy, left = cell % 3 * 6 + dx;
      for (int64_t y = 0; y < 4; ++y)
        for (int64_t x = 0; x < 4; ++x) {
          ASSERT_EQ(tiles[b][p][0][y][x], float(top + y)) << "sample " << b << ", position " << p;
          ASSERT_EQ(tiles[b][p][1][y][x], float(left + x)) << "sample " << b << ", position " << p;
          ASSERT_EQ(tiles[b][p][2][y][x], float(keys[b]));
        }
      canvas.narrow(1, top, 4).narrow(2, left, 4).copy_(puzzles.tiles[b][p]);
    }
    const auto placed = canvas[0] >= 0;
    EXPECT_EQ(placed.sum().item<int64_t>(), 9 * 16);
    EXPECT_TRUE(torch::equal(canvas.masked_select(placed.expand({3, side, side})),
                             images[b].masked_select(placed.expand({3, side, side}))));
  }
}

TEST(JigsawTiles, OffsetsCoverTheWholeSlackOfACell) {
  auto config = jigsaw_config(10);
  config.pretext.jigsaw.gap = 0.3;
  auto objective = make_jigsaw(config, 1, 20);
  const auto keys = torch::arange(200, torch::kLong);
  const auto puzzles = objective->make_puzzles(torch::zeros({200, 1, 20, 20}), keys, 0);
  EXPECT_EQ(puzzles.offsets.min().item<int64_t>(), 0);
  EXPECT_EQ(puzzles.offsets.max().item<int64_t>(), 2);  // cell 6 - tile 4
  // Every permutation of the set is used.
  const auto labels = puzzles.labels.accessor<int64_t, 1>();
  std::set<int64_t> used;
  for (int64_t i = 0; i < labels.size(0); ++i) used.insert(labels[i]);
  EXPECT_EQ(used.size(), 10u);
}

TEST(JigsawTiles, DependOnTheSampleNotItsBatchPosition) {
  auto config = jigsaw_config(10);
  auto objective = make_jigsaw(config, 3, 24);
  // Each image is drawn from its key, so the same key means the same image.
  auto images_of = [](const std::vector<int64_t>& keys) {
    std::vector<torch::Tensor> images;
    for (const int64_t key : keys) {
      torch::manual_seed(uint64_t(key));
      images.push_back(torch::randn({3, 24, 24}));
    }
    return torch::stack(images);
  };
  const std::vector<int64_t> first{3, 8, 11}, second{11, 40, 3, 9};
  const auto a = objective->make_puzzles(images_of(first), torch::tensor(first), 2);
  const auto b = objective->make_puzzles(images_of(second), torch::tensor(second), 2);
  EXPECT_TRUE(torch::equal(a.tiles[2], b.tiles[0]));  // key 11
  EXPECT_TRUE(torch::equal(a.tiles[0], b.tiles[2]));  // key 3
  EXPECT_EQ(a.labels[2].item<int64_t>(), b.labels[0].item<int64_t>());
  // Another epoch draws again.
  const auto later = objective->make_puzzles(images_of(first), torch::tensor(first), 3);
  EXPECT_FALSE(torch::equal(a.offsets, later.offsets) && torch::equal(a.labels, later.labels));
}

// ---- the loss -----------------------------------------------------------------------------------

TEST(Jigsaw, LossIsTheCrossEntropyOverThePermutations) {
  auto config = jigsaw_config(10);
  auto objective = make_jigsaw(config, 1, 24);
  torch::manual_seed(3);
  const int64_t batch = 5;
  const auto views = torch::randn({1, batch, 1, 24, 24});
  ObjectiveInput input;
  input.views = views;
  input.keys = torch::tensor({4, 9, 1, 30, 2}, torch::kLong);
  input.epoch = 1;
  const auto out = objective->compute(input);
  EXPECT_EQ(out.loss.dim(), 0);

  // By hand: the puzzles' tiles through the encoder in position-major order (batch norm sees the
  // same B*9 tiles), each puzzle's features side by side in position order, the head, and the
  // cross-entropy written out.
  const auto puzzles = objective->make_puzzles(views[0], input.keys, input.epoch);
  auto head = std::dynamic_pointer_cast<ProjectionHeadImpl>(objective->named_children()["head"]);
  ASSERT_TRUE(head);
  std::vector<torch::Tensor> per_position;  // 9 x [B, F]
  const auto features = objective->encoder()->forward(puzzles.tiles.transpose(0, 1).flatten(0, 1));
  for (int64_t p = 0; p < 9; ++p) per_position.push_back(features.narrow(0, p * batch, batch));
  const auto logits = head->forward(torch::cat(per_position, /*dim=*/1));  // [B, 9F]
  ASSERT_EQ(logits.sizes(), torch::IntArrayRef({batch, 10}));
  const auto log_p = torch::log_softmax(logits.to(torch::kDouble), 1);
  const double expected = -log_p.gather(1, puzzles.labels.unsqueeze(1)).mean().item<double>();
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-5);
  EXPECT_DOUBLE_EQ(out.metrics.at("accuracy"),
                   logits.argmax(1).eq(puzzles.labels).to(torch::kDouble).mean().item<double>());
}

TEST(Jigsaw, LearnsOnAFixedBatch) {
  auto config = jigsaw_config(8);
  config.pretext.jigsaw.gap = 0.25;
  auto objective = make_jigsaw(config, 1, 24);  // cells of 8 px, tiles of 6 px
  // Smooth random images (upsampled noise), so that tiles have content to recognise.
  torch::manual_seed(6);
  const int64_t batch = 12;
  namespace F = torch::nn::functional;
  const auto images =
      F::interpolate(torch::randn({batch, 1, 6, 6}), F::InterpolateFuncOptions()
                                                         .size(std::vector<int64_t>{24, 24})
                                                         .mode(torch::kBilinear)
                                                         .align_corners(false));
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
