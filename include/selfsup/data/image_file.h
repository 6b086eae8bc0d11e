#pragma once
// Helpers shared by the datasets of encoded image files (image folders, tar shards): decoding with
// the checks that turn a bad file into a BadSampleError, and the cached file index.

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

namespace selfsup {

/// How encoded images are checked and decoded.
struct DecodeOptions {
  int min_side = 1;  // images with a side shorter than this (pixels) are bad samples
  DecodeOptions& set_min_side(int value) {
    min_side = value;
    return *this;
  }
};

/// Decodes JPEG / PNG (or any format OpenCV reads) `bytes` into an RGB CV_8UC3 image; grayscale
/// files become 3 channels, alpha is dropped. Throws BadSampleError(source, reason) for an empty
/// file, a JPEG without its end-of-image marker (FF D9), a PNG without its IEND chunk (both signs
/// of truncation), bytes OpenCV cannot decode, and images smaller than `options.min_side`.
cv::Mat decode_image(const std::vector<uint8_t>& bytes, const std::string& source,
                     const DecodeOptions& options = {});

/// Reads a whole file; throws BadSampleError naming `path` when it cannot be opened or read.
std::vector<uint8_t> read_sample_file(const std::string& path);

/// True when `name` ends in .jpg, .jpeg or .png (any case).
bool is_image_file_name(const std::string& name);

/// Lower-cased copy of an ASCII string.
std::string to_lower_ascii(std::string text);

/// A file's or directory's modification time in nanoseconds since the epoch (-1 when it cannot be
/// read); index caches compare these to tell whether the tree changed.
int64_t mtime_ns(const std::string& path);

/// The current time on the same clock as mtime_ns.
int64_t now_ns();

/// Where a dataset's file index is cached: next to the data, or (when that folder is read-only) in
/// a per-user cache folder, keyed by a hash of the data's absolute path.
struct IndexLocation {
  std::string primary;   // e.g. <root>/<split>/.selfsup-index.json
  std::string fallback;  // e.g. ~/.cache/selfsup/index-<hash>.json ("" = none)
};

/// The location for an index next to `primary` (a file path) with its fallback in `cache_dir`
/// (named after a hash of the absolute primary path, so that several datasets share one folder).
IndexLocation index_location(const std::string& primary, const std::string& cache_dir);

/// Reads a cached index: the primary file, else the fallback, whichever first parses and passes
/// `is_fresh`; nullopt when none does (a damaged or stale index is rebuilt, never an error).
/// `path_read`, when given, receives the path of the file used.
std::optional<nlohmann::json> load_index(const IndexLocation& location,
                                         const std::function<bool(const nlohmann::json&)>& is_fresh,
                                         std::string* path_read = nullptr);

/// Writes `index` atomically (temporary file + rename) to the primary path, else to the fallback;
/// returns the path written, or "" when neither could be written (the index is then rebuilt on
/// the next start, which is slower but correct).
std::string save_index(const IndexLocation& location, const nlohmann::json& index);

/// A cached index older than this after the newest modification time it records is trusted;
/// closer than that, a change in the same file-system tick could go unseen, so it is rebuilt.
constexpr int64_t kIndexRacyWindowNs = int64_t{2'000'000'000};

}  // namespace selfsup
