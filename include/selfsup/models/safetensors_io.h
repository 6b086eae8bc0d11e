#pragma once
// Tensors <-> safetensors files (the format and its parser: selfsup/models/safetensors.h).

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "selfsup/models/safetensors.h"  // SafetensorsError

namespace selfsup {

/// Named tensors in file order, and the file's string metadata.
struct TensorFile {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::map<std::string, std::string> metadata;

  /// The tensor called `name`; throws Error naming `source` when the file has none.
  const torch::Tensor& at(const std::string& name, const std::string& source) const;
};

/// Writes `tensors` (any device and layout; stored row-major on the CPU, in the order given) and
/// `metadata` to `path` atomically (temporary file, fsync, rename). Throws Error for a dtype the
/// format lacks, a duplicate or empty name, or a file that cannot be written.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Reads and validates a whole safetensors file into CPU tensors (ordered by data offset);
/// throws SafetensorsError naming the file, the tensor and the problem.
TensorFile read_safetensors(const std::string& path);

}  // namespace selfsup
