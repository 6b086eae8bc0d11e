#pragma once
// The Communicator: one narrow interface over collectives, with backends chosen at run time
// (`dist.backend`): Local (a world of one), Mpi (CPU tensors), Nccl (CUDA tensors). DESIGN.md §3.
// Every call is collective: all ranks call it, in the same order, with the same shapes.

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "selfsup/core/config.h"

namespace selfsup {

enum class ReduceOp { kSum, kAvg, kMax, kMin };

/// How often one kind of collective ran and the bytes of its full buffer: the gathered output of
/// all_gather ([size*n, ...]), the input of reduce_scatter ([size*n, ...]), the tensor of
/// all_reduce and broadcast. What crosses the network follows from it and the algorithm (a ring
/// all_gather or reduce_scatter sends (size-1)/size of the buffer per rank, an all_reduce twice
/// that); docs/PERFORMANCE.md works it out.
struct CollectiveCount {
  int64_t calls = 0;
  int64_t bytes = 0;
  double seconds = 0;  // wall time inside the calls (waiting for slower ranks included)
};

/// A collective started by an *_async call. wait() returns once the result is in the tensor (on
/// CUDA: once later work on the default stream is ordered after it); waiting again does nothing.
/// Destroying a Work that was never waited for waits for it: an MPI request or a buffer still read
/// by NCCL is never abandoned.
class CollectiveWork {
 public:
  virtual ~CollectiveWork() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;
  /// Concatenation over ranks on dim 0: [n, ...] on each rank -> [size*n, ...].
  virtual torch::Tensor all_gather(const torch::Tensor& x) = 0;
  /// Sum over ranks, then this rank's dim-0 slice: [size*n, ...] -> [n, ...].
  virtual torch::Tensor reduce_scatter(const torch::Tensor& x) = 0;
  /// In-place reduction over ranks.
  virtual void all_reduce_(torch::Tensor& x, ReduceOp op) = 0;
  /// all_reduce_ started without waiting for it, so that it overlaps what this rank computes next
  /// (gradient buckets during backward). Collective like the blocking calls: every rank starts the
  /// same ones in the same order, interleaved alike with its other collectives. `x` must stay
  /// alive and untouched until wait(). This default finishes the reduction before returning.
  virtual std::unique_ptr<CollectiveWork> all_reduce_async_(torch::Tensor& x, ReduceOp op);
  /// In-place broadcast from `root`.
  virtual void broadcast_(torch::Tensor& x, int root) = 0;
  virtual void barrier() = 0;
  /// Backend name for logs: "local", "mpi", "nccl".
  virtual std::string backend() const = 0;
  /// Ends every rank of the job now (after this rank hit an error), so none is left waiting in a
  /// collective. A world of one just returns.
  virtual void abort(int exit_code) {}

  /// Collectives run so far, by name ("all_gather", "reduce_scatter", "all_reduce", "broadcast",
  /// "barrier", and backend-specific ones such as the MPI backend's "shape_check").
  const std::map<std::string, CollectiveCount>& counts() const { return counts_; }
  void reset_counts() { counts_.clear(); }

 protected:
  /// Backends hold one of these for the duration of each collective: it counts the call, its full
  /// buffer (see CollectiveCount) and the time spent.
  class Counted {
   public:
    Counted(Communicator& comm, const char* name, int64_t bytes)
        : count_(comm.counts_[name]), start_(std::chrono::steady_clock::now()) {
      ++count_.calls;
      count_.bytes += bytes;
    }
    ~Counted() {
      count_.seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }
    Counted(const Counted&) = delete;
    Counted& operator=(const Counted&) = delete;

   private:
    CollectiveCount& count_;
    std::chrono::steady_clock::time_point start_;
  };
  static int64_t bytes_of(const torch::Tensor& x) {
    return x.numel() * static_cast<int64_t>(x.element_size());
  }

 private:
  std::map<std::string, CollectiveCount> counts_;
};

/// A world of one: every collective is the identity (a copy where the API returns a new tensor).
class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  torch::Tensor all_gather(const torch::Tensor& x) override {
    Counted counted(*this, "all_gather", bytes_of(x));
    return x.clone();
  }
  torch::Tensor reduce_scatter(const torch::Tensor& x) override {
    Counted counted(*this, "reduce_scatter", bytes_of(x));
    return x.clone();
  }
  void all_reduce_(torch::Tensor& x, ReduceOp op) override {
    Counted counted(*this, "all_reduce", bytes_of(x));
  }
  void broadcast_(torch::Tensor& x, int root) override {
    Counted counted(*this, "broadcast", bytes_of(x));
  }
  void barrier() override { Counted counted(*this, "barrier", 0); }
  std::string backend() const override { return "local"; }
};

/// Forward: all_gather of x [n, ...] -> [size*n, ...]. Backward: reduce_scatter (sum) of the
/// incoming gradient, so each rank receives the sum over ranks of the gradient with respect to its
/// own slice. With every rank's loss being the mean over its own anchors and parameter gradients
/// averaged over ranks, this makes the gradient equal to the single-process gradient on the global
/// batch.
torch::Tensor all_gather_with_grad(const torch::Tensor& x, Communicator& comm);

/// Collective: every rank contributes its host, local rank and `device`; returns, on every rank, a
/// table with one line per rank (rank 0 logs it at start-up).
std::string rank_table(Communicator& comm, const std::string& device);

/// The MPI communicator over MPI_COMM_WORLD; throws Error when this build has no MPI
/// (src/dist/mpi_communicator.cpp or src/dist/no_mpi.cpp, chosen by CMake).
std::shared_ptr<Communicator> make_mpi_communicator(const DistConfig& config);

/// The NCCL communicator for CUDA tensors (collective: every rank calls it); throws Error when this
/// build has no NCCL (src/dist/nccl_communicator.cpp or src/dist/no_nccl.cpp, chosen by CMake) or
/// when this rank has no usable GPU.
std::shared_ptr<Communicator> make_nccl_communicator(const DistConfig& config);

/// One line for `selfsup info`: the NCCL and CUDA runtime versions this build uses, e.g.
/// "NCCL 2.28.9 (headers 2.28.9), CUDA runtime 13.0, no CUDA driver", or why NCCL is not built.
std::string nccl_build_info();

/// Makes the communicator named by `config.backend` ("auto", "local", "mpi", "nccl"); throws Error
/// when the backend is not built in or does not fit the device. "auto": a world of one is local;
/// several ranks use nccl with `cuda`, mpi without.
std::shared_ptr<Communicator> make_communicator(const DistConfig& config, bool cuda);

}  // namespace selfsup
