#include "selfsup/core/device.h"

#include "selfsup/core/error.h"

namespace selfsup {

torch::Device resolve_device(const std::string& name, int local_rank) {
  if (name == "cpu") return torch::kCPU;
  SELFSUP_CHECK(name == "cuda", "device = \"", name, "\" is unknown; use \"cpu\" or \"cuda\"");
  const auto count = static_cast<int>(torch::cuda::device_count());
  SELFSUP_CHECK(count > 0, "device = \"cuda\", but no CUDA device is usable (this LibTorch ",
                "was built without CUDA, or no GPU is visible); use --set device=cpu, or build ",
                "against a CUDA LibTorch with launch/build.sh -- -DTorch_DIR=...");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
}

}  // namespace selfsup
