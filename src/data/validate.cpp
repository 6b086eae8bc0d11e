// validate_dataset: a thread pool over index chunks; per-thread results merged at the end.

#include "selfsup/data/validate.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

// Samples handed to a thread at a time: large enough that the shared counter is cold, small
// enough that threads finish together.
constexpr int64_t kChunk = 64;

// What one thread saw.
struct Partial {
  std::vector<int64_t> class_counts;
  int64_t unlabelled = 0;
  std::vector<int64_t> heights;
  std::vector<int64_t> widths;
  std::map<int, int64_t> channels;
  std::vector<BadSampleRecord> bad;
};

SizeStats stats_of(std::vector<int64_t>& values) {
  SizeStats stats;
  if (values.empty()) return stats;
  const size_t middle = (values.size() - 1) / 2;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle),
                   values.end());
  stats.median = values[middle];
  const auto [low, high] = std::minmax_element(values.begin(), values.end());
  stats.min = *low;
  stats.max = *high;
  return stats;
}

std::string stats_text(const SizeStats& stats) {
  return detail::concat(stats.min, " / ", stats.median, " / ", stats.max);
}

}  // namespace

DataReport validate_dataset(const Dataset& dataset, const ValidateOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  DataReport report;
  report.description = dataset.describe();
  report.samples = dataset.size();
  const int64_t classes = dataset.num_classes();

  int threads = options.threads > 0
                    ? options.threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<int64_t>(threads, (report.samples + kChunk - 1) / kChunk));
  threads = std::max(threads, 1);
  std::vector<Partial> partials(static_cast<size_t>(threads));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr failure;
  std::mutex failure_mutex;

  auto work = [&](Partial& partial) {
    partial.class_counts.assign(static_cast<size_t>(std::max<int64_t>(classes, 0)), 0);
    try {
      while (!failed.load()) {
        const int64_t begin = next.fetch_add(kChunk);
        if (begin >= report.samples) break;
        const int64_t end = std::min(begin + kChunk, report.samples);
        for (int64_t index = begin; index < end; ++index) {
          Sample sample;
          try {
            sample = dataset.get(index);
          } catch (const BadSampleError& e) {
            partial.bad.push_back({index, e.source(), e.reason()});
            continue;
          }
          if (sample.label >= 0 && sample.label < classes) {
            ++partial.class_counts[static_cast<size_t>(sample.label)];
          } else {
            ++partial.unlabelled;
          }
          partial.heights.push_back(sample.image.rows);
          partial.widths.push_back(sample.image.cols);
          ++partial.channels[sample.image.channels()];
        }
      }
    } catch (...) {
      // Not one sample's problem (a vanished root, a bug): stop every thread and rethrow.
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t)
    pool.emplace_back(work, std::ref(partials[static_cast<size_t>(t)]));
  work(partials[0]);
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);

  report.class_counts.assign(static_cast<size_t>(std::max<int64_t>(classes, 0)), 0);
  std::vector<int64_t> heights, widths;
  for (auto& partial : partials) {
    for (size_t c = 0; c < report.class_counts.size(); ++c) {
      report.class_counts[c] += partial.class_counts[c];
    }
    report.unlabelled += partial.unlabelled;
    heights.insert(heights.end(), partial.heights.begin(), partial.heights.end());
    widths.insert(widths.end(), partial.widths.begin(), partial.widths.end());
    for (const auto& [channels, count] : partial.channels) report.channels[channels] += count;
    report.bad.insert(report.bad.end(), partial.bad.begin(), partial.bad.end());
  }
  std::sort(report.bad.begin(), report.bad.end(),
            [](const BadSampleRecord& a, const BadSampleRecord& b) { return a.index < b.index; });
  report.readable = static_cast<int64_t>(heights.size());
  report.height = stats_of(heights);
  report.width = stats_of(widths);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

nlohmann::json report_to_json(const DataReport& report) {
  nlohmann::json bad = nlohmann::json::array();
  for (const auto& record : report.bad) {
    bad.push_back({{"index", record.index}, {"source", record.source}, {"reason", record.reason}});
  }
  nlohmann::json channels = nlohmann::json::object();
  for (const auto& [count, samples] : report.channels) channels[std::to_string(count)] = samples;
  auto stats = [](const SizeStats& s) {
    return nlohmann::json{{"min", s.min}, {"median", s.median}, {"max", s.max}};
  };
  return {{"description", report.description},
          {"samples", report.samples},
          {"readable", report.readable},
          {"unreadable", static_cast<int64_t>(report.bad.size())},
          {"class_counts", report.class_counts},
          {"unlabelled", report.unlabelled},
          {"height", stats(report.height)},
          {"width", stats(report.width)},
          {"channels", channels},
          {"bad_samples", bad},
          {"seconds", report.seconds}};
}

std::string format_report(const DataReport& report) {
  std::ostringstream out;
  out << report.description << "\n";
  out << "  samples      " << report.samples << " (" << report.readable << " readable, "
      << report.bad.size() << " unreadable), read in " << report.seconds << " s\n";
  out << "  per class   ";
  for (size_t c = 0; c < report.class_counts.size(); ++c) {
    out << " " << c << ":" << report.class_counts[c];
  }
  if (report.unlabelled > 0) out << " (" << report.unlabelled << " without a valid label)";
  out << "\n";
  out << "  height       " << stats_text(report.height) << " (min / median / max, pixels)\n";
  out << "  width        " << stats_text(report.width) << " (min / median / max, pixels)\n";
  out << "  channels    ";
  for (const auto& [channels, count] : report.channels) out << " " << channels << ":" << count;
  out << "\n";
  for (const auto& record : report.bad) {
    out << "  unreadable   " << record.source << ": " << record.reason << "\n";
  }
  return out.str();
}

}  // namespace selfsup
