#pragma once
// Per-step metrics: one JSON object per line in metrics.jsonl and the same columns in metrics.csv;
// plots drawn from the CSV with gnuplot.

#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace selfsup {

class MetricsWriter {
 public:
  /// Opens (truncates) `<run_dir>/metrics.jsonl` and `<run_dir>/metrics.csv`.
  explicit MetricsWriter(const std::string& run_dir);
  /// Appends one row. The first row fixes the CSV columns; later rows must use the same keys.
  void write(const std::vector<std::pair<std::string, double>>& row);

 private:
  std::ofstream jsonl_;
  std::ofstream csv_;
  std::vector<std::string> columns_;
};

/// Draws `<run_dir>/plots/{loss,mi_bound,similarity,lr,throughput}.png` from metrics.csv with
/// gnuplot. Returns false (and logs a warning) when gnuplot is not installed or fails; never
/// throws.
bool write_plots(const std::string& run_dir);

}  // namespace selfsup
