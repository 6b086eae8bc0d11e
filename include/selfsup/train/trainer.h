#pragma once
// The training loop: loader -> objective -> backward -> gradient reduction -> optimizer, with
// metrics, logs, the rank-0 progress bar and the final checkpoint.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/objective.h"

namespace selfsup {

struct TrainResult {
  int64_t steps = 0;                  // training steps run (skipped ones included)
  int64_t skipped_steps = 0;          // steps skipped on a non-finite loss
  double final_loss = 0.0;            // global mean loss of the last step
  double final_mi_bound = 0.0;        // log(N) - final_loss
  int64_t candidates_per_anchor = 0;  // N of the last step (the queue included)
  double peak_memory_mb = 0.0;        // peak resident memory of the largest rank (CPU; MiB)
  double images_per_s = 0.0;          // global images per second over the whole run
  double seconds = 0.0;               // wall time of the loop
  int64_t bad_samples = 0;            // unreadable samples replaced, over all ranks (this process)
  double data_wait_fraction = 0.0;    // step time spent waiting for data (max over ranks)
  double coordinator_ms = 0.0;        // per step: the coordinator's checks (no checkpoint due)
  double monitor_top1 = -1.0;         // the last kNN monitor value (percent), -1 without one
  std::string checkpoint;             // path of the last checkpoint written
  bool preempted = false;             // a stop signal ended the run early (after a checkpoint)
};

class Trainer {
 public:
  /// `run_dir` must exist (see prepare_run_dir); every rank constructs a Trainer. `resume`: ""
  /// (start fresh), "auto" (from the run's latest checkpoint when it has one) or a checkpoint
  /// directory.
  Trainer(Config config, std::string run_dir, std::shared_ptr<Communicator> comm,
          std::string resume = "");
  ~Trainer();
  /// Pretrains for `train.epochs` epochs (or `train.max_steps` steps), with a checkpoint every
  /// `checkpoint.every_steps` and at the end, and writes summary.json (the numbers a sweep
  /// collects). A SIGTERM or SIGUSR1 on any rank makes every rank checkpoint at the same step and
  /// return early with `preempted` set.
  TrainResult run();
  /// Scores the encoder every `every_epochs` epochs during pretraining (an online kNN monitor;
  /// transfer/ provides one, the CLI wires it): called on every rank at the end of such an epoch,
  /// it must be collective and return the same value everywhere, leave the encoder's state as it
  /// found it and draw no random numbers. Its value goes to `<run_dir>/monitor.{jsonl,csv}`
  /// (step, epoch, knn_top1) and the log.
  void set_monitor(int64_t every_epochs, std::function<double(Encoder&)> monitor);
  /// The objective being trained (its encoder is what transfers).
  std::shared_ptr<Objective> objective() const { return objective_; }

 private:
  Config config_;
  std::string run_dir_;
  std::shared_ptr<Communicator> comm_;
  std::string resume_;
  std::shared_ptr<Objective> objective_;
  int64_t monitor_every_ = 0;
  std::function<double(Encoder&)> monitor_;
};

/// Creates the run directory (`logs/`, `checkpoints/`), saves the resolved config as config.json
/// and appends the command line to command.txt. Throws Error naming the directory when it cannot be
/// written.
/// With `write_config` false (a run asked to resume) config.json is left as it is; the Trainer
/// writes it once the checkpoint has been checked against the config.
void prepare_run_dir(const std::string& run_dir, const Config& config,
                     const std::string& command_line, bool write_config = true);

/// Intra-op threads for this rank: `requested`, or all cores shared by the ranks on this node.
int choose_threads(int requested, int local_ranks);

}  // namespace selfsup
