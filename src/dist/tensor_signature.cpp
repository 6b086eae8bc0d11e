#include "tensor_signature.h"

#include <algorithm>
#include <sstream>

#include "selfsup/core/error.h"

namespace selfsup::detail {

std::vector<int64_t> tensor_signature(const torch::Tensor& x) {
  std::vector<int64_t> signature(kSignatureLength, -1);
  signature[0] = static_cast<int64_t>(x.scalar_type());
  signature[1] = x.dim();
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t slot = std::min<int64_t>(d, kSignatureDims - 1);
    signature[2 + slot] = (d == slot ? 1 : signature[2 + slot]) * x.size(d);
  }
  return signature;
}

std::string describe_signature(const int64_t* signature) {
  std::ostringstream out;
  out << "[";
  const int64_t dims = std::min<int64_t>(signature[1], kSignatureDims);
  for (int64_t d = 0; d < dims; ++d) out << (d ? ", " : "") << signature[2 + d];
  out << "] " << c10::toString(static_cast<c10::ScalarType>(signature[0]));
  return out.str();
}

void check_signatures(const std::vector<int64_t>& all, int size, int rank, const std::string& host,
                      const std::string& what) {
  bool same = true;
  for (int r = 1; r < size && same; ++r) {
    same = std::equal(all.begin(), all.begin() + kSignatureLength,
                      all.begin() + int64_t(r) * kSignatureLength);
  }
  if (same) return;
  std::ostringstream ranks;
  for (int r = 0; r < size; ++r) {
    ranks << (r ? ", " : "") << "rank " << r << " "
          << describe_signature(all.data() + int64_t(r) * kSignatureLength);
  }
  throw Error(concat(what, ": the tensors differ across ranks (", ranks.str(),
                     "); every rank must pass the same shape and dtype (seen on rank ", rank,
                     ", host ", host, ")"));
}

}  // namespace selfsup::detail
