// Built only when MPI is found (CMakeLists.txt adds src/dist/mpi_*.cpp then).
#include "selfsup/dist/mpi_communicator.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/core/launch.h"
#include "tensor_signature.h"

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

// A watchdog thread for the collectives of one communicator. The main thread marks the start and
// end of each MPI call; when one has been running longer than the timeout, another rank has died,
// stalled or called a different collective, and this rank would wait forever. The watchdog then
// reports the call and ends the process: the launcher (mpirun, or srun --kill-on-bad-exit) sees a
// rank exit without MPI_Finalize and ends the others. It does not call MPI itself (the library is
// initialised MPI_THREAD_FUNNELED: only the main thread may).
class CollectiveWatchdog {
 public:
  CollectiveWatchdog(double timeout_s, int rank, std::string host)
      : timeout_(timeout_s), rank_(rank), host_(std::move(host)), thread_([this] { loop(); }) {}

  ~CollectiveWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  // Marks one collective in flight on the calling (main) thread, and its end.
  void begin(const char* call, std::string what) {
    std::lock_guard<std::mutex> lock(mutex_);
    call_ = call;
    what_ = std::move(what);
    started_ = Clock::now();
    active_ = true;
  }
  void end() {
    std::lock_guard<std::mutex> lock(mutex_);
    active_ = false;
  }

 private:
  using Clock = std::chrono::steady_clock;

  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto poll = std::chrono::milliseconds(
        std::clamp<int64_t>(static_cast<int64_t>(timeout_ * 1000 / 10), 50, 1000));
    while (!stop_) {
      wake_.wait_for(lock, poll);
      if (stop_ || !active_) continue;
      const double waited = std::chrono::duration<double>(Clock::now() - started_).count();
      if (waited < timeout_) continue;
      std::fprintf(stderr,
                   "selfsup: error: [rank %d] %s (%s) did not complete within %.0f s on host "
                   "%s: another rank has died, stalled or called a different collective; ending "
                   "this rank so that the job does not hang (raise dist.timeout_s if steps are "
                   "legitimately this slow)\n",
                   rank_, call_, what_.c_str(), timeout_, host_.c_str());
      std::fflush(stderr);
      std::_Exit(kWatchdogExitCode);
    }
  }

  static constexpr int kWatchdogExitCode = 1;
  const double timeout_;
  const int rank_;
  const std::string host_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool active_ = false;
  const char* call_ = "";
  std::string what_;
  Clock::time_point started_;
  std::thread thread_;  // last: starts after every other member is ready
};

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

MpiCommunicator::MpiCommunicator(double timeout_s, bool check_shapes)
    : host_(host_name()), timeout_s_(timeout_s), check_shapes_(check_shapes) {
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
  SELFSUP_CHECK(
      launch.launcher == "none" || launch.world_size == size_, launch.launcher, " started ",
      launch.world_size, " processes but MPI sees a world of ", size_, " (rank ", rank_, " on ",
      host_, "); launch with the MPI selfsup was built with: ", "mpirun -np N, or srun --mpi=pmix");
  SELFSUP_CHECK(launch.local_rank < 0 || launch.local_rank == local_rank_, "rank ", rank_, " on ",
                host_, ": MPI says local rank ", local_rank_, " but ", launch.launcher, " says ",
                launch.local_rank, "; check the launch command");
  SELFSUP_CHECK(timeout_s_ > 0, "dist.timeout_s = ", timeout_s_, " must be positive");
  if (size_ > 1) watchdog_ = std::make_unique<CollectiveWatchdog>(timeout_s_, rank_, host_);
}

MpiCommunicator::~MpiCommunicator() = default;

void MpiCommunicator::check_same_shape(const torch::Tensor& x, const char* what) {
  if (size_ == 1 || !check_shapes_) return;
  const auto mine = detail::tensor_signature(x);
  std::vector<int64_t> all(static_cast<size_t>(detail::kSignatureLength) * size_);
  {
    Counted counted(*this, "shape_check", static_cast<int64_t>(all.size() * sizeof(int64_t)));
    Watch watch(*this, "MPI_Allgather", std::string(what) + " shapes");
    SELFSUP_MPI_CHECK(MPI_Allgather(mine.data(), detail::kSignatureLength, MPI_INT64_T, all.data(),
                                    detail::kSignatureLength, MPI_INT64_T, MPI_COMM_WORLD));
  }
  detail::check_signatures(all, size_, rank_, host_, std::string("MPI ") + what);
}

std::string MpiCommunicator::describe(const torch::Tensor& x, const char* what) const {
  return detail::concat(what, " of ",
                        detail::describe_signature(detail::tensor_signature(x).data()));
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& x) {
  check_cpu_contiguous(x, "all_gather");
  auto sizes = x.sizes().vec();
  SELFSUP_CHECK(!sizes.empty(), "MPI all_gather needs a tensor with at least one dimension");
  sizes[0] *= size_;
  check_same_shape(x, "all_gather");
  auto out = torch::empty(sizes, x.options());
  Counted counted(*this, "all_gather", bytes_of(out));
  Watch watch(*this, "MPI_Allgather", describe(x, "all_gather"));
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
  check_same_shape(x, "reduce_scatter");
  auto out = torch::empty(sizes, x.options());
  Counted counted(*this, "reduce_scatter", bytes_of(x));
  Watch watch(*this, "MPI_Reduce_scatter_block", describe(x, "reduce_scatter"));
  SELFSUP_MPI_CHECK(MPI_Reduce_scatter_block(x.data_ptr(), out.data_ptr(),
                                             static_cast<int>(out.numel()), mpi_type(x), MPI_SUM,
                                             MPI_COMM_WORLD));
  return out;
}

void MpiCommunicator::all_reduce_(torch::Tensor& x, ReduceOp op) {
  check_cpu_contiguous(x, "all_reduce");
  check_same_shape(x, "all_reduce");
  Counted counted(*this, "all_reduce", bytes_of(x));
  Watch watch(*this, "MPI_Allreduce", describe(x, "all_reduce"));
  SELFSUP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, x.data_ptr(), static_cast<int>(x.numel()),
                                  mpi_type(x), mpi_op(op), MPI_COMM_WORLD));
  if (op == ReduceOp::kAvg) x.div_(size_);
}

class MpiCommunicator::AsyncAllReduce : public CollectiveWork {
 public:
  AsyncAllReduce(MpiCommunicator& comm, torch::Tensor x, ReduceOp op, MPI_Request request)
      : comm_(comm), x_(std::move(x)), op_(op), request_(request) {}
  ~AsyncAllReduce() override {
    try {
      wait();
    } catch (...) {
      // A failed wait already reported through the watchdog or MPI's error handler.
    }
  }
  void wait() override {
    if (done_) return;
    done_ = true;
    Counted counted(comm_, "all_reduce_wait", 0);
    Watch watch(comm_, "MPI_Wait", comm_.describe(x_, "all_reduce_async"));
    SELFSUP_MPI_CHECK(MPI_Wait(&request_, MPI_STATUS_IGNORE));
    if (op_ == ReduceOp::kAvg) x_.div_(comm_.size_);
  }

 private:
  MpiCommunicator& comm_;
  torch::Tensor x_;
  ReduceOp op_;
  MPI_Request request_;
  bool done_ = false;
};

std::unique_ptr<CollectiveWork> MpiCommunicator::all_reduce_async_(torch::Tensor& x, ReduceOp op) {
  check_cpu_contiguous(x, "all_reduce");
  check_same_shape(x, "all_reduce");
  Counted counted(*this, "all_reduce", bytes_of(x));
  MPI_Request request = MPI_REQUEST_NULL;
  SELFSUP_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, x.data_ptr(), static_cast<int>(x.numel()),
                                   mpi_type(x), mpi_op(op), MPI_COMM_WORLD, &request));
  return std::make_unique<AsyncAllReduce>(*this, x, op, request);
}

void MpiCommunicator::broadcast_(torch::Tensor& x, int root) {
  check_cpu_contiguous(x, "broadcast");
  check_same_shape(x, "broadcast");
  Counted counted(*this, "broadcast", bytes_of(x));
  Watch watch(*this, "MPI_Bcast", describe(x, "broadcast"));
  SELFSUP_MPI_CHECK(
      MPI_Bcast(x.data_ptr(), static_cast<int>(x.numel()), mpi_type(x), root, MPI_COMM_WORLD));
}

void MpiCommunicator::barrier() {
  Counted counted(*this, "barrier", 0);
  Watch watch(*this, "MPI_Barrier", "barrier");
  SELFSUP_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

MpiCommunicator::Watch::Watch(MpiCommunicator& comm, const char* call, std::string what)
    : watchdog_(comm.watchdog_.get()) {
  if (watchdog_) watchdog_->begin(call, std::move(what));
}

MpiCommunicator::Watch::~Watch() {
  if (watchdog_) watchdog_->end();
}

void MpiCommunicator::abort(int exit_code) { MPI_Abort(MPI_COMM_WORLD, exit_code); }

std::shared_ptr<Communicator> make_mpi_communicator(const DistConfig& config) {
  return std::make_shared<MpiCommunicator>(config.timeout_s, config.check_shapes);
}

}  // namespace selfsup
