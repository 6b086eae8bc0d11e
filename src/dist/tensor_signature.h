#pragma once
// Private to src/dist/: the signature of a tensor as it enters a collective (dtype, number of
// dims, sizes), which the backends compare across ranks before the payload moves, so that a
// mismatch is an error on every rank instead of a hang or garbage.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace selfsup::detail {

constexpr int kSignatureDims = 6;  // further dimensions fold into the last
constexpr int kSignatureLength = kSignatureDims + 2;

/// [dtype, dims, size_0, ..., size_5] (unused sizes -1).
std::vector<int64_t> tensor_signature(const torch::Tensor& x);

/// "[8, 128] Float" for one signature.
std::string describe_signature(const int64_t* signature);

/// Given every rank's signature (`all`: size * kSignatureLength values in rank order), throws Error
/// listing each rank's tensor unless they are all equal. `what` names the backend and collective.
void check_signatures(const std::vector<int64_t>& all, int size, int rank, const std::string& host,
                      const std::string& what);

}  // namespace selfsup::detail
