#pragma once
// The coordinator: decisions that every rank must take together (DESIGN.md invariant 4). Rank 0
// decides what to resume from and broadcasts it; a stop signal on any rank reaches every rank
// through the step's one all-reduce, so all of them checkpoint at the same step and exit.

#include <csignal>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"

namespace selfsup {

/// Exit status of a run that a signal (SIGTERM, SIGUSR1) stopped after writing a checkpoint:
/// EX_TEMPFAIL of sysexits.h, "try again later". A requeued job resumes with `--resume auto`.
constexpr int kExitPreempted = 75;

/// Catches SIGTERM and SIGUSR1 (what Slurm sends before a time limit or a preemption) while it
/// lives, restoring the previous handlers after. The CLI holds one for the whole `train` command
/// (a signal during start-up or the transfer stage is not fatal either); the Trainer holds one so
/// that library users get the same behaviour. The handler only records the signal; the
/// training loop asks pending() once per step.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  /// The last stop signal this process received while a StopSignals lived (nested ones share
  /// it), or 0.
  static int pending();
  /// Forgets a received signal (tests).
  static void clear();

 private:
  struct sigaction previous_[2];  // the handlers of SIGTERM and SIGUSR1 before this object
};

/// Fault injection for tests of the skip path: the steps (1-based) at which this rank's loss is
/// made NaN, read from SELFSUP_INJECT_NONFINITE="RANK:STEP,STEP,..." (several entries separated by
/// ';'). Empty when the variable is unset; throws Error when it is malformed.
std::set<int64_t> injected_nonfinite_steps(int rank);

/// Sends rank 0's `text` to every rank (collective).
std::string broadcast_string(const std::string& text, Communicator& comm);

/// The checkpoint to resume from, decided by rank 0 and the same on every rank: `request` is ""
/// (start fresh), "auto" (the run's latest checkpoint when there is one, else start fresh) or a
/// checkpoint directory. Returns "" for a fresh start. Collective.
std::string choose_resume(const std::string& request, const std::string& checkpoints_dir,
                          Communicator& comm);

/// Compares the config of a run that resumes with the one its checkpoint was written with (JSON)
/// and world sizes. Throws ConfigError naming every key whose change the saved tensors or
/// trajectory cannot absorb (model, negatives, global batch, views; local batch norm on a new
/// world size); returns one warning per other key that changes the run (learning rate, schedule,
/// augmentation, ...). Keys that change nothing (name, logging, threads, transfer) are ignored.
std::vector<std::string> compare_for_resume(const Config& config, const std::string& saved_json,
                                            int saved_world, int world);

}  // namespace selfsup
