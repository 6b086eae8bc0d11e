// TarDataset: shards indexed once with libarchive (member data offsets), samples read with pread.

#include "selfsup/data/tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kIndexFormat = "selfsup-tar-index";
constexpr int kIndexVersion = 1;
// A .cls member longer than this is not a label.
constexpr size_t kMaxLabelBytes = 64;
// libarchive reads shards in blocks of this many bytes while indexing.
constexpr size_t kReadBlockBytes = size_t{1} << 16;

struct ArchiveReadFree {
  void operator()(archive* handle) const { archive_read_free(handle); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveReadFree>;

// A file descriptor closed on scope exit.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The compressed forms of a tar file, refused because their members have no byte offsets.
bool is_compressed_tar_name(const std::string& lower_name) {
  for (const char* suffix : {".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst",
                             ".tar.lz4", ".tar.lzma"}) {
    if (ends_with(lower_name, suffix)) return true;
  }
  return false;
}

std::string compressed_shard_error(const std::string& path, const std::string& compression) {
  return detail::concat(path, " is a ", compression,
                        "-compressed tar shard; selfsup reads samples at random positions, which "
                        "needs uncompressed shards: decompress it (e.g. gunzip, zstd -d) and name "
                        "it .tar");
}

// Splits a member path into the WebDataset key (path up to the first dot of the file name) and
// the lower-cased extension after that dot: "a/b.c.jpg" -> ("a/b", "c.jpg").
std::pair<std::string, std::string> split_key(const std::string& member) {
  const size_t slash = member.rfind('/');
  const size_t dot = member.find('.', slash == std::string::npos ? 0 : slash + 1);
  if (dot == std::string::npos) return {member, ""};
  return {member.substr(0, dot), to_lower_ascii(member.substr(dot + 1))};
}

// Parses a .cls member: optional whitespace around a non-negative decimal integer.
bool parse_label(const std::string& text, int64_t* label) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  size_t end = text.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) return false;
  const std::string digits = text.substr(begin, end - begin + 1);
  if (digits.empty() || digits.size() > 18) return false;
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  *label = std::stoll(digits);
  return true;
}

// One sample while a shard is indexed.
struct PendingSample {
  std::string key;
  std::string image_member;
  int64_t offset = -1;
  int64_t bytes = 0;
  int64_t label = -1;
  std::string problem;
};

// Reads a shard's headers once; returns its samples in order of first appearance of each key.
json index_shard(const std::string& path) {
  ArchivePtr reader(archive_read_new());
  SELFSUP_ASSERT(reader != nullptr, "archive_read_new failed (out of memory)");
  // Every filter is enabled so that a compressed shard is recognised and refused clearly, rather
  // than reported as "not a tar file".
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_tar(reader.get());
  if (archive_read_open_filename(reader.get(), path.c_str(), kReadBlockBytes) != ARCHIVE_OK) {
    throw Error(detail::concat("cannot read tar shard ", path, ": ",
                               archive_error_string(reader.get()),
                               "; check the file (tar tf) or remove it from the split"));
  }
  // Filter 0 is the outermost; "none" is the plain file.
  if (archive_filter_code(reader.get(), 0) != ARCHIVE_FILTER_NONE) {
    throw Error(compressed_shard_error(path, archive_filter_name(reader.get(), 0)));
  }
  std::vector<PendingSample> samples;
  std::map<std::string, size_t> by_key;
  auto sample_for = [&](const std::string& key) -> PendingSample& {
    auto [it, added] = by_key.emplace(key, samples.size());
    if (added) {
      samples.emplace_back();
      samples.back().key = key;
    }
    return samples[it->second];
  };
  archive_entry* entry = nullptr;
  while (true) {
    const int status = archive_read_next_header(reader.get(), &entry);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_WARN) {
      throw Error(detail::concat("cannot index tar shard ", path, ": ",
                                 archive_error_string(reader.get()),
                                 "; the shard is truncated or corrupt: write it again"));
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    const std::string member = archive_entry_pathname(entry);
    const auto [key, extension] = split_key(member);
    const bool is_image = extension == "jpg" || extension == "jpeg" || extension == "png";
    if (!is_image && extension != "cls") continue;
    PendingSample& sample = sample_for(key);
    if (is_image) {
      if (sample.offset >= 0) {
        sample.problem = detail::concat("two image members (", sample.image_member, " and ", member,
                                        ") share the key");
        continue;
      }
      SELFSUP_CHECK(archive_entry_sparse_count(entry) == 0, path, ": member ", member,
                    " is a sparse file, whose bytes are not stored in one piece; write the "
                    "shard without --sparse");
      // Right after its header, the reader has consumed exactly the bytes before the member's
      // data (headers, extended pax headers), so that count is the data's offset in the file.
      sample.offset = archive_filter_bytes(reader.get(), 0);
      sample.bytes = archive_entry_size(entry);
      sample.image_member = member;
    } else {
      const int64_t size = archive_entry_size(entry);
      std::string text(static_cast<size_t>(std::min<int64_t>(size, kMaxLabelBytes)), '\0');
      const la_ssize_t got = archive_read_data(reader.get(), text.data(), text.size());
      if (got < 0) {
        throw Error(detail::concat("cannot read ", member, " in tar shard ", path, ": ",
                                   archive_error_string(reader.get()),
                                   "; the shard is truncated or corrupt: write it again"));
      }
      text.resize(static_cast<size_t>(got));
      int64_t label = -1;
      if (size > static_cast<int64_t>(kMaxLabelBytes) || !parse_label(text, &label)) {
        sample.problem = detail::concat(member, " holds \"", text.substr(0, 20),
                                        "\", not a non-negative integer label");
      } else {
        sample.label = label;
      }
    }
  }
  json list = json::array();
  for (auto& sample : samples) {
    if (sample.problem.empty() && sample.offset < 0) {
      sample.problem = detail::concat("the key has a .cls member but no image (", sample.key,
                                      ".jpg, .jpeg or .png)");
    } else if (sample.problem.empty() && sample.label < 0) {
      sample.problem =
          detail::concat("no ", sample.key, ".cls member (the label) beside ", sample.image_member);
    }
    list.push_back({sample.image_member.empty() ? sample.key : sample.image_member, sample.offset,
                    sample.bytes, sample.label, sample.problem});
  }
  return list;
}

}  // namespace

std::vector<std::string> find_tar_shards(const std::string& root, const std::string& split) {
  std::error_code ec;
  SELFSUP_CHECK(fs::is_directory(root, ec), "data.root = \"", root,
                "\" is not a folder; data.dataset = \"tar\" expects shards ", root, "/", split,
                "-*.tar or ", root, "/", split, "/*.tar: set data.root to the shard folder");
  std::vector<std::string> shards;
  auto collect = [&](const fs::path& folder, const std::string& prefix) {
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(folder, ec)) {
      const std::string name = entry.path().filename().string();
      const std::string lower = to_lower_ascii(name);
      if (name.compare(0, prefix.size(), prefix) != 0 || !entry.is_regular_file(ec)) continue;
      if (is_compressed_tar_name(lower)) {
        throw Error(
            compressed_shard_error(entry.path().string(), lower.substr(lower.rfind('.') + 1)));
      }
      if (ends_with(lower, ".tar")) found.push_back(entry.path().string());
    }
    std::sort(found.begin(), found.end());
    shards.insert(shards.end(), found.begin(), found.end());
  };
  collect(root, split + "-");
  if (fs::is_directory(fs::path(root) / split, ec)) collect(fs::path(root) / split, "");
  SELFSUP_CHECK(!shards.empty(), "no tar shards for split \"", split, "\": expected ", root, "/",
                split, "-*.tar or ", root, "/", split,
                "/*.tar (uncompressed). Set data.root, or data.train_split / data.test_split to "
                "the shard prefix");
  return shards;
}

TarDataset::TarDataset(const TarOptions& options)
    : split_(options.split), name_(options.name), decode_(options.decode) {
  SELFSUP_CHECK(options.limit >= 0, "TarDataset: limit = ", options.limit,
                " must be >= 0 (0 = all samples)");
  const auto shards = find_tar_shards(options.root, options.split);
  root_ = fs::absolute(options.root).lexically_normal().string();

  IndexLocation location;
  if (options.index_cache) {
    location = index_location(
        (fs::path(root_) / (".selfsup-" + options.split + "-tar-index.json")).string(),
        options.cache_dir);
    auto cached = load_index(
        location, [&](const json& index) { return is_fresh(index, shards); }, &index_path_);
    if (cached) {
      index_from_cache_ = true;
      load(*cached, options.limit);
      return;
    }
  }
  const json index = build_index(shards);
  if (options.index_cache) {
    index_path_ = save_index(location, index);
    if (index_path_.empty()) {
      spdlog::warn(
          "cannot write the shard index of {} (to {} or {}); the next start reads every "
          "shard header again",
          root_, location.primary,
          location.fallback.empty() ? "no cache folder" : location.fallback);
    }
  }
  load(index, options.limit);
}

bool TarDataset::is_fresh(const json& index, const std::vector<std::string>& shards) const {
  if (index.value("format", "") != kIndexFormat || index.value("version", 0) != kIndexVersion ||
      index.value("root", "") != root_ || index.value("split", "") != split_) {
    return false;
  }
  const auto& entries = index.at("shards");
  if (entries.size() != shards.size()) return false;
  // Modification times within the same file-system tick as the indexing are not trusted.
  const int64_t trusted_before = index.at("indexed_at_ns").get<int64_t>() - kIndexRacyWindowNs;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string path = (fs::path(root_) / entries[i].at("path").get<std::string>()).string();
    const int64_t recorded = entries[i].at("mtime_ns").get<int64_t>();
    std::error_code ec;
    const auto bytes = fs::file_size(shards[i], ec);
    if (fs::path(path) != fs::absolute(shards[i]).lexically_normal() || ec ||
        static_cast<int64_t>(bytes) != entries[i].at("bytes").get<int64_t>() ||
        recorded >= trusted_before || mtime_ns(shards[i]) != recorded) {
      return false;
    }
  }
  return true;
}

json TarDataset::build_index(const std::vector<std::string>& shards) const {
  spdlog::info("indexing {} tar shard(s) of split \"{}\" under {}", shards.size(), split_, root_);
  json index = {{"format", kIndexFormat},
                {"version", kIndexVersion},
                {"root", root_},
                {"split", split_},
                {"indexed_at_ns", now_ns()}};
  json entries = json::array();
  for (const auto& shard : shards) {
    // Size and time first: a shard rewritten while it is indexed then reads as stale next time.
    const int64_t mtime = mtime_ns(shard);
    std::error_code ec;
    const auto bytes = static_cast<int64_t>(fs::file_size(shard, ec));
    const std::string relative =
        fs::absolute(shard).lexically_normal().lexically_relative(root_).string();
    entries.push_back({{"path", relative},
                       {"bytes", bytes},
                       {"mtime_ns", mtime},
                       {"samples", index_shard(shard)}});
  }
  index["shards"] = std::move(entries);
  return index;
}

void TarDataset::load(const json& index, int64_t limit) {
  int64_t max_label = -1;
  for (const auto& shard : index.at("shards")) {
    if (limit > 0 && size() >= limit) break;
    ShardRange range;
    range.path = (fs::path(root_) / shard.at("path").get<std::string>()).string();
    range.begin = size();
    const auto shard_index = static_cast<int32_t>(shard_ranges_.size());
    for (const auto& row : shard.at("samples")) {
      if (limit > 0 && size() >= limit) break;
      Entry entry;
      entry.shard = shard_index;
      entry.member = row.at(0).get<std::string>();
      entry.offset = row.at(1).get<int64_t>();
      entry.bytes = row.at(2).get<int64_t>();
      entry.label = row.at(3).get<int64_t>();
      entry.problem = row.at(4).get<std::string>();
      if (!entry.problem.empty()) ++bad_samples_;
      if (entry.problem.empty()) max_label = std::max(max_label, entry.label);
      samples_.push_back(std::move(entry));
    }
    range.end = size();
    shard_ranges_.push_back(std::move(range));
  }
  SELFSUP_CHECK(max_label >= 0, "none of the ", size(), " samples in the ", shard_ranges_.size(),
                " tar shard(s) of split \"", split_, "\" under ", root_,
                " has both an image and a KEY.cls label member; write the shards with the "
                "labels (WebDataset convention: KEY.jpg + KEY.cls)");
  num_classes_ = max_label + 1;
  if (bad_samples_ > 0) {
    const auto first = std::find_if(samples_.begin(), samples_.end(),
                                    [](const Entry& entry) { return !entry.problem.empty(); });
    spdlog::warn(
        "{}: {} of {} samples are unusable (e.g. {}: {}); run `selfsup validate-data` "
        "for the full list",
        name_, bad_samples_, size(), source(first - samples_.begin()), first->problem);
  }
}

Sample TarDataset::get(int64_t index) const {
  SELFSUP_CHECK(index >= 0 && index < size(), "sample index ", index, " is out of range for ",
                describe());
  const Entry& entry = samples_[static_cast<size_t>(index)];
  if (!entry.problem.empty()) throw BadSampleError(source(index), entry.problem);
  const std::string& shard = shard_ranges_[static_cast<size_t>(entry.shard)].path;
  // One descriptor per call: pread needs no shared file position, so threads never contend, and
  // no descriptor stays open per shard (datasets can have thousands of shards).
  FileDescriptor fd(::open(shard.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    throw BadSampleError(source(index),
                         std::string("cannot open the shard: ") + std::strerror(errno));
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(entry.bytes));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::pread(fd.get(), bytes.data() + done, bytes.size() - done,
                                static_cast<off_t>(entry.offset + static_cast<int64_t>(done)));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      throw BadSampleError(source(index), std::string("cannot read: ") + std::strerror(errno));
    }
    if (got == 0) {
      throw BadSampleError(source(index),
                           detail::concat("the shard ends after ", done, " of the ", bytes.size(),
                                          " bytes indexed (truncated since?)"));
    }
    done += static_cast<size_t>(got);
  }
  Sample sample;
  sample.image = decode_image(bytes, source(index), decode_);
  sample.label = entry.label;
  return sample;
}

std::string TarDataset::source(int64_t index) const {
  const Entry& entry = samples_.at(static_cast<size_t>(index));
  return shard_ranges_[static_cast<size_t>(entry.shard)].path + ":" + entry.member;
}

std::vector<int64_t> TarDataset::shard_offsets() const {
  std::vector<int64_t> offsets{0};
  for (const ShardRange& range : shard_ranges_) offsets.push_back(range.end);
  return offsets;
}

std::string TarDataset::describe() const {
  return detail::concat(
      name_, " ", split_, " (", size(), " images in ", shard_ranges_.size(), " tar shard(s) under ",
      root_, ", ", num_classes_, " classes, RGB of varying size",
      bad_samples_ > 0 ? detail::concat(", ", bad_samples_, " unusable") : std::string(), ")");
}

}  // namespace selfsup
