// FolderDataset: the cached index (read, checked for staleness, or rebuilt by walking the tree)
// and decoding of one file per get().

#include "selfsup/data/folder.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kIndexFormat = "selfsup-folder-index";
constexpr int kIndexVersion = 1;

// The class folders of a split folder: visible sub-folders (symbolic links followed), sorted.
std::vector<std::string> list_class_folders(const fs::path& split_dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(split_dir)) {
    const std::string name = entry.path().filename().string();
    std::error_code ec;
    if (!name.empty() && name[0] != '.' && fs::is_directory(entry.path(), ec)) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

FolderDataset::FolderDataset(const FolderOptions& options)
    : name_(options.name), decode_(options.decode) {
  SELFSUP_CHECK(options.limit >= 0, "FolderDataset: limit = ", options.limit,
                " must be >= 0 (0 = all images)");
  std::error_code ec;
  SELFSUP_CHECK(fs::is_directory(options.root, ec), "data.root = \"", options.root,
                "\" is not a folder; data.dataset = \"folder\" expects <root>/", options.split,
                "/<class>/*.jpg (or .png): set data.root to the dataset folder");
  const fs::path split_dir = fs::absolute(fs::path(options.root) / options.split, ec);
  SELFSUP_CHECK(fs::is_directory(split_dir, ec), options.root, " has no sub-folder \"",
                options.split, "\" for this split; expected ", split_dir.string(),
                "/<class>/*.jpg. Set data.train_split / data.test_split to the folder names");
  split_dir_ = split_dir.lexically_normal().string();

  IndexLocation location;
  if (options.index_cache) {
    location = index_location((fs::path(split_dir_) / kIndexFileName).string(), options.cache_dir);
    auto cached = load_index(
        location, [&](const json& index) { return is_fresh(index); }, &index_path_);
    if (cached) {
      index_from_cache_ = true;
      load(*cached, options.limit);
      return;
    }
  }
  const json index = walk();
  if (options.index_cache) {
    index_path_ = save_index(location, index);
    if (index_path_.empty()) {
      spdlog::warn(
          "cannot write the file index of {} (to {} or {}); the next start walks the "
          "folder again",
          split_dir_, location.primary,
          location.fallback.empty() ? "no cache folder" : location.fallback);
    }
  }
  load(index, options.limit);
}

bool FolderDataset::is_fresh(const json& index) const {
  if (index.value("format", "") != kIndexFormat || index.value("version", 0) != kIndexVersion ||
      index.value("split_dir", "") != split_dir_) {
    return false;
  }
  // The split folder's own modification time cannot be the test: writing the index into it
  // changes it. Its list of class folders is compared instead (one directory read).
  std::vector<std::string> indexed;
  for (const auto& entry : index.at("classes")) indexed.push_back(entry.at("name"));
  if (indexed != list_class_folders(split_dir_)) return false;
  // A change within the same file-system tick as the walk could leave a folder's time unchanged
  // (timestamps are coarser than nanoseconds), so an index taken that close is not trusted.
  const int64_t trusted_before = index.at("walked_at_ns").get<int64_t>() - kIndexRacyWindowNs;
  for (const auto& entry : index.at("classes")) {
    for (const auto& dir : entry.at("dirs")) {
      const int64_t recorded = dir.at("mtime_ns").get<int64_t>();
      const std::string path = (fs::path(split_dir_) / entry.at("name").get<std::string>() /
                                dir.at("path").get<std::string>())
                                   .string();
      if (recorded >= trusted_before || mtime_ns(path) != recorded) return false;
    }
  }
  return true;
}

json FolderDataset::walk() const {
  const auto class_names = list_class_folders(split_dir_);
  SELFSUP_CHECK(!class_names.empty(), split_dir_,
                " has no class sub-folders; data.dataset = \"folder\" expects ", split_dir_,
                "/<class>/*.jpg (one sub-folder per class)");
  spdlog::info("indexing {} ({} class folders)", split_dir_, class_names.size());
  json index = {{"format", kIndexFormat},
                {"version", kIndexVersion},
                {"split_dir", split_dir_},
                {"walked_at_ns", now_ns()}};
  json classes = json::array();
  int64_t images = 0, ignored = 0;
  for (const auto& name : class_names) {
    const fs::path class_dir = fs::path(split_dir_) / name;
    // Each folder's time is taken before its listing: a file added during the walk makes the
    // recorded time stale, so the next start walks again rather than missing it.
    json dirs = json::array({{{"path", ""}, {"mtime_ns", mtime_ns(class_dir.string())}}});
    std::vector<std::pair<std::string, int64_t>> files;  // relative to the class folder, bytes
    const auto walk_options = fs::directory_options::follow_directory_symlink |
                              fs::directory_options::skip_permission_denied;
    for (auto it = fs::recursive_directory_iterator(class_dir, walk_options);
         it != fs::recursive_directory_iterator(); ++it) {
      std::error_code ec;
      const std::string relative = it->path().lexically_relative(class_dir).string();
      if (it->is_directory(ec)) {
        dirs.push_back({{"path", relative}, {"mtime_ns", mtime_ns(it->path().string())}});
      } else if ((it->is_regular_file(ec) || it->is_symlink(ec)) && is_image_file_name(relative)) {
        // A dangling link named like an image is indexed too: reading it fails, so it becomes a
        // bad sample (replaced, counted, listed by validate-data) instead of vanishing silently.
        const auto bytes = it->file_size(ec);
        files.emplace_back(relative, ec ? -1 : static_cast<int64_t>(bytes));
      } else {
        ++ignored;
      }
    }
    std::sort(files.begin(), files.end());
    images += static_cast<int64_t>(files.size());
    classes.push_back({{"name", name}, {"dirs", std::move(dirs)}, {"files", files}});
  }
  SELFSUP_CHECK(images > 0, "no .jpg, .jpeg or .png files under the ", class_names.size(),
                " class folders of ", split_dir_, "; data.dataset = \"folder\" expects ",
                split_dir_, "/<class>/*.jpg");
  index["classes"] = std::move(classes);
  index["ignored_files"] = ignored;
  return index;
}

void FolderDataset::load(const json& index, int64_t limit) {
  std::vector<Entry> all;
  for (const auto& entry : index.at("classes")) {
    const auto name = entry.at("name").get<std::string>();
    const auto label = static_cast<int64_t>(class_names_.size());
    class_names_.push_back(name);
    for (const auto& file : entry.at("files")) {
      all.push_back({(fs::path(name) / file.at(0).get<std::string>()).string(), label,
                     file.at(1).get<int64_t>()});
    }
  }
  ignored_files_ = index.value("ignored_files", int64_t{0});
  const auto total = static_cast<int64_t>(all.size());
  if (limit == 0 || limit >= total) {
    samples_ = std::move(all);
    return;
  }
  // Evenly spaced over the list (sorted by class), so that a limited split keeps every class.
  samples_.reserve(static_cast<size_t>(limit));
  for (int64_t i = 0; i < limit; ++i)
    samples_.push_back(all[static_cast<size_t>(i * total / limit)]);
}

Sample FolderDataset::get(int64_t index) const {
  SELFSUP_CHECK(index >= 0 && index < size(), "sample index ", index, " is out of range for ",
                describe());
  const std::string path = source(index);
  Sample sample;
  sample.image = decode_image(read_sample_file(path), path, decode_);
  sample.label = samples_[static_cast<size_t>(index)].label;
  return sample;
}

std::string FolderDataset::source(int64_t index) const {
  return (fs::path(split_dir_) / samples_.at(static_cast<size_t>(index)).path).string();
}

int64_t FolderDataset::file_size(int64_t index) const {
  return samples_.at(static_cast<size_t>(index)).bytes;
}

std::string FolderDataset::describe() const {
  return detail::concat(name_, " ", split_dir_, " (", size(), " images, ", num_classes(),
                        " classes, RGB of varying size",
                        ignored_files_ > 0
                            ? detail::concat(", ", ignored_files_, " other files ignored")
                            : std::string(),
                        ")");
}

}  // namespace selfsup
