#pragma once
// Image folders: <root>/<split>/<class>/**/*.{jpg,jpeg,png} (extensions in any case), the layout
// of torchvision's ImageFolder. Class indices follow the sorted class folder names; hidden folders
// (".name") are skipped. Images are decoded to RGB and vary in size (height() = width() = 0).
//
// The file index (names, labels, sizes, and the modification times of the class folders) is
// cached as <root>/<split>/.selfsup-index.json, or, when that folder is read-only, in the per-user
// cache folder, so that a second start does not walk the tree. The index is rebuilt when the set
// of class folders differs or a class folder (or a folder below it) was modified since: adding,
// removing or renaming a file changes its folder's modification time. Editing a file in place does
// not, and needs no rebuild (its bytes are read at get()).

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "selfsup/data/dataset.h"
#include "selfsup/data/image_file.h"

namespace selfsup {

/// Where an image-folder split lives and how it is indexed and decoded.
struct FolderOptions {
  FolderOptions(std::string root, std::string split)
      : root(std::move(root)), split(std::move(split)) {}
  std::string root;             // dataset folder (data.root)
  std::string split;            // sub-folder of this split, e.g. "train" (data.train_split)
  std::string name = "folder";  // dataset name, for describe()
  int64_t limit = 0;            // > 0: keep `limit` images, evenly spaced over the sorted file list
  bool index_cache = true;      // read and write the cached index (data.index_cache)
  std::string cache_dir;  // where the index goes when the split folder is read-only ("" = none)
  DecodeOptions decode;   // checks on decoded images

  FolderOptions& set_name(std::string value) {
    name = std::move(value);
    return *this;
  }
  FolderOptions& set_limit(int64_t value) {
    limit = value;
    return *this;
  }
  FolderOptions& set_index_cache(bool value) {
    index_cache = value;
    return *this;
  }
  FolderOptions& set_cache_dir(std::string value) {
    cache_dir = std::move(value);
    return *this;
  }
  FolderOptions& set_decode(DecodeOptions value) {
    decode = value;
    return *this;
  }
};

/// One split of an image-folder dataset.
class FolderDataset : public Dataset {
 public:
  /// Name of the cached index inside the split folder.
  static constexpr const char* kIndexFileName = ".selfsup-index.json";

  /// Reads the cached index or walks the tree; throws Error when the root, the split folder, the
  /// class folders or the images are missing, saying what layout is expected.
  explicit FolderDataset(const FolderOptions& options);

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  Sample get(int64_t index) const override;
  int64_t label(int64_t index) const override { return samples_.at(size_t(index)).label; }
  std::string source(int64_t index) const override;
  int64_t num_classes() const override { return static_cast<int64_t>(class_names_.size()); }
  int channels() const override { return 3; }
  int height() const override { return 0; }
  int width() const override { return 0; }
  std::string describe() const override;

  /// The class folder names; label i is class_names()[i].
  const std::vector<std::string>& class_names() const { return class_names_; }
  /// Size in bytes of sample `index`'s file when it was indexed.
  int64_t file_size(int64_t index) const;
  /// True when the file list came from a cached index (no tree walk this time).
  bool index_from_cache() const { return index_from_cache_; }
  /// The index file read or written ("" when caching is off or nothing could be written).
  const std::string& index_path() const { return index_path_; }

 private:
  struct Entry {
    std::string path;  // relative to the split folder
    int64_t label = 0;
    int64_t bytes = 0;
  };
  bool is_fresh(const nlohmann::json& index) const;
  nlohmann::json walk() const;
  void load(const nlohmann::json& index, int64_t limit);

  std::string split_dir_;  // absolute
  std::string name_;
  DecodeOptions decode_;
  std::vector<std::string> class_names_;
  std::vector<Entry> samples_;
  int64_t ignored_files_ = 0;  // files with other extensions, skipped at indexing
  bool index_from_cache_ = false;
  std::string index_path_;
};

}  // namespace selfsup
