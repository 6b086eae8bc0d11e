#pragma once
// The NCCL backend of the Communicator: collectives on CUDA tensors (DESIGN.md §3).
//
// This header names no CUDA or NCCL type (their handles are forward-declared below), so it can be
// included by every build; src/dist/nccl_communicator.cpp, the only file that includes
// <cuda_runtime.h> and <nccl.h>, is compiled only when CMake found the CUDA toolkit and NCCL. It
// never includes LibTorch's CUDA headers: CI builds it against a CPU-only LibTorch.
//
// Streams. LibTorch runs kernels on its *current* CUDA stream, which is the legacy default stream
// unless a caller changes it; selfsup never does, and this backend assumes it. Each collective runs
// on a communication stream of its own, ordered against the default stream by events:
//   1. record `ready` on the default stream (the inputs have been computed),
//   2. the communication stream waits for `ready`,
//   3. the NCCL operation is enqueued on the communication stream,
//   4. record `done` on the communication stream,
//   5. the default stream waits for `done` (later kernels see the result),
//   6. the host waits for `done` (see below).
//
// Blocking wait. Step 6 polls the `done` event and NCCL's asynchronous error state, with short
// sleeps, until the operation has finished, NCCL reports an error, or `timeout_s` has passed; on an
// error or a timeout the NCCL communicator is aborted and Error is thrown. This trades overlap of
// communication with computation for correctness: a rank never runs ahead of a collective that
// failed, and buffers from LibTorch's caching allocator are never reused while NCCL still reads
// them. The training loop synchronises with the host every step anyway (it reads the loss).
//
// all_reduce_async_ (the overlapped gradient buckets) stops after step 4, with an event of its own
// instead of `done`; its wait() does steps 5 and 6. Between the two the default stream keeps
// computing (the rest of backward) while NCCL reduces on the communication stream. The bucket
// buffers it reduces belong to the GradientReducer for its whole life, so no caching-allocator
// block is reused while NCCL reads it.
//
// Tensors on the CPU go to the MPI communicator this one is built on (the trainer reduces its
// logged numbers and the rank table gathers host names as CPU tensors), so one Communicator serves
// both kinds of tensor.

#include <memory>
#include <string>

#include "selfsup/dist/communicator.h"

struct ncclComm;     // ncclComm_t is ncclComm* (nccl.h)
struct CUstream_st;  // cudaStream_t is CUstream_st* (cuda_runtime.h)
struct CUevent_st;   // cudaEvent_t is CUevent_st*

namespace selfsup {

/// The number of CUDA devices this process sees through the CUDA runtime; 0 when there is no
/// device or driver, or when this build has no NCCL (then it does not link the CUDA runtime).
int cuda_device_count();

namespace detail {
// Deleters for the C handles (RAII, STYLE.md rule 6); they never throw.
struct NcclCommDestroy {
  void operator()(ncclComm* comm) const;
};
struct CudaStreamDestroy {
  void operator()(CUstream_st* stream) const;
};
struct CudaEventDestroy {
  void operator()(CUevent_st* event) const;
};
struct CudaFree {
  void operator()(void* pointer) const;
};
struct CudaFreeHost {
  void operator()(int64_t* pointer) const;
};
}  // namespace detail

/// A Communicator over NCCL for CUDA tensors on this rank's device, cuda:<cuda_device_index(local
/// rank, visible devices)> (as resolve_device chooses). Rank, world size and local rank come from
/// the MPI communicator it is built on (or a world of one when this build has no MPI). Every CUDA
/// and NCCL call is checked; a failure throws Error naming the call, file:line, rank and host, and
/// a failed NCCL operation aborts the NCCL communicator first.
class NcclCommunicator : public Communicator {
 public:
  /// Collective over every rank: sets up the device, checks that no two ranks share a GPU, and
  /// creates the NCCL communicator. `config.timeout_s`: a collective still unfinished after this
  /// long aborts the NCCL communicator and throws.
  explicit NcclCommunicator(const DistConfig& config);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  torch::Tensor all_gather(const torch::Tensor& x) override;
  torch::Tensor reduce_scatter(const torch::Tensor& x) override;
  /// kAvg is NCCL's ncclAvg (for integer tensors NCCL rounds the quotient down).
  void all_reduce_(torch::Tensor& x, ReduceOp op) override;
  std::unique_ptr<CollectiveWork> all_reduce_async_(torch::Tensor& x, ReduceOp op) override;
  void broadcast_(torch::Tensor& x, int root) override;
  /// An all-reduce of one element on the device: also waits for the default stream's work.
  void barrier() override;
  std::string backend() const override { return "nccl"; }
  /// Aborts the NCCL communicator, then the MPI job (MPI_Abort), so every rank ends.
  void abort(int exit_code) override;
  /// The CUDA device index this rank uses.
  int device() const { return device_; }

 private:
  class AsyncAllReduce;
  // Steps 1-4 of the protocol above around `launch` (which enqueues one NCCL call on the
  // communication stream), recording `done` (done_ when null).
  template <typename Launch>
  void enqueue(const char* operation, Launch&& launch, CUevent_st* done = nullptr);
  // Steps 1-5, then step 6.
  template <typename Launch>
  void run(const char* operation, Launch&& launch);
  // Steps 5 and 6 for `done`.
  void finish(const char* operation, CUevent_st* done);
  // Step 6: the blocking wait for `done` (done_ when null), bounded by timeout_s_.
  void wait(const char* operation, CUevent_st* done = nullptr);
  // A new event without timing (the caller owns it).
  CUevent_st* new_event();
  // ncclCommAbort once, ignoring its result; later collectives throw.
  void abort_nccl() noexcept;
  // Throws Error unless `x` is a contiguous CUDA tensor on this rank's device of a type NCCL has.
  void check_input(const torch::Tensor& x, const char* operation) const;
  // Collective: the ranks all-gather the dtype and shape of `x` (a few bytes over NCCL, through
  // pinned host memory so the wait stays bounded by the timeout) and every rank throws Error
  // naming each rank's tensor when they differ, instead of NCCL hanging or reading garbage.
  void check_same_shape(const torch::Tensor& x, const char* operation);

  std::shared_ptr<Communicator> bootstrap_;  // MPI (or a world of one): ranks, CPU tensors, abort
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int device_ = -1;
  std::string host_;
  double timeout_s_ = 300.0;
  bool check_shapes_ = true;
  // Declared so that the NCCL communicator is destroyed first, the stream last.
  std::unique_ptr<CUstream_st, detail::CudaStreamDestroy> stream_;  // communication stream
  std::unique_ptr<CUevent_st, detail::CudaEventDestroy> ready_;     // on the default stream
  std::unique_ptr<CUevent_st, detail::CudaEventDestroy> done_;      // on stream_
  std::unique_ptr<void, detail::CudaFree> barrier_buffer_;          // one float on the device
  std::unique_ptr<void, detail::CudaFree> signatures_device_;       // [size, signature] int64
  std::unique_ptr<int64_t, detail::CudaFreeHost> signatures_host_;  // the same, pinned host
  std::unique_ptr<ncclComm, detail::NcclCommDestroy> comm_;         // null once aborted
};

}  // namespace selfsup
