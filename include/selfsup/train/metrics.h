#pragma once
// Per-step metrics: one JSON object per line in metrics.jsonl and the same columns in metrics.csv;
// plots drawn from the CSV with gnuplot.

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace selfsup {

class MetricsWriter {
 public:
  /// Opens (truncates) `<run_dir>/<name>.jsonl` and `<run_dir>/<name>.csv`. A run resumed from
  /// step `resume_step` (>= 0) keeps the rows of steps up to it and drops later ones, which the
  /// resumed run writes again.
  explicit MetricsWriter(const std::string& run_dir, int64_t resume_step = -1,
                         const std::string& name = "metrics");
  /// Appends one row. The first row fixes the CSV columns; later rows must use the same keys.
  void write(const std::vector<std::pair<std::string, double>>& row);

 private:
  std::ofstream jsonl_;
  std::ofstream csv_;
  std::vector<std::string> columns_;
  std::vector<std::string> kept_;  // rows (JSON lines) kept from before a resume, until the
                                   // first new row fixes the CSV's columns
  std::string csv_path_;
  /// Rewrites the CSV: the header of columns_ and the kept rows.
  void write_csv_head();
};

/// Draws `<run_dir>/plots/{loss,mi_bound,similarity,lr,throughput}.png` from metrics.csv with
/// gnuplot. Returns false (and logs a warning) when gnuplot is not installed or fails; never
/// throws.
bool write_plots(const std::string& run_dir);

}  // namespace selfsup
