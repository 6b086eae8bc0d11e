#pragma once
// Small file helpers shared by checkpoints, run directories and reports.

#include <string>

namespace selfsup {

/// Writes `text` to `path` atomically: a temporary file in the same folder, flushed and fsync'ed,
/// then renamed over `path`. Throws Error naming the path when it cannot be written.
void write_file_atomic(const std::string& path, const std::string& text);

/// Reads a whole file; throws Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

/// fsync's a file or directory (best effort), so that a rename after it is durable.
void sync_path(const std::string& path);

}  // namespace selfsup
