#include "selfsup/core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "selfsup/core/error.h"

namespace selfsup {

void init_logging(int rank, const std::string& log_dir, bool all_ranks) {
  std::vector<spdlog::sink_ptr> sinks;
  auto console = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  console->set_level(rank == 0 || all_ranks ? spdlog::level::info : spdlog::level::warn);
  sinks.push_back(console);
  if (!log_dir.empty()) {
    const auto path = std::filesystem::path(log_dir) / ("rank" + std::to_string(rank) + ".log");
    try {
      auto file =
          std::make_shared<spdlog::sinks::basic_file_sink_mt>(path.string(), /*truncate=*/false);
      file->set_level(spdlog::level::debug);
      sinks.push_back(file);
    } catch (const spdlog::spdlog_ex& e) {
      throw Error("cannot open log file " + path.string() + ": " + e.what() +
                  "; check that the run directory is writable");
    }
  }
  auto logger = std::make_shared<spdlog::logger>("selfsup", sinks.begin(), sinks.end());
  logger->set_pattern("[%Y-%m-%d %H:%M:%S] [rank " + std::to_string(rank) + "] [%l] %v");
  logger->set_level(spdlog::level::debug);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

bool stderr_is_terminal() { return isatty(fileno(stderr)) == 1; }

ProgressBar::ProgressBar(int64_t total_steps)
    : total_(total_steps), start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int64_t step, double loss, double images_per_s) {
  constexpr int kWidth = 30;
  const double fraction = total_ > 0 ? double(step) / double(total_) : 1.0;
  const int filled = static_cast<int>(fraction * kWidth);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = step > 0 ? elapsed / step * double(total_ - step) : 0.0;
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r[%s] %lld/%lld  loss %.4f  %.0f img/s  ETA %dm%02ds ", bar.c_str(),
               static_cast<long long>(step), static_cast<long long>(total_), loss, images_per_s,
               int(eta) / 60, int(eta) % 60);
  std::fflush(stderr);
  open_ = true;
}

void ProgressBar::finish() {
  if (open_) std::fprintf(stderr, "\n");
  open_ = false;
}

}  // namespace selfsup
