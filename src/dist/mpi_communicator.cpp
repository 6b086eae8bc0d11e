// Built only when MPI is found (CMakeLists.txt adds src/dist/mpi_*.cpp then).
#include "selfsup/dist/mpi_communicator.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "selfsup/core/error.h"
#include "selfsup/core/launch.h"

namespace selfsup {
namespace {

std::string host_name() {
  char name[256] = {0};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

int world_rank() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int rank = -1;
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

// Checks an MPI return code; the message names the call, where it was made, the rank and the host.
void check_mpi(int code, const char* call, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(detail::concat(call, " failed at ", file, ":", line, " on rank ", world_rank(),
                             " (host ", host_name(), "): ", text));
}

#define SELFSUP_MPI_CHECK(call) check_mpi((call), #call, __FILE__, __LINE__)

MPI_Datatype mpi_type(const torch::Tensor& x) {
  switch (x.scalar_type()) {
    case torch::kFloat:
      return MPI_FLOAT;
    case torch::kDouble:
      return MPI_DOUBLE;
    case torch::kInt:
      return MPI_INT;
    case torch::kLong:
      return MPI_INT64_T;
    case torch::kByte:
      return MPI_UINT8_T;
    case torch::kBool:
      return MPI_C_BOOL;
    default:
      throw Error(detail::concat("the MPI communicator does not support tensors of type ",
                                 x.scalar_type()));
  }
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return MPI_SUM;  // average = sum / size, divided afterwards
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
  }
  SELFSUP_ASSERT(false, "unknown ReduceOp");
  return MPI_SUM;
}

void check_cpu_contiguous(const torch::Tensor& x, const char* what) {
  SELFSUP_CHECK(x.device().is_cpu(), "MPI ", what, ": tensor is on ", x.device().str(),
                "; the MPI communicator handles CPU tensors (use dist.backend=nccl on GPUs)");
  SELFSUP_CHECK(x.is_contiguous(), "MPI ", what, ": tensor must be contiguous");
}

void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

void ensure_mpi_initialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    int initialized = 0;
    SELFSUP_MPI_CHECK(MPI_Initialized(&initialized));
    if (initialized) return;
    int provided = 0;
    SELFSUP_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided));
    // Errors come back as codes (checked above) instead of aborting inside MPI.
    SELFSUP_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    std::atexit(finalize_mpi);
  });
}

MpiCommunicator::MpiCommunicator(double timeout_s) : host_(host_name()), timeout_s_(timeout_s) {
  ensure_mpi_initialized();
  SELFSUP_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  SELFSUP_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  // The local rank: the rank within the processes that share this node's memory.
  MPI_Comm node;
  SELFSUP_MPI_CHECK(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
  SELFSUP_MPI_CHECK(MPI_Comm_rank(node, &local_rank_));
  SELFSUP_MPI_CHECK(MPI_Comm_free(&node));
  // Cross-check with what the launcher says (a mismatch means a confused launch).
  const auto launch = detect_launch();
  // srun without --mpi=pmix (or an mpirun from another MPI) starts every task as a world of one:
  // each would train alone as rank 0. Refuse.
  SELFSUP_CHECK(launch.launcher == "none" || launch.world_size == size_, launch.launcher,
                " started ", launch.world_size, " processes but MPI sees a world of ", size_,
                " (rank ", rank_, " on ", host_, "); launch with the MPI selfsup was built with: ",
                "mpirun -np N, or srun --mpi=pmix");
  SELFSUP_CHECK(launch.local_rank < 0 || launch.local_rank == local_rank_, "rank ", rank_, " on ",
                host_, ": MPI says local rank ", local_rank_, " but ", launch.launcher, " says ",
                launch.local_rank, "; check the launch command");
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& x) {
  check_cpu_contiguous(x, "all_gather");
  auto sizes = x.sizes().vec();
  SELFSUP_CHECK(!sizes.empty(), "MPI all_gather needs a tensor with at least one dimension");
  sizes[0] *= size_;
  auto out = torch::empty(sizes, x.options());
  SELFSUP_MPI_CHECK(MPI_Allgather(x.data_ptr(), static_cast<int>(x.numel()), mpi_type(x),
                                  out.data_ptr(), static_cast<int>(x.numel()), mpi_type(x),
                                  MPI_COMM_WORLD));
  return out;
}

torch::Tensor MpiCommunicator::reduce_scatter(const torch::Tensor& x) {
  check_cpu_contiguous(x, "reduce_scatter");
  SELFSUP_CHECK(x.dim() >= 1 && x.size(0) % size_ == 0, "MPI reduce_scatter: dim 0 (",
                x.dim() ? x.size(0) : 0, ") must be divisible by the world size ", size_);
  auto sizes = x.sizes().vec();
  sizes[0] /= size_;
  auto out = torch::empty(sizes, x.options());
  SELFSUP_MPI_CHECK(MPI_Reduce_scatter_block(x.data_ptr(), out.data_ptr(),
                                             static_cast<int>(out.numel()), mpi_type(x), MPI_SUM,
                                             MPI_COMM_WORLD));
  return out;
}

void MpiCommunicator::all_reduce_(torch::Tensor& x, ReduceOp op) {
  check_cpu_contiguous(x, "all_reduce");
  SELFSUP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x.data_ptr(), static_cast<int>(x.numel()),
                                  mpi_type(x), mpi_op(op), MPI_COMM_WORLD));
  if (op == ReduceOp::kAvg) x.div_(size_);
}

void MpiCommunicator::broadcast_(torch::Tensor& x, int root) {
  check_cpu_contiguous(x, "broadcast");
  SELFSUP_MPI_CHECK(
      MPI_Bcast(x.data_ptr(), static_cast<int>(x.numel()), mpi_type(x), root, MPI_COMM_WORLD));
}

void MpiCommunicator::barrier() { SELFSUP_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); }

void MpiCommunicator::abort(int exit_code) { MPI_Abort(MPI_COMM_WORLD, exit_code); }

std::shared_ptr<Communicator> make_mpi_communicator(const DistConfig& config) {
  return std::make_shared<MpiCommunicator>(config.timeout_s);
}

}  // namespace selfsup
