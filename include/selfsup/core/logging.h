#pragma once
// Logging: spdlog to the console (rank-prefixed) and to <run>/logs/rank<r>.log, plus the rank-0
// progress bar that is drawn only when stderr is a terminal.

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace selfsup {

/// Sets the default spdlog logger: console (info and above; rank 0 only unless `all_ranks`) and,
/// when `log_dir` is not empty, `<log_dir>/rank<rank>.log` (debug and above). Lines carry "[rank
/// r]".
void init_logging(int rank, const std::string& log_dir = "", bool all_ranks = false);

/// True when stderr is an interactive terminal.
bool stderr_is_terminal();

/// A single-line progress bar on stderr: steps, loss, images/s and ETA.
class ProgressBar {
 public:
  explicit ProgressBar(int64_t total_steps);
  /// Redraws the bar after `step` steps (1-based).
  void update(int64_t step, double loss, double images_per_s);
  /// Ends the line.
  void finish();

 private:
  int64_t total_;
  std::chrono::steady_clock::time_point start_;
  bool open_ = false;
};

}  // namespace selfsup
