#include "selfsup/objectives/jigsaw.h"

#include <algorithm>
#include <array>
#include <numeric>
#include <vector>

#include "pretext_parts.h"
#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

// The stream of the draw that picks the first permutation of the set (not a per-sample draw:
// the set depends on the run's seed only).
constexpr uint64_t kPermutationSetStream = 0x6a165a5e7ull;

constexpr int64_t kAllPermutations = 362880;  // 9!

}  // namespace

torch::Tensor max_hamming_permutations(int64_t count, uint64_t seed) {
  SELFSUP_CHECK(count >= 1 && count <= kAllPermutations, "jigsaw: cannot choose ", count,
                " distinct permutations of 9 cells; pretext.jigsaw.permutations must be in [1, ",
                kAllPermutations, "]");
  // All 9! permutations in lexicographic order, stored position-major (cells[p][i] = the cell at
  // position p of permutation i) so that the distance loop below runs over contiguous bytes.
  std::array<std::vector<uint8_t>, kJigsawCells> cells;
  for (auto& column : cells) column.resize(kAllPermutations);
  std::array<uint8_t, kJigsawCells> permutation;
  std::iota(permutation.begin(), permutation.end(), uint8_t(0));
  for (int64_t i = 0; i < kAllPermutations; ++i) {
    for (int64_t p = 0; p < kJigsawCells; ++p) cells[p][i] = permutation[p];
    std::next_permutation(permutation.begin(), permutation.end());
  }

  // Greedy max-min selection: min_distance[i] is the smallest Hamming distance of permutation i
  // to the chosen set (0 once chosen, so nothing is chosen twice).
  std::vector<uint8_t> min_distance(kAllPermutations, uint8_t(kJigsawCells + 1));
  KeyedRng rng(seed, 0, 0, kPermutationSetStream);
  int64_t next = rng.integer(0, kAllPermutations - 1);
  auto chosen = torch::empty({count, kJigsawCells}, torch::kLong);
  auto chosen_rows = chosen.accessor<int64_t, 2>();
  for (int64_t k = 0; k < count; ++k) {
    std::array<uint8_t, kJigsawCells> added;
    for (int64_t p = 0; p < kJigsawCells; ++p) {
      added[p] = cells[p][next];
      chosen_rows[k][p] = added[p];
    }
    if (k + 1 == count) break;
    std::array<const uint8_t*, kJigsawCells> column;
    for (int64_t p = 0; p < kJigsawCells; ++p) column[p] = cells[p].data();
    uint8_t* best = min_distance.data();
    for (int64_t i = 0; i < kAllPermutations; ++i) {
      uint8_t distance = 0;
      for (int64_t p = 0; p < kJigsawCells; ++p) distance += uint8_t(column[p][i] != added[p]);
      best[i] = std::min(best[i], distance);
    }
    next = std::max_element(min_distance.begin(), min_distance.end()) - min_distance.begin();
  }
  return chosen;
}

int64_t min_hamming_distance(const torch::Tensor& permutations) {
  SELFSUP_CHECK(permutations.dim() == 2 && permutations.size(0) >= 2,
                "min_hamming_distance: expected [P >= 2, n] permutations, got ",
                permutations.sizes());
  const auto rows = permutations.to(torch::kCPU, torch::kLong).contiguous();
  const auto table = rows.accessor<int64_t, 2>();
  int64_t smallest = rows.size(1);
  for (int64_t a = 0; a < rows.size(0); ++a) {
    for (int64_t b = a + 1; b < rows.size(0); ++b) {
      int64_t distance = 0;
      for (int64_t p = 0; p < rows.size(1); ++p) distance += table[a][p] != table[b][p];
      smallest = std::min(smallest, distance);
    }
  }
  return smallest;
}

torch::Tensor cut_jigsaw_tiles(const torch::Tensor& images, const torch::Tensor& cells,
                               const torch::Tensor& offsets, const JigsawGeometry& geometry) {
  const int64_t cell = geometry.cell;
  const int64_t tile = geometry.tile;
  SELFSUP_CHECK(images.dim() == 4 && images.size(2) >= 3 * cell && images.size(3) >= 3 * cell,
                "jigsaw: expected images [B, C, H, W] with H, W >= 3 x ", cell, " px, got ",
                images.sizes());
  SELFSUP_CHECK(tile >= 1 && tile <= cell, "jigsaw: a tile of ", tile,
                " px does not fit a cell of ", cell, " px");
  const int64_t batch = images.size(0);
  SELFSUP_CHECK(cells.sizes() == torch::IntArrayRef({batch, kJigsawCells}),
                "jigsaw: expected cells [", batch, ", 9], got ", cells.sizes());
  SELFSUP_CHECK(offsets.sizes() == torch::IntArrayRef({batch, kJigsawCells, 2}),
                "jigsaw: expected offsets [", batch, ", 9, 2], got ", offsets.sizes());
  const auto options = torch::TensorOptions().dtype(torch::kLong).device(images.device());
  const auto shown = cells.to(options);
  // The offsets of the cell shown at each position: [B, 9, 2].
  const auto shown_offsets =
      offsets.to(options).gather(1, shown.unsqueeze(-1).expand({batch, kJigsawCells, 2}));
  // Top-left pixel of each position's tile: [B, 9].
  const auto top = torch::div(shown, 3, "floor") * cell + shown_offsets.select(2, 0);
  const auto left = shown.remainder(3) * cell + shown_offsets.select(2, 1);
  const auto step = torch::arange(tile, options);
  const auto rows = (top.unsqueeze(-1) + step).unsqueeze(-1);   // [B, 9, tile, 1]
  const auto cols = (left.unsqueeze(-1) + step).unsqueeze(-2);  // [B, 9, 1, tile]
  const auto sample = torch::arange(batch, options).view({batch, 1, 1, 1});
  // One gather over [B, H, W, C]: [B, 9, tile, tile, C] -> [B, 9, C, tile, tile].
  using torch::indexing::TensorIndex;
  const auto tiles = images.permute({0, 2, 3, 1})
                         .index({TensorIndex(sample), TensorIndex(rows), TensorIndex(cols)});
  return tiles.permute({0, 1, 4, 2, 3}).contiguous();
}

JigsawObjective::JigsawObjective(const Config& config, PretextShape shape,
                                 std::shared_ptr<Communicator> comm)
    : PretextObjective(config, shape, std::move(comm)),
      geometry_(jigsaw_geometry(config.pretext.jigsaw, shape.side)) {
  const int64_t count = config.pretext.jigsaw.permutations;
  SELFSUP_CHECK(geometry_.tile >= kMinJigsawTile, "jigsaw: tiles of ", geometry_.tile,
                " px from views of ", shape.side, " px are too small (at least ", kMinJigsawTile,
                "); raise augment.size or lower pretext.jigsaw.gap");
  permutations_ = register_buffer("permutations", max_hamming_permutations(count, config.seed));
  const int64_t features = kJigsawCells * encoder_->feature_dim();
  head_ =
      register_module("head", ProjectionHead(features, config.model.head_hidden, count, norm()));
}

JigsawPuzzles JigsawObjective::make_puzzles(const torch::Tensor& images, const torch::Tensor& keys,
                                            int64_t epoch) const {
  const int64_t batch = images.size(0);
  SELFSUP_CHECK(keys.numel() == batch, "jigsaw: expected one key per image (", batch, "), got ",
                keys.numel());
  const auto device = images.device();
  const uint64_t seed = config_.seed;
  JigsawPuzzles puzzles;
  puzzles.labels =
      keyed_integers(keys, 1, permutations_.size(0), seed, epoch, PretextStream::kJigsawPermutation)
          .view({batch})
          .to(device);
  // (row, column) of the tile inside each of the 9 cells, in [0, cell - tile].
  const int64_t slack = geometry_.cell - geometry_.tile;
  puzzles.offsets =
      keyed_integers(keys, 2 * kJigsawCells, slack + 1, seed, epoch, PretextStream::kJigsawOffsets)
          .view({batch, kJigsawCells, 2})
          .to(device);
  // (The buffer is int64 unless someone converted the whole module to a floating dtype.)
  puzzles.cells = permutations_.to(device, torch::kLong).index_select(0, puzzles.labels);
  puzzles.tiles = cut_jigsaw_tiles(images, puzzles.cells, puzzles.offsets, geometry_);
  return puzzles;
}

ObjectiveOutput JigsawObjective::compute(const ObjectiveInput& input) {
  const auto images = single_view(input);  // [B, C, S, S]
  const int64_t batch = images.size(0);
  const auto puzzles = make_puzzles(images, input.keys, input.epoch);
  // All B*9 tiles through the encoder in one batch (shared weights), then each puzzle's features
  // side by side in position order: [B*9, F] -> [B, 9*F].
  const auto features = encoder_->forward(puzzles.tiles.flatten(0, 1)).reshape({batch, -1});
  const auto logits = head_->forward(features);  // [B, P]
  return classification_output(logits, puzzles.labels);
}

std::shared_ptr<Objective> make_jigsaw_objective(const Config& config, PretextShape shape,
                                                 std::shared_ptr<Communicator> comm) {
  return std::make_shared<JigsawObjective>(config, shape, std::move(comm));
}

}  // namespace selfsup
