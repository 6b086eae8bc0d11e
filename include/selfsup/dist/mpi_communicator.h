#pragma once
// The MPI backend of the Communicator: CPU tensors, collectives over MPI_COMM_WORLD.

#include <memory>
#include <string>

#include "selfsup/dist/communicator.h"

namespace selfsup {

/// Initialises MPI once per process (MPI_THREAD_FUNNELED: only the main thread calls MPI) and
/// finalises it at exit. Safe to call more than once.
void ensure_mpi_initialized();

class CollectiveWatchdog;

/// A Communicator over MPI_COMM_WORLD for CPU tensors. Every MPI call is checked; a failure throws
/// Error naming the call, file:line, rank and host. Before each collective the ranks compare the
/// shape and dtype they pass (one small all-gather), so a mismatch is a clear error on every rank
/// instead of a hang or garbage. With more than one rank, a watchdog thread ends this process when
/// a collective has not completed within `timeout_s` (a dead or stalled peer).
class MpiCommunicator : public Communicator {
 public:
  /// `timeout_s`: a collective still unfinished after this long ends the job (see the watchdog).
  /// `check_shapes`: compare dtype and shape across ranks before every collective.
  explicit MpiCommunicator(double timeout_s = 300.0, bool check_shapes = true);
  ~MpiCommunicator() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  torch::Tensor all_gather(const torch::Tensor& x) override;
  torch::Tensor reduce_scatter(const torch::Tensor& x) override;
  void all_reduce_(torch::Tensor& x, ReduceOp op) override;
  /// MPI_Iallreduce; its wait() is MPI_Wait under the watchdog. Open MPI progresses it inside MPI
  /// calls (later collectives, the wait), so on CPUs the overlap is partial.
  std::unique_ptr<CollectiveWork> all_reduce_async_(torch::Tensor& x, ReduceOp op) override;
  void broadcast_(torch::Tensor& x, int root) override;
  void barrier() override;
  std::string backend() const override { return "mpi"; }
  /// MPI_Abort on MPI_COMM_WORLD: the launcher ends every rank.
  void abort(int exit_code) override;
  /// This process's host name (for error messages and the rank table).
  const std::string& host() const { return host_; }

 private:
  class AsyncAllReduce;
  // Marks one MPI call in flight for the watchdog (nothing in a world of one).
  class Watch {
   public:
    Watch(MpiCommunicator& comm, const char* call, std::string what);
    ~Watch();

   private:
    CollectiveWatchdog* watchdog_;
  };
  void check_same_shape(const torch::Tensor& x, const char* what);
  std::string describe(const torch::Tensor& x, const char* what) const;

  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  std::string host_;
  double timeout_s_ = 300.0;
  bool check_shapes_ = true;
  std::unique_ptr<CollectiveWatchdog> watchdog_;
};

}  // namespace selfsup
