#pragma once
// NumPy .npy files (format versions 1-3, C order, little-endian), written by hand: arrays of images
// in and feature matrices out (`selfsup embed`), readable with numpy.load.

#include <torch/torch.h>

#include <string>

namespace selfsup {

/// Reads a .npy array of dtype float32, float64, uint8, int64 or int32 (little-endian, C order)
/// into a CPU tensor; throws Error naming the file and the problem otherwise.
torch::Tensor read_npy(const std::string& path);

/// Writes `tensor` (float32, float64, uint8, int64 or int32; any device and layout) as a version
/// 1.0 .npy file, atomically.
void write_npy(const std::string& path, const torch::Tensor& tensor);

}  // namespace selfsup
