#pragma once
// Plots drawn with gnuplot, an optional tool: when it is missing or fails, a warning is logged and
// the plot is skipped; a run never fails for want of a picture.

#include <string>

namespace selfsup {

/// `path` in single quotes for a gnuplot script ('' stands for a quote inside).
std::string gnuplot_quoted(const std::string& path);

/// Writes `script` to `script_path` and runs gnuplot on it (its stderr goes to `script_path` with
/// ".log" appended). Returns true when gnuplot ran and succeeded; logs a warning and returns false
/// when gnuplot is not installed, fails, or the script cannot be written. Never throws.
bool run_gnuplot(const std::string& script_path, const std::string& script);

}  // namespace selfsup
