// IDX files (plain or gzip) and the IdxDataset built on a pair of them.
//
// Reading is streamed through one small interface (`ByteSource`) so that plain and gzip files share
// the header checks; data is read in chunks, so a corrupt header that declares gigabytes cannot
// make us allocate more than the file really holds.

#include "selfsup/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// Largest data section we accept (16 GiB); anything above is a corrupt header, not a dataset.
constexpr int64_t kMaxIdxBytes = int64_t{1} << 34;
// The element type code of uint8 data, the only one selfsup reads.
constexpr uint8_t kUint8Type = 0x08;
// Data is read in chunks of this many bytes.
constexpr size_t kChunkBytes = size_t{1} << 20;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_gzip_path(const std::string& path) { return ends_with(path, ".gz"); }

std::string open_error(const std::string& path, int error_number) {
  return detail::concat("cannot open ", path, ": ",
                        error_number != 0 ? std::strerror(error_number) : "unknown error",
                        "; install dataset-fashion-mnist (launch/setup.sh) or set data.root");
}

std::string hex_byte(uint8_t value) {
  char text[8];
  std::snprintf(text, sizeof(text), "0x%02X", unsigned{value});
  return text;
}

std::string type_name(uint8_t type) {
  switch (type) {
    case 0x08:
      return "uint8";
    case 0x09:
      return "int8";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown";
  }
}

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
struct GzCloser {
  void operator()(gzFile_s* file) const { gzclose(file); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;
using GzPtr = std::unique_ptr<gzFile_s, GzCloser>;

// A readable stream of bytes: a plain file or a gzip file decompressed on the fly.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    errno = 0;
    if (is_gzip_path(path)) {
      gz_.reset(gzopen(path.c_str(), "rb"));
      SELFSUP_CHECK(gz_ != nullptr, open_error(path, errno));
    } else {
      file_.reset(std::fopen(path.c_str(), "rb"));
      SELFSUP_CHECK(file_ != nullptr, open_error(path, errno));
    }
  }

  /// Reads up to `size` bytes into `out`; returns how many were read (fewer only at the end).
  size_t read(uint8_t* out, size_t size) {
    size_t total = 0;
    while (total < size) {
      const size_t want = std::min(size - total, kChunkBytes);
      size_t got = 0;
      if (gz_) {
        const int n = gzread(gz_.get(), out + total, static_cast<unsigned>(want));
        if (n < 0) {
          int code = 0;
          const char* message = gzerror(gz_.get(), &code);
          throw Error(detail::concat("cannot decompress ", path_, ": ", message,
                                     "; the file is corrupt, download it again"));
        }
        got = static_cast<size_t>(n);
      } else {
        got = std::fread(out + total, 1, want, file_.get());
        SELFSUP_CHECK(!std::ferror(file_.get()), "cannot read ", path_, ": ", std::strerror(errno));
      }
      total += got;
      if (got < want) break;
    }
    return total;
  }

 private:
  std::string path_;
  FilePtr file_;
  GzPtr gz_;
};

uint32_t read_big_endian_u32(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

void put_big_endian_u32(uint32_t value, uint8_t* bytes) {
  bytes[0] = static_cast<uint8_t>(value >> 24);
  bytes[1] = static_cast<uint8_t>(value >> 16);
  bytes[2] = static_cast<uint8_t>(value >> 8);
  bytes[3] = static_cast<uint8_t>(value);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "x" : "") + std::to_string(shape[i]);
  return text;
}

// Writes `size` bytes to a plain or gzip file; the caller closes and checks.
void write_bytes(const std::string& path, std::FILE* file, gzFile_s* gz, const uint8_t* bytes,
                 size_t size) {
  size_t done = 0;
  while (done < size) {
    const size_t chunk = std::min(size - done, kChunkBytes);
    const bool ok =
        gz ? gzwrite(gz, bytes + done, static_cast<unsigned>(chunk)) == static_cast<int>(chunk)
           : std::fwrite(bytes + done, 1, chunk, file) == chunk;
    SELFSUP_CHECK(ok, "cannot write ", path, ": ", std::strerror(errno));
    done += chunk;
  }
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  ByteSource source(path);

  // Header: magic 0x0000TTDD, then DD big-endian uint32 sizes.
  uint8_t magic[4];
  const size_t magic_read = source.read(magic, 4);
  SELFSUP_CHECK(magic_read == 4, path,
                " is truncated: the IDX header needs 4 bytes of magic, found ", magic_read);
  SELFSUP_CHECK(magic[0] == 0 && magic[1] == 0, path,
                " is not an IDX file: its magic number must start with two zero bytes (found ",
                hex_byte(magic[0]), " ", hex_byte(magic[1]),
                "); check data.root and that the file was decompressed correctly");
  SELFSUP_CHECK(magic[2] == kUint8Type, path, " holds IDX elements of type ", hex_byte(magic[2]),
                " (", type_name(magic[2]), "); only type 0x08 (uint8) is supported");
  const int dims = magic[3];
  SELFSUP_CHECK(dims >= 1 && dims <= 4, path, " declares ", dims,
                " dimensions; IDX files read by selfsup have 1 to 4");

  uint8_t size_bytes[16];
  const size_t sizes_read = source.read(size_bytes, 4 * static_cast<size_t>(dims));
  SELFSUP_CHECK(sizes_read == 4 * static_cast<size_t>(dims), path,
                " is truncated: the IDX header declares ", dims, " dimensions (", 4 * dims,
                " bytes of sizes), found ", sizes_read, " bytes");

  IdxArray array;
  int64_t total = 1;
  for (int d = 0; d < dims; ++d) {
    const int64_t size = read_big_endian_u32(size_bytes + 4 * d);
    SELFSUP_CHECK(size > 0, path, ": dimension ", d, " has size 0; the file is empty or corrupt");
    // Check before multiplying: sizes are < 2^32 and total <= kMaxIdxBytes < 2^34, so no overflow.
    SELFSUP_CHECK(size <= kMaxIdxBytes / total, path, " declares a shape whose total exceeds ",
                  kMaxIdxBytes, " bytes; the header is corrupt");
    total *= size;
    array.shape.push_back(size);
  }

  // Data: read in chunks so that memory grows with what the file really holds.
  array.data.reserve(static_cast<size_t>(std::min<int64_t>(total, 64 << 20)));
  int64_t found = 0;
  while (found < total) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(total - found, kChunkBytes));
    array.data.resize(static_cast<size_t>(found) + want);
    const size_t got = source.read(array.data.data() + found, want);
    found += static_cast<int64_t>(got);
    if (got < want) break;
  }
  SELFSUP_CHECK(found == total, path, " is truncated: header declares ", total,
                " bytes of data, found ", found, "; download the dataset again");
  uint8_t extra[256];
  const size_t trailing = source.read(extra, sizeof(extra));
  SELFSUP_CHECK(trailing == 0, path, " has trailing bytes after the ", total,
                " bytes of data declared by its header (shape ", shape_string(array.shape),
                "); the file is corrupt or not an IDX file");
  return array;
}

void write_idx(const std::string& path, const IdxArray& array) {
  const int dims = static_cast<int>(array.shape.size());
  SELFSUP_CHECK(dims >= 1 && dims <= 4, "write_idx(", path, "): ", dims,
                " dimensions given; IDX files have 1 to 4");
  int64_t total = 1;
  std::vector<uint8_t> header(4 + 4 * static_cast<size_t>(dims));
  header[2] = kUint8Type;
  header[3] = static_cast<uint8_t>(dims);
  for (int d = 0; d < dims; ++d) {
    const int64_t size = array.shape[d];
    SELFSUP_CHECK(size > 0 && size <= int64_t{UINT32_MAX}, "write_idx(", path, "): dimension ", d,
                  " has size ", size, "; it must be in [1, 2^32)");
    total *= size;
  }
  SELFSUP_CHECK(total == static_cast<int64_t>(array.data.size()), "write_idx(", path, "): shape ",
                shape_string(array.shape), " holds ", total, " elements but ", array.data.size(),
                " bytes were given");
  for (int d = 0; d < dims; ++d) {
    put_big_endian_u32(static_cast<uint32_t>(array.shape[d]), header.data() + 4 + 4 * d);
  }

  errno = 0;
  if (is_gzip_path(path)) {
    GzPtr gz(gzopen(path.c_str(), "wb"));
    SELFSUP_CHECK(gz != nullptr, "cannot create ", path, ": ",
                  errno ? std::strerror(errno) : "unknown error");
    write_bytes(path, nullptr, gz.get(), header.data(), header.size());
    write_bytes(path, nullptr, gz.get(), array.data.data(), array.data.size());
    // Close explicitly: gzclose flushes the compressed tail and can fail (e.g. disk full).
    const int status = gzclose(gz.release());
    SELFSUP_CHECK(status == Z_OK, "cannot finish writing ", path, " (zlib status ", status, ")");
  } else {
    FilePtr file(std::fopen(path.c_str(), "wb"));
    SELFSUP_CHECK(file != nullptr, "cannot create ", path, ": ", std::strerror(errno));
    write_bytes(path, file.get(), nullptr, header.data(), header.size());
    write_bytes(path, file.get(), nullptr, array.data.data(), array.data.size());
    const int status = std::fclose(file.release());
    SELFSUP_CHECK(status == 0, "cannot finish writing ", path, ": ", std::strerror(errno));
  }
}

IdxDataset::IdxDataset(const std::string& images_path, const std::string& labels_path,
                       std::string name, int64_t limit)
    : images_path_(images_path), name_(std::move(name)) {
  SELFSUP_CHECK(limit >= 0, "IdxDataset: limit = ", limit, " must be >= 0 (0 = all samples)");
  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  SELFSUP_CHECK(images.shape.size() == 3, images_path, " has shape ", shape_string(images.shape),
                "; an images file must be 3-D [count, height, width]");
  SELFSUP_CHECK(labels.shape.size() == 1, labels_path, " has shape ", shape_string(labels.shape),
                "; a labels file must be 1-D [count]");
  SELFSUP_CHECK(images.shape[0] == labels.shape[0], images_path, " holds ", images.shape[0],
                " images but ", labels_path, " holds ", labels.shape[0],
                " labels; the files must come from the same split");
  // Heights and widths are checked against INT_MAX so that they fit the int accessors.
  SELFSUP_CHECK(images.shape[1] <= INT32_MAX && images.shape[2] <= INT32_MAX, images_path,
                " has images of ", images.shape[1], "x", images.shape[2], " pixels; too large");
  height_ = static_cast<int>(images.shape[1]);
  width_ = static_cast<int>(images.shape[2]);

  // Classes are counted over the whole file, so that a limited split still reports all of them.
  const uint8_t max_label = *std::max_element(labels.data.begin(), labels.data.end());
  num_classes_ = int64_t{max_label} + 1;  // uint8 labels are < 256 by construction

  count_ = images.shape[0];
  if (limit > 0 && limit < count_) count_ = limit;
  const size_t image_bytes = static_cast<size_t>(height_) * static_cast<size_t>(width_);
  images.data.resize(static_cast<size_t>(count_) * image_bytes);
  labels.data.resize(static_cast<size_t>(count_));
  images.data.shrink_to_fit();
  pixels_ = std::move(images.data);
  labels_ = std::move(labels.data);
}

Sample IdxDataset::get(int64_t index) const {
  SELFSUP_CHECK(index >= 0 && index < count_, "sample index ", index, " is out of range for ",
                describe());
  // A copy (one image, a few hundred bytes): the caller owns it and may modify it freely.
  Sample sample;
  sample.image.create(height_, width_, CV_8UC1);
  const size_t image_bytes = static_cast<size_t>(height_) * static_cast<size_t>(width_);
  std::memcpy(sample.image.data, pixels_.data() + static_cast<size_t>(index) * image_bytes,
              image_bytes);
  sample.label = labels_[static_cast<size_t>(index)];
  return sample;
}

std::string IdxDataset::source(int64_t index) const {
  return detail::concat(images_path_, "#", index);
}

std::string IdxDataset::describe() const {
  return detail::concat(name_, " (", count_, " images, ", height_, "x", width_, ", ", num_classes_,
                        " classes)");
}

std::string find_idx_file(const std::string& root, const std::string& stem) {
  const std::filesystem::path plain = std::filesystem::path(root) / stem;
  const std::filesystem::path gzip = std::filesystem::path(root) / (stem + ".gz");
  std::error_code ignored;
  if (std::filesystem::is_regular_file(plain, ignored)) return plain.string();
  if (std::filesystem::is_regular_file(gzip, ignored)) return gzip.string();
  throw Error(detail::concat("cannot find ", plain.string(), " or ", gzip.string(),
                             "; install dataset-fashion-mnist (launch/setup.sh) or set data.root"));
}

}  // namespace selfsup
