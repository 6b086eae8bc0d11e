// Built only when CMake found the CUDA toolkit and NCCL (CMakeLists.txt adds this file then).
//
// CUDA comes in through <cuda_runtime.h> and <nccl.h> only, never through LibTorch's CUDA headers
// (c10/cuda, ATen/cuda): CI compiles this file against a CPU-only LibTorch, and the LibTorch API
// used here (data_ptr, sizes, options, scalar_type, device, is_cuda, empty) is the same in 1.13
// and 2.x.
#include "selfsup/dist/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/core/launch.h"
#include "tensor_signature.h"

#if !defined(NCCL_VERSION_CODE) || NCCL_VERSION_CODE < NCCL_VERSION(2, 13, 0)
#error "selfsup needs NCCL 2.13 or newer (ncclAvg, ncclBfloat16, ncclGetLastError)"
#endif

namespace selfsup {
namespace {

constexpr int kSpinPolls = 200;  // first polls of a wait just yield (small collectives)
constexpr auto kPollInterval = std::chrono::microseconds(100);  // then sleep this long per poll

// The start-up record every rank contributes (step 2 of the constructor), NUL-padded text fields.
constexpr int64_t kHostBytes = 64;
constexpr int64_t kBusIdBytes = 32;   // cudaDeviceGetPCIBusId needs at least 13
constexpr int64_t kDeviceBytes = 16;  // the device index as text
constexpr int64_t kFailureBytes = 512;
constexpr int64_t kBusIdAt = kHostBytes;
constexpr int64_t kDeviceAt = kBusIdAt + kBusIdBytes;
constexpr int64_t kFailureAt = kDeviceAt + kDeviceBytes;
constexpr int64_t kRecordBytes = kFailureAt + kFailureBytes;

std::string host_name() {
  char name[256] = {0};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

void put_text(torch::Tensor& bytes, int64_t offset, int64_t capacity, const std::string& text) {
  const auto n = std::min<int64_t>(static_cast<int64_t>(text.size()), capacity - 1);
  std::memcpy(bytes.data_ptr<uint8_t>() + offset, text.data(), static_cast<size_t>(n));
}

std::string get_text(const torch::Tensor& bytes, int64_t offset, int64_t capacity) {
  const char* begin = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>() + offset);
  return std::string(begin, strnlen(begin, static_cast<size_t>(capacity)));
}

std::string cuda_failure(cudaError_t code, const char* call, const char* file, int line, int rank,
                         const std::string& host) {
  (void)cudaGetLastError();  // a non-sticky error would otherwise trip LibTorch's next check
  return detail::concat(call, " failed at ", file, ":", line, " on rank ", rank, " (host ", host,
                        "): ", cudaGetErrorName(code), ": ", cudaGetErrorString(code));
}

std::string nccl_failure(ncclResult_t code, const char* call, const char* file, int line, int rank,
                         const std::string& host, ncclComm_t comm) {
  const char* last = ncclGetLastError(comm);
  return detail::concat(call, " failed at ", file, ":", line, " on rank ", rank, " (host ", host,
                        "): ", ncclGetErrorString(code),
                        last && *last ? std::string(" (") + last + ")" : std::string());
}

// Checked calls inside NcclCommunicator's members: the message names the call, file:line, this
// rank and host. A failed NCCL call aborts the NCCL communicator before throwing.
#define SELFSUP_CUDA_CHECK(call)                                                        \
  do {                                                                                  \
    const cudaError_t selfsup_code = (call);                                            \
    if (selfsup_code != cudaSuccess)                                                    \
      throw Error(cuda_failure(selfsup_code, #call, __FILE__, __LINE__, rank_, host_)); \
  } while (0)

#define SELFSUP_NCCL_CHECK(call)                                                            \
  do {                                                                                      \
    const ncclResult_t selfsup_code = (call);                                               \
    if (selfsup_code != ncclSuccess) {                                                      \
      auto selfsup_message =                                                                \
          nccl_failure(selfsup_code, #call, __FILE__, __LINE__, rank_, host_, comm_.get()); \
      abort_nccl();                                                                         \
      throw Error(selfsup_message);                                                         \
    }                                                                                       \
  } while (0)

ncclDataType_t nccl_type(const torch::Tensor& x, const char* operation) {
  switch (x.scalar_type()) {
    case torch::kFloat:
      return ncclFloat32;
    case torch::kDouble:
      return ncclFloat64;
    case torch::kHalf:
      return ncclFloat16;
    case torch::kBFloat16:
      return ncclBfloat16;
    case torch::kInt:
      return ncclInt32;
    case torch::kLong:
      return ncclInt64;
    case torch::kByte:
      return ncclUint8;
    default:
      throw Error(detail::concat("NCCL ", operation, ": tensors of type ", x.scalar_type(),
                                 " are not supported; use float, double, half, bfloat16, int32, "
                                 "int64 or uint8"));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kAvg:
      return ncclAvg;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  SELFSUP_ASSERT(false, "unknown ReduceOp");
  return ncclSum;
}

// Rank, world and CPU collectives: MPI when this build has it, else a world of one.
std::shared_ptr<Communicator> make_bootstrap(const DistConfig& config) {
#ifdef SELFSUP_HAVE_MPI
  return make_mpi_communicator(config);
#else
  const auto launch = detect_launch();
  SELFSUP_CHECK(launch.world_size == 1, launch.launcher, " started ", launch.world_size,
                " processes, but this selfsup was built without MPI, which the NCCL backend needs ",
                "to start several ranks; install libopenmpi-dev (launch/setup.sh) and rebuild, ",
                "or run one process");
  return std::make_shared<LocalCommunicator>();
#endif
}

}  // namespace

namespace detail {
void NcclCommDestroy::operator()(ncclComm* comm) const { (void)ncclCommDestroy(comm); }
void CudaStreamDestroy::operator()(CUstream_st* stream) const { (void)cudaStreamDestroy(stream); }
void CudaEventDestroy::operator()(CUevent_st* event) const { (void)cudaEventDestroy(event); }
void CudaFree::operator()(void* pointer) const { (void)cudaFree(pointer); }
void CudaFreeHost::operator()(int64_t* pointer) const { (void)cudaFreeHost(pointer); }
}  // namespace detail

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::string nccl_build_info() {
  int nccl = 0, runtime = 0, driver = 0;
  (void)ncclGetVersion(&nccl);
  (void)cudaRuntimeGetVersion(&runtime);
  (void)cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  return detail::concat(
      "NCCL ", nccl / 10000, ".", nccl / 100 % 100, ".", nccl % 100, " (headers ", NCCL_MAJOR, ".",
      NCCL_MINOR, ".", NCCL_PATCH, "), CUDA runtime ", runtime / 1000, ".", runtime % 1000 / 10,
      driver > 0 ? detail::concat(", driver for CUDA ", driver / 1000, ".", driver % 1000 / 10)
                 : std::string(", no CUDA driver"));
}

NcclCommunicator::NcclCommunicator(const DistConfig& config)
    : bootstrap_(make_bootstrap(config)),
      host_(host_name()),
      timeout_s_(config.timeout_s),
      check_shapes_(config.check_shapes) {
  rank_ = bootstrap_->rank();
  size_ = bootstrap_->size();
  local_rank_ = bootstrap_->local_rank();
  // Set-up protocol. Every step after the first is collective over MPI, and every rank takes the
  // same branch at each step, so that a failure on one rank becomes an error on all of them
  // instead of leaving the others waiting.
  //
  // 1. Local set-up: the device (the local rank's own, as resolve_device in
  //    src/core/device.cpp chooses), its PCI bus id, the stream, events and barrier buffer. A
  //    failure is recorded, not thrown yet.
  std::string failure;
  char bus_id[kBusIdBytes] = {0};
  try {
    int count = 0;
    const cudaError_t found = cudaGetDeviceCount(&count);
    if (found != cudaSuccess) (void)cudaGetLastError();
    SELFSUP_CHECK(found == cudaSuccess && count > 0, "rank ", rank_, " (host ", host_,
                  ") has no usable CUDA device for dist.backend=nccl: ",
                  found == cudaSuccess
                      ? std::string("no device is visible (CUDA_VISIBLE_DEVICES?)")
                      : detail::concat("cudaGetDeviceCount: ", cudaGetErrorString(found)),
                  "; use device=cpu (with dist.backend=mpi or auto), or run where a GPU and its "
                  "driver are visible");
    device_ = cuda_device_index(local_rank_, count);  // as resolve_device chooses
    SELFSUP_CUDA_CHECK(cudaSetDevice(device_));
    SELFSUP_CUDA_CHECK(cudaDeviceGetPCIBusId(bus_id, static_cast<int>(kBusIdBytes) - 1, device_));
    cudaStream_t stream = nullptr;
    SELFSUP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    stream_.reset(stream);
    cudaEvent_t ready = nullptr, done = nullptr;
    SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    ready_.reset(ready);
    SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    done_.reset(done);
    void* buffer = nullptr;
    SELFSUP_CUDA_CHECK(cudaMalloc(&buffer, sizeof(float)));
    barrier_buffer_.reset(buffer);
    SELFSUP_CUDA_CHECK(cudaMemset(buffer, 0, sizeof(float)));  // stays 0: barrier sums zeros
    const size_t signature_bytes = sizeof(int64_t) * detail::kSignatureLength * size_;
    SELFSUP_CUDA_CHECK(cudaMalloc(&buffer, signature_bytes));
    signatures_device_.reset(buffer);
    void* pinned = nullptr;
    SELFSUP_CUDA_CHECK(cudaMallocHost(&pinned, signature_bytes));
    signatures_host_.reset(static_cast<int64_t*>(pinned));
  } catch (const Error& e) {
    failure = e.what();
  }

  // 2. Every rank's record [host | PCI bus id | device | failure], gathered in rank order.
  auto record = torch::zeros({1, kRecordBytes}, torch::kByte);
  put_text(record, 0, kHostBytes, host_);
  put_text(record, kBusIdAt, kBusIdBytes, bus_id);
  put_text(record, kDeviceAt, kDeviceBytes, std::to_string(device_));
  put_text(record, kFailureAt, kFailureBytes, failure);
  const auto records = bootstrap_->all_gather(record).contiguous();  // [size, kRecordBytes]
  auto field = [&](int r, int64_t offset, int64_t capacity) {
    return get_text(records[r], offset, capacity);
  };

  // 3. A failure on any rank ends every rank (this rank's own message first).
  if (!failure.empty()) throw Error(failure);
  for (int r = 0; r < size_; ++r) {
    const auto other = field(r, kFailureAt, kFailureBytes);
    SELFSUP_CHECK(other.empty(), "rank ", rank_, ": the NCCL set-up failed on rank ", r, ": ",
                  other);
  }

  // 4. Two ranks on one GPU would hang or fail deep inside NCCL: refuse, naming both.
  for (int a = 0; a < size_; ++a) {
    for (int b = a + 1; b < size_; ++b) {
      const auto host = field(a, 0, kHostBytes);
      const auto bus = field(a, kBusIdAt, kBusIdBytes);
      SELFSUP_CHECK(host != field(b, 0, kHostBytes) || bus != field(b, kBusIdAt, kBusIdBytes),
                    "ranks ", a, " and ", b, " both use the GPU at PCI ", bus,
                    " (cuda:", field(a, kDeviceAt, kDeviceBytes),
                    " and cuda:", field(b, kDeviceAt, kDeviceBytes), ") on host ", host,
                    "; dist.backend=nccl needs one GPU per rank: start at most as many ranks per "
                    "node as it has visible GPUs (check CUDA_VISIBLE_DEVICES and the launcher's "
                    "GPU binding)");
    }
  }

  // 5. Rank 0 creates the NCCL unique id and broadcasts it: [ok | id | failure].
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  const auto id_bytes = static_cast<int64_t>(sizeof(id));
  auto message = torch::zeros({1 + id_bytes + kFailureBytes}, torch::kByte);
  if (rank_ == 0) {
    try {
      SELFSUP_NCCL_CHECK(ncclGetUniqueId(&id));
      message.data_ptr<uint8_t>()[0] = 1;
      std::memcpy(message.data_ptr<uint8_t>() + 1, &id, sizeof(id));
    } catch (const Error& e) {
      failure = e.what();
      put_text(message, 1 + id_bytes, kFailureBytes, failure);
    }
  }
  bootstrap_->broadcast_(message, 0);
  if (!failure.empty()) throw Error(failure);
  SELFSUP_CHECK(message.data_ptr<uint8_t>()[0] == 1, "rank ", rank_,
                ": rank 0 could not create the NCCL unique id: ",
                get_text(message, 1 + id_bytes, kFailureBytes));
  std::memcpy(&id, message.data_ptr<uint8_t>() + 1, sizeof(id));

  // 6. The NCCL communicator (blocking; collective over all ranks).
  ncclComm_t comm = nullptr;
  SELFSUP_NCCL_CHECK(ncclCommInitRank(&comm, size_, id, rank_));
  comm_.reset(comm);
}

NcclCommunicator::~NcclCommunicator() {
  // The members' deleters run next (communicator first); they need this rank's device current.
  if (device_ >= 0) (void)cudaSetDevice(device_);
}

void NcclCommunicator::abort_nccl() noexcept {
  if (comm_) (void)ncclCommAbort(comm_.release());
}

void NcclCommunicator::abort(int exit_code) {
  abort_nccl();
  bootstrap_->abort(exit_code);
}

void NcclCommunicator::check_input(const torch::Tensor& x, const char* operation) const {
  SELFSUP_CHECK(x.defined(), "NCCL ", operation, ": the tensor is undefined");
  SELFSUP_CHECK(x.is_cuda(), "NCCL ", operation, ": the tensor is on ", x.device().str(),
                "; the NCCL communicator handles CUDA tensors (and CPU tensors, through MPI)");
  SELFSUP_CHECK(x.device().index() == device_, "NCCL ", operation, ": the tensor is on ",
                x.device().str(), " but rank ", rank_, " (host ", host_, ") uses cuda:", device_,
                " (local rank ", local_rank_, " modulo the visible devices); move it there first");
  SELFSUP_CHECK(x.is_contiguous(), "NCCL ", operation,
                ": the tensor must be contiguous (call .contiguous() first)");
  (void)nccl_type(x, operation);
}

void NcclCommunicator::check_same_shape(const torch::Tensor& x, const char* operation) {
  if (size_ == 1 || !check_shapes_) return;
  const auto mine = detail::tensor_signature(x);
  const size_t length = detail::kSignatureLength;
  int64_t* host = signatures_host_.get();
  auto* device = static_cast<int64_t*>(signatures_device_.get());
  std::copy(mine.begin(), mine.end(), host + length * rank_);
  Counted counted(*this, "shape_check", static_cast<int64_t>(sizeof(int64_t) * length * size_));
  run(operation, [&] {
    SELFSUP_CUDA_CHECK(cudaMemcpyAsync(device + length * rank_, host + length * rank_,
                                       sizeof(int64_t) * length, cudaMemcpyHostToDevice,
                                       stream_.get()));
    SELFSUP_NCCL_CHECK(ncclAllGather(device + length * rank_, device, length, ncclInt64,
                                     comm_.get(), stream_.get()));
    SELFSUP_CUDA_CHECK(cudaMemcpyAsync(host, device, sizeof(int64_t) * length * size_,
                                       cudaMemcpyDeviceToHost, stream_.get()));
  });
  detail::check_signatures(std::vector<int64_t>(host, host + length * size_), size_, rank_, host_,
                           std::string("NCCL ") + operation);
}

template <typename Launch>
void NcclCommunicator::enqueue(const char* operation, Launch&& launch, CUevent_st* done) {
  SELFSUP_CHECK(comm_, "NCCL ", operation, " on rank ", rank_, " (host ", host_,
                "): the NCCL communicator was aborted after an earlier error; end this run");
  if (!done) done = done_.get();
  try {
    // The numbered steps are those of the header's protocol comment.
    SELFSUP_CUDA_CHECK(cudaSetDevice(device_));  // this rank's only device stays current
    SELFSUP_CUDA_CHECK(cudaEventRecord(ready_.get(), cudaStreamLegacy));      // 1
    SELFSUP_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), ready_.get(), 0));  // 2
    launch();                                                                 // 3
    SELFSUP_CUDA_CHECK(cudaEventRecord(done, stream_.get()));                 // 4
  } catch (...) {
    abort_nccl();  // half-issued: the other ranks cannot be matched any more
    throw;
  }
}

template <typename Launch>
void NcclCommunicator::run(const char* operation, Launch&& launch) {
  enqueue(operation, std::forward<Launch>(launch));
  finish(operation, done_.get());
}

void NcclCommunicator::finish(const char* operation, CUevent_st* done) {
  try {
    SELFSUP_CUDA_CHECK(cudaStreamWaitEvent(cudaStreamLegacy, done, 0));  // 5
  } catch (...) {
    abort_nccl();
    throw;
  }
  wait(operation, done);  // 6
}

CUevent_st* NcclCommunicator::new_event() {
  cudaEvent_t event = nullptr;
  SELFSUP_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  return event;
}

void NcclCommunicator::wait(const char* operation, CUevent_st* done) {
  if (!done) done = done_.get();
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const std::chrono::duration<double> timeout(timeout_s_);
  for (int polls = 0;; ++polls) {
    const cudaError_t state = cudaEventQuery(done);
    if (state == cudaSuccess) return;
    if (state != cudaErrorNotReady) {
      auto message = detail::concat(
          "NCCL ", operation, ": ",
          cuda_failure(state, "cudaEventQuery(done)", __FILE__, __LINE__, rank_, host_));
      abort_nccl();
      throw Error(message);
    }
    (void)cudaGetLastError();  // "not ready" is no error; do not leave it for LibTorch's checks
    ncclResult_t async = ncclSuccess;
    SELFSUP_NCCL_CHECK(ncclCommGetAsyncError(comm_.get(), &async));
    if (async != ncclSuccess) {
      const char* last = ncclGetLastError(comm_.get());
      auto message = detail::concat(
          "NCCL ", operation, " failed on rank ", rank_, " (host ", host_, ", cuda:", device_,
          "): ", ncclGetErrorString(async), last && *last ? std::string(" (") + last + ")" : "",
          "; the NCCL communicator was aborted (if another rank failed first, its error is the "
          "cause)");
      abort_nccl();
      throw Error(message);
    }
    if (Clock::now() - start >= timeout) {
      abort_nccl();
      throw Error(detail::concat(
          "NCCL ", operation, " on rank ", rank_, " (host ", host_, ", cuda:", device_,
          ") did not finish within the timeout (dist.timeout_s = ", timeout_s_,
          " s); the NCCL communicator was aborted. Another rank probably died, hangs, or called "
          "a different collective; raise dist.timeout_s only if a step legitimately takes longer"));
    }
    if (polls < kSpinPolls) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(kPollInterval);
    }
  }
}

torch::Tensor NcclCommunicator::all_gather(const torch::Tensor& x) {
  if (x.defined() && x.device().is_cpu()) {
    Counted counted(*this, "all_gather", bytes_of(x) * size_);
    return bootstrap_->all_gather(x);
  }
  check_input(x, "all_gather");
  SELFSUP_CHECK(x.dim() >= 1, "NCCL all_gather needs a tensor with at least one dimension");
  check_same_shape(x, "all_gather");
  auto sizes = x.sizes().vec();
  sizes[0] *= size_;
  auto out = torch::empty(sizes, x.options());  // [size*n, ...]
  const auto count = static_cast<size_t>(x.numel());
  if (count == 0) return out;
  Counted counted(*this, "all_gather", bytes_of(out));
  run("all_gather", [&] {
    SELFSUP_NCCL_CHECK(ncclAllGather(x.data_ptr(), out.data_ptr(), count,
                                     nccl_type(x, "all_gather"), comm_.get(), stream_.get()));
  });
  return out;
}

torch::Tensor NcclCommunicator::reduce_scatter(const torch::Tensor& x) {
  if (x.defined() && x.device().is_cpu()) {
    Counted counted(*this, "reduce_scatter", bytes_of(x));
    return bootstrap_->reduce_scatter(x);
  }
  check_input(x, "reduce_scatter");
  SELFSUP_CHECK(x.dim() >= 1 && x.size(0) % size_ == 0, "NCCL reduce_scatter: dim 0 (",
                x.dim() ? x.size(0) : 0, ") must be divisible by the world size ", size_);
  check_same_shape(x, "reduce_scatter");
  Counted counted(*this, "reduce_scatter", bytes_of(x));
  auto sizes = x.sizes().vec();
  sizes[0] /= size_;
  auto out = torch::empty(sizes, x.options());  // [n, ...]
  const auto count = static_cast<size_t>(out.numel());
  if (count == 0) return out;
  run("reduce_scatter", [&] {
    SELFSUP_NCCL_CHECK(ncclReduceScatter(x.data_ptr(), out.data_ptr(), count,
                                         nccl_type(x, "reduce_scatter"), ncclSum, comm_.get(),
                                         stream_.get()));
  });
  return out;
}

void NcclCommunicator::all_reduce_(torch::Tensor& x, ReduceOp op) {
  if (x.defined() && x.device().is_cpu()) {
    Counted counted(*this, "all_reduce", bytes_of(x));
    return bootstrap_->all_reduce_(x, op);
  }
  check_input(x, "all_reduce");
  check_same_shape(x, "all_reduce");
  Counted counted(*this, "all_reduce", bytes_of(x));
  const auto count = static_cast<size_t>(x.numel());
  if (count == 0) return;
  run("all_reduce", [&] {
    SELFSUP_NCCL_CHECK(ncclAllReduce(x.data_ptr(), x.data_ptr(), count, nccl_type(x, "all_reduce"),
                                     nccl_op(op), comm_.get(), stream_.get()));
  });
}

class NcclCommunicator::AsyncAllReduce : public CollectiveWork {
 public:
  AsyncAllReduce(NcclCommunicator& comm, torch::Tensor x)
      : comm_(comm), x_(std::move(x)), done_(comm.new_event()) {}
  ~AsyncAllReduce() override {
    try {
      wait();
    } catch (...) {
      // The communicator was aborted and the error thrown by the first wait.
    }
  }
  CUevent_st* event() const { return done_.get(); }
  void enqueued() { enqueued_ = true; }
  void wait() override {
    if (!enqueued_ || waited_) return;
    waited_ = true;
    Counted counted(comm_, "all_reduce_wait", 0);
    comm_.finish("all_reduce", done_.get());
  }

 private:
  NcclCommunicator& comm_;
  torch::Tensor x_;  // kept alive until the reduction is done
  std::unique_ptr<CUevent_st, detail::CudaEventDestroy> done_;
  bool enqueued_ = false;
  bool waited_ = false;
};

std::unique_ptr<CollectiveWork> NcclCommunicator::all_reduce_async_(torch::Tensor& x, ReduceOp op) {
  if (x.defined() && x.device().is_cpu()) return Communicator::all_reduce_async_(x, op);
  check_input(x, "all_reduce");
  check_same_shape(x, "all_reduce");
  Counted counted(*this, "all_reduce", bytes_of(x));
  auto work = std::make_unique<AsyncAllReduce>(*this, x);
  const auto count = static_cast<size_t>(x.numel());
  if (count == 0) return work;
  enqueue(
      "all_reduce",
      [&] {
        SELFSUP_NCCL_CHECK(ncclAllReduce(x.data_ptr(), x.data_ptr(), count,
                                         nccl_type(x, "all_reduce"), nccl_op(op), comm_.get(),
                                         stream_.get()));
      },
      work->event());
  work->enqueued();
  return work;
}

void NcclCommunicator::broadcast_(torch::Tensor& x, int root) {
  if (x.defined() && x.device().is_cpu()) {
    Counted counted(*this, "broadcast", bytes_of(x));
    return bootstrap_->broadcast_(x, root);
  }
  check_input(x, "broadcast");
  SELFSUP_CHECK(root >= 0 && root < size_, "NCCL broadcast: root ", root,
                " is not a rank of this world of ", size_);
  check_same_shape(x, "broadcast");
  Counted counted(*this, "broadcast", bytes_of(x));
  const auto count = static_cast<size_t>(x.numel());
  if (count == 0) return;
  run("broadcast", [&] {
    SELFSUP_NCCL_CHECK(ncclBroadcast(x.data_ptr(), x.data_ptr(), count, nccl_type(x, "broadcast"),
                                     root, comm_.get(), stream_.get()));
  });
}

void NcclCommunicator::barrier() {
  Counted counted(*this, "barrier", 0);
  run("barrier", [&] {
    SELFSUP_NCCL_CHECK(ncclAllReduce(barrier_buffer_.get(), barrier_buffer_.get(), 1, ncclFloat32,
                                     ncclSum, comm_.get(), stream_.get()));
  });
}

std::shared_ptr<Communicator> make_nccl_communicator(const DistConfig& config) {
  return std::make_shared<NcclCommunicator>(config);
}

}  // namespace selfsup
