#pragma once
// Tar shards in the WebDataset convention: uncompressed .tar files named <root>/<split>-*.tar or
// stored as <root>/<split>/*.tar, whose members come in groups sharing a key: KEY.jpg (or .jpeg,
// .png) holds the image, KEY.cls its label as an ASCII integer. The key is the member path up to
// the first dot of its file name; other members (KEY.json, KEY.txt...) are ignored.
//
// Random access: every shard is read once with libarchive to record each member's data offset and
// size; get() then reads those bytes with pread, so any sample costs one read whatever its place
// in the shard. A compressed shard (.tar.gz...) has no such offsets and is refused with what to do.
// The index is cached like the image-folder index, as <root>/.selfsup-<split>-tar-index.json (or
// in the per-user cache folder when the root is read-only), and rebuilt when the list of shards,
// or a shard's size or modification time, changes.
//
// A key with an image but no .cls member, a .cls without an image, or a .cls that is not an
// integer stays in the dataset as a bad sample: get() throws BadSampleError saying which, so that a
// run tolerates a few (data.max_bad_fraction) and `selfsup validate-data` lists them all.

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "selfsup/data/dataset.h"
#include "selfsup/data/image_file.h"

namespace selfsup {

/// Where a tar-shard split lives and how it is indexed and decoded.
struct TarOptions {
  TarOptions(std::string root, std::string split)
      : root(std::move(root)), split(std::move(split)) {}
  std::string root;          // folder of the shards (data.root)
  std::string split;         // shard prefix or sub-folder of this split (data.train_split)
  std::string name = "tar";  // dataset name, for describe()
  int64_t limit = 0;         // > 0: keep only the first `limit` samples (in shard order)
  bool index_cache = true;   // read and write the cached index (data.index_cache)
  std::string cache_dir;     // where the index goes when the root is read-only ("" = none)
  DecodeOptions decode;      // checks on decoded images

  TarOptions& set_name(std::string value) {
    name = std::move(value);
    return *this;
  }
  TarOptions& set_limit(int64_t value) {
    limit = value;
    return *this;
  }
  TarOptions& set_index_cache(bool value) {
    index_cache = value;
    return *this;
  }
  TarOptions& set_cache_dir(std::string value) {
    cache_dir = std::move(value);
    return *this;
  }
  TarOptions& set_decode(DecodeOptions value) {
    decode = value;
    return *this;
  }
};

/// The samples of one shard: indices [begin, end) of the dataset.
struct ShardRange {
  std::string path;  // the shard file
  int64_t begin = 0;
  int64_t end = 0;
};

/// The shard files of a split, sorted: <root>/<split>-*.tar, then <root>/<split>/*.tar. Throws
/// Error when there are none, or when a shard of the split is compressed.
std::vector<std::string> find_tar_shards(const std::string& root, const std::string& split);

/// One split of a tar-shard dataset.
class TarDataset : public Dataset {
 public:
  /// Reads the cached index or indexes every shard; throws Error for a missing root, no shards,
  /// a compressed or unreadable shard, or no labelled sample at all.
  explicit TarDataset(const TarOptions& options);

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  Sample get(int64_t index) const override;
  int64_t label(int64_t index) const override { return samples_.at(size_t(index)).label; }
  std::string source(int64_t index) const override;
  int64_t num_classes() const override { return num_classes_; }
  int channels() const override { return 3; }
  int height() const override { return 0; }
  int width() const override { return 0; }
  std::string describe() const override;

  /// Which samples each shard holds, in order; the ranges tile [0, size()). A shard-aware sampler
  /// can hand whole shards to ranks and workers, so that each reads its shards sequentially.
  const std::vector<ShardRange>& shard_ranges() const { return shard_ranges_; }
  /// The same as offsets: shard s holds [offsets[s], offsets[s + 1]) (data.sampler = "shards").
  std::vector<int64_t> shard_offsets() const override;
  /// True when the index came from the cache (no shard was read to build it).
  bool index_from_cache() const { return index_from_cache_; }
  /// The index file read or written ("" when caching is off or nothing could be written).
  const std::string& index_path() const { return index_path_; }

 private:
  struct Entry {
    int32_t shard = 0;    // into shard_ranges_
    std::string member;   // the image member's name (or the key when there is none)
    int64_t offset = 0;   // of the image bytes in the shard file
    int64_t bytes = 0;    // image size
    int64_t label = -1;   // from KEY.cls
    std::string problem;  // non-empty: why this sample is unusable
  };
  bool is_fresh(const nlohmann::json& index, const std::vector<std::string>& shards) const;
  nlohmann::json build_index(const std::vector<std::string>& shards) const;
  void load(const nlohmann::json& index, int64_t limit);

  std::string root_;  // absolute
  std::string split_;
  std::string name_;
  DecodeOptions decode_;
  std::vector<ShardRange> shard_ranges_;
  std::vector<Entry> samples_;
  int64_t num_classes_ = 0;
  int64_t bad_samples_ = 0;  // samples with a problem found at indexing
  bool index_from_cache_ = false;
  std::string index_path_;
};

}  // namespace selfsup
