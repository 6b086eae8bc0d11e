// Decoding checks and the cached file index shared by the folder and tar datasets.

#include "selfsup/data/image_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "selfsup/core/error.h"
#include "selfsup/core/files.h"
#include "selfsup/data/dataset.h"

namespace selfsup {
namespace {

namespace fs = std::filesystem;

bool starts_with_bytes(const std::vector<uint8_t>& bytes, std::initializer_list<uint8_t> prefix) {
  if (bytes.size() < prefix.size()) return false;
  size_t i = 0;
  for (const uint8_t value : prefix) {
    if (bytes[i++] != value) return false;
  }
  return true;
}

// 64-bit FNV-1a: a stable name for a cache file (not a security boundary).
uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 0xCBF29CE484222325ull;
  for (const unsigned char c : text) hash = (hash ^ c) * 0x100000001B3ull;
  return hash;
}

}  // namespace

cv::Mat decode_image(const std::vector<uint8_t>& bytes, const std::string& source,
                     const DecodeOptions& options) {
  if (bytes.empty()) throw BadSampleError(source, "zero-byte file");
  if (starts_with_bytes(bytes, {0xFF, 0xD8, 0xFF})) {
    // A JPEG ends with its end-of-image marker FF D9; some writers pad with zero bytes after it.
    // libjpeg decodes a truncated file into a grey-filled image with only a warning, so the
    // marker is the reliable sign.
    size_t end = bytes.size();
    while (end > 2 && bytes[end - 1] == 0x00) --end;
    if (end < 4 || bytes[end - 2] != 0xFF || bytes[end - 1] != 0xD9) {
      throw BadSampleError(source,
                           "truncated JPEG (no end-of-image marker FF D9 at the end of its " +
                               std::to_string(bytes.size()) + " bytes)");
    }
  } else if (starts_with_bytes(bytes, {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})) {
    // The last chunk of a PNG is IEND: length 0, type "IEND", CRC; 12 bytes in all.
    const size_t n = bytes.size();
    if (n < 20 || std::memcmp(bytes.data() + n - 8, "IEND", 4) != 0) {
      throw BadSampleError(source, "truncated PNG (no IEND chunk at the end of its " +
                                       std::to_string(n) + " bytes)");
    }
  }
  // IMREAD_COLOR: 3 channels (BGR) whatever the file holds; EXIF orientation is applied.
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                        const_cast<uint8_t*>(bytes.data()));
  cv::Mat bgr;
  try {
    bgr = cv::imdecode(encoded, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw BadSampleError(source, std::string("OpenCV cannot decode it: ") + e.what());
  }
  if (bgr.empty()) {
    throw BadSampleError(source, "not an image OpenCV can decode (" + std::to_string(bytes.size()) +
                                     " bytes; JPEG and PNG are supported)");
  }
  if (bgr.rows < options.min_side || bgr.cols < options.min_side) {
    throw BadSampleError(
        source, "image of " + std::to_string(bgr.rows) + "x" + std::to_string(bgr.cols) +
                    " pixels is smaller than the minimum side " + std::to_string(options.min_side));
  }
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

std::vector<uint8_t> read_sample_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw BadSampleError(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<uint8_t> bytes;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && info.st_size > 0) bytes.reserve(static_cast<size_t>(info.st_size));
  uint8_t buffer[1 << 16];
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int error_number = errno;
      ::close(fd);
      throw BadSampleError(path, std::string("cannot read: ") + std::strerror(error_number));
    }
    if (got == 0) break;
    bytes.insert(bytes.end(), buffer, buffer + got);
  }
  ::close(fd);
  return bytes;
}

std::string to_lower_ascii(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return text;
}

bool is_image_file_name(const std::string& name) {
  const std::string lower = to_lower_ascii(fs::path(name).extension().string());
  return lower == ".jpg" || lower == ".jpeg" || lower == ".png";
}

int64_t mtime_ns(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return -1;
  return int64_t{info.st_mtim.tv_sec} * 1'000'000'000 + info.st_mtim.tv_nsec;
}

int64_t now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

IndexLocation index_location(const std::string& primary, const std::string& cache_dir) {
  IndexLocation location;
  location.primary = primary;
  if (!cache_dir.empty()) {
    std::error_code ec;
    const fs::path absolute = fs::absolute(primary, ec);
    char name[64];
    std::snprintf(name, sizeof(name), "index-%016llx.json",
                  static_cast<unsigned long long>(fnv1a(ec ? primary : absolute.string())));
    location.fallback = (fs::path(cache_dir) / name).string();
  }
  return location;
}

std::optional<nlohmann::json> load_index(const IndexLocation& location,
                                         const std::function<bool(const nlohmann::json&)>& is_fresh,
                                         std::string* path_read) {
  for (const auto& path : {location.primary, location.fallback}) {
    std::error_code ec;
    if (path.empty() || !fs::is_regular_file(path, ec)) continue;
    try {
      auto index = nlohmann::json::parse(read_file(path));
      if (is_fresh(index)) {
        if (path_read != nullptr) *path_read = path;
        return index;
      }
    } catch (const std::exception&) {
      // Damaged (a file written by another tool, a full disk) or not the expected shape: rebuild.
    }
  }
  return std::nullopt;
}

std::string save_index(const IndexLocation& location, const nlohmann::json& index) {
  const std::string text = index.dump();
  try {
    write_file_atomic(location.primary, text);
    return location.primary;
  } catch (const Error&) {
    // The data folder is read-only (a shared dataset): use the per-user cache.
  }
  if (location.fallback.empty()) return "";
  try {
    std::error_code ec;
    fs::create_directories(fs::path(location.fallback).parent_path(), ec);
    write_file_atomic(location.fallback, text);
    return location.fallback;
  } catch (const Error&) {
    return "";
  }
}

}  // namespace selfsup
