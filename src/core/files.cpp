#include "selfsup/core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "selfsup/core/error.h"

namespace selfsup {
namespace fs = std::filesystem;

void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  SELFSUP_CHECK(in, "cannot read ", path, ": no such file or not readable");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const fs::path target(path);
  const fs::path tmp = target.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    SELFSUP_CHECK(out, "cannot write ", tmp.string(), "; check that the directory is writable");
    out << text;
    out.flush();
    SELFSUP_CHECK(out, "error while writing ", tmp.string(), " (disk full?)");
  }
  sync_path(tmp.string());
  std::error_code ec;
  fs::rename(tmp, target, ec);
  SELFSUP_CHECK(!ec, "cannot rename ", tmp.string(), " to ", path, ": ", ec.message());
  sync_path(target.parent_path().string());
}

}  // namespace selfsup
