#pragma once
// Reading a whole dataset once to find what a run would trip over: unreadable files, class
// balance, image sizes. Behind `selfsup validate-data`.

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "selfsup/data/dataset.h"

namespace selfsup {

/// How a dataset is scanned.
struct ValidateOptions {
  int threads = 0;  // reader threads (0 = one per core)
  ValidateOptions& set_threads(int value) {
    threads = value;
    return *this;
  }
};

/// A sample whose get() threw BadSampleError.
struct BadSampleRecord {
  int64_t index = 0;
  std::string source;
  std::string reason;
};

/// Minimum, median and maximum of a quantity over the readable samples (all 0 when there are none).
struct SizeStats {
  int64_t min = 0;
  int64_t median = 0;  // the lower median for an even count
  int64_t max = 0;
};

/// What one pass over a dataset found.
struct DataReport {
  std::string description;            // Dataset::describe()
  int64_t samples = 0;                // Dataset::size()
  int64_t readable = 0;               // samples decoded without error
  std::vector<int64_t> class_counts;  // readable samples per label, num_classes() entries
  int64_t unlabelled = 0;             // readable samples whose label is outside [0, num_classes)
  SizeStats height;                   // pixels
  SizeStats width;                    // pixels
  std::map<int, int64_t> channels;    // readable samples per channel count
  std::vector<BadSampleRecord> bad;   // every unreadable sample, by index
  double seconds = 0.0;               // wall time of the scan
};

/// Decodes every sample of `dataset` once, in parallel over index ranges, catching
/// BadSampleError per sample; any other error stops the scan and is rethrown.
DataReport validate_dataset(const Dataset& dataset, const ValidateOptions& options = {});

/// The report as JSON (for --json): the fields of DataReport, bad samples as objects.
nlohmann::json report_to_json(const DataReport& report);

/// The report as text for a terminal: summary, classes, sizes, then every unreadable sample.
std::string format_report(const DataReport& report);

}  // namespace selfsup
