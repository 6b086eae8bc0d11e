#include "selfsup/core/device.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "selfsup/core/error.h"

// LibTorch 2.4 replaced the per-device autocast functions (is_enabled / is_cpu_enabled,
// get_autocast_gpu_dtype, ...) by ones that take the device type, and later releases drop the old
// ones: Debian's 1.13 has only the old, a current CUDA LibTorch only the new.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SELFSUP_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace selfsup {
namespace {

void check_autocast_device(torch::DeviceType device) {
  SELFSUP_CHECK(device == torch::kCPU || device == torch::kCUDA, "autocast: device type ", device,
                " is not supported (CPU or CUDA)");
}

bool autocast_enabled(torch::DeviceType device) {
#ifdef SELFSUP_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(device);
#else
  return device == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast_enabled(torch::DeviceType device, bool enabled) {
#ifdef SELFSUP_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == torch::kCUDA)
    at::autocast::set_enabled(enabled);
  else
    at::autocast::set_cpu_enabled(enabled);
#endif
}

torch::ScalarType autocast_dtype(torch::DeviceType device) {
#ifdef SELFSUP_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(device);
#else
  return device == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                                : at::autocast::get_autocast_cpu_dtype();
#endif
}

void set_autocast_dtype(torch::DeviceType device, torch::ScalarType dtype) {
#ifdef SELFSUP_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == torch::kCUDA)
    at::autocast::set_autocast_gpu_dtype(dtype);
  else
    at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

}  // namespace

torch::Device resolve_device(const std::string& name, int local_rank) {
  if (name == "cpu") return torch::kCPU;
  SELFSUP_CHECK(name == "cuda", "device = \"", name, "\" is unknown; use \"cpu\" or \"cuda\"");
  const auto count = static_cast<int>(torch::cuda::device_count());
  SELFSUP_CHECK(count > 0, "device = \"cuda\", but no CUDA device is usable (this LibTorch ",
                "was built without CUDA, or no GPU is visible); use --set device=cpu, or build ",
                "against a CUDA LibTorch with launch/build.sh -- -DTorch_DIR=...");
  return torch::Device(torch::kCUDA,
                       static_cast<c10::DeviceIndex>(cuda_device_index(local_rank, count)));
}

int cuda_device_index(int local_rank, int visible) {
  SELFSUP_CHECK(visible > 0 && local_rank >= 0, "cuda_device_index: local rank ", local_rank,
                " with ", visible, " visible devices");
  if (visible == 1) return 0;  // one GPU per rank, bound by the launcher
  SELFSUP_CHECK(local_rank < visible, "this rank is local rank ", local_rank,
                " on its node, but only ", visible, " GPUs are visible there: launch at most ",
                visible, " ranks per node (srun --ntasks-per-node=", visible,
                " --gpus-per-node=", visible, "; mpirun -npernode ", visible,
                "), or give each rank its own GPU (srun --gpu-bind=single:1)");
  return local_rank;
}

AutocastGuard::AutocastGuard(torch::DeviceType device, bool enabled, torch::ScalarType dtype)
    : device_(device), enabled_(enabled) {
  if (!enabled_) return;
  check_autocast_device(device);
  previous_enabled_ = autocast_enabled(device);
  previous_dtype_ = autocast_dtype(device);
  set_autocast_enabled(device, true);
  set_autocast_dtype(device, dtype);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  // The outermost guard drops the cached low-precision copies of the weights (they change with
  // every optimizer step).
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device_, previous_enabled_);
  set_autocast_dtype(device_, previous_dtype_);
}

}  // namespace selfsup
