#pragma once
// Jigsaw puzzles (Noroozi & Favaro, 2016): each view is cut into a 3x3 grid of cells, one tile is
// cut from every cell at a random offset, the tiles are shuffled by one of P permutations chosen
// far apart in Hamming distance, and a classifier on the tiles' features (shared encoder, one
// tile at a time) says which permutation it was.

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "selfsup/core/config.h"
#include "selfsup/models/encoder.h"
#include "selfsup/objectives/pretext.h"

namespace selfsup {

/// Number of cells (and tiles) of a puzzle: a 3x3 grid.
constexpr int64_t kJigsawCells = 9;

/// `count` permutations of the 9 cells, int64 [count, 9], chosen greedily to be far apart: the
/// first is drawn from `seed`, then each next one is, of all 9! permutations, one whose minimum
/// Hamming distance to those chosen is largest (the lowest in lexicographic order among equals).
/// Deterministic given `seed`. count in [1, 9!].
torch::Tensor max_hamming_permutations(int64_t count, uint64_t seed);

/// The smallest Hamming distance between two rows of `permutations` [P, 9] (P >= 2).
int64_t min_hamming_distance(const torch::Tensor& permutations);

/// Cuts the tiles of jigsaw puzzles out of `images` [B, C, H, W] (H, W >= 3 * geometry.cell):
/// position p of puzzle b holds the tile of cell `cells[b][p]` (cells numbered row-major,
/// cell c covering rows [c / 3 * cell, +cell) and columns [c % 3 * cell, +cell)), cut at the
/// offset `offsets[b][c]` = (row, column) in [0, cell - tile] inside that cell.
/// cells [B, 9] int64, offsets [B, 9, 2] int64 (any device) -> tiles [B, 9, C, tile, tile].
torch::Tensor cut_jigsaw_tiles(const torch::Tensor& images, const torch::Tensor& cells,
                               const torch::Tensor& offsets, const JigsawGeometry& geometry);

/// One step's puzzles.
struct JigsawPuzzles {
  torch::Tensor tiles;    // [B, 9, C, tile, tile]: position p holds the tile of cell cells[b][p]
  torch::Tensor labels;   // [B] int64: the index of each puzzle's permutation in the set
  torch::Tensor cells;    // [B, 9] int64: permutations[labels], the cell shown at each position
  torch::Tensor offsets;  // [B, 9, 2] int64: (row, column) offset of each cell's tile
};

/// Jigsaw: tiles [B*9, C, tile, tile] -> encoder -> features concatenated per puzzle in position
/// order [B, 9*F] -> ProjectionHead(9*F, model.head_hidden, P) -> cross-entropy over the P
/// permutations, mean over this rank's puzzles. Metric "accuracy". The permutation set is a
/// buffer ("permutations", int64 [P, 9]) built from config.seed, so it is checkpointed and the
/// same on every rank; the permutation and the offsets of a sample are drawn keyed by (seed,
/// epoch, key), so they do not depend on its rank or batch position.
class JigsawObjective : public PretextObjective {
 public:
  JigsawObjective(const Config& config, PretextShape shape, std::shared_ptr<Communicator> comm);
  using Objective::compute;
  ObjectiveOutput compute(const ObjectiveInput& input) override;

  /// The puzzles of `images` [B, C, side, side] whose dataset indices are `keys` [B] at `epoch`.
  JigsawPuzzles make_puzzles(const torch::Tensor& images, const torch::Tensor& keys,
                             int64_t epoch) const;
  /// The permutation set, int64 [P, 9].
  const torch::Tensor& permutations() const { return permutations_; }
  const JigsawGeometry& geometry() const { return geometry_; }

 private:
  JigsawGeometry geometry_;
  torch::Tensor permutations_;  // buffer, int64 [P, 9]
  ProjectionHead head_{nullptr};
};

}  // namespace selfsup
