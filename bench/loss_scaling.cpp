// selfsup_bench_loss: one point of the loss benchmark (issue 4) — the time and peak memory of one
// forward+backward of the dense (info_nce) or the tiled (info_nce_tiled) InfoNCE over a pool of P
// columns, printed as one JSON line. bench/loss_scaling.sh runs it over pool sizes, dense and tiled
// side by side, and prints the table of docs/PERFORMANCE.md.
//
// Setup (a world of one): local = L2-normalised random [B_local, V, D] with requires_grad, global =
// local (offset 0), so the gathered columns are cols = B_local*V; the rest of the pool is a queue
// of recycled negatives [P - cols, D] — the realistic case, a big pool is mostly queue.
//
// Peak memory is the process's resident high-water mark (VmHWM) after the timed passes minus the
// resident size (VmRSS) just before them, with the mark reset there when the kernel allows it. The
// mark is per process, so one invocation measures one point.

#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "selfsup/core/error.h"
#include "selfsup/objectives/info_nce.h"
#include "selfsup/objectives/tiled_info_nce.h"
#include "selfsup/train/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kMiB = 1024.0 * 1024.0;

// Bytes the dense loss holds per logit (per element of its [rows, P] matrices) at its peak, which
// is in the float64 statistics of the forward pass: cosine, logits, masked logits (float32), the
// self-mask (bool), the float64 cosines and the four float64 temporaries of
// exp(4 cos - 4).masked_fill(...), alive together until the end of that expression:
// 4 + 4 + 4 + 1 + 8 + 4 * 8 = 53. Measured with glibc's default allocator (every matrix mmapped):
// 54-55 bytes per logit at 4k and 16k columns. With the trainer's allocator, heap reuse adds about
// a quarter at small pools (66 bytes at 4k and 16k); from 128k columns on, the float64 matrices
// reach its 1 GiB mmap threshold and are mapped afresh, so 53 is the better guess where dense is
// too big to run.
constexpr double kDenseBytesPerLogit = 53.0;
// Per [P, D] element: the concatenated candidates (columns + queue) and their gradient (autograd
// computes the gradient of the whole concatenation before dropping the queue's part), float32.
constexpr double kDenseBytesPerColumnRow = 2 * 4.0;

struct BenchOptions {
  std::string mode;           // dense | tiled
  int64_t pool = 0;           // P: columns per anchor row (gathered views + queue)
  int64_t batch = 1024;       // B_local: images per rank
  int64_t views = 2;          // V
  int64_t dim = 128;          // D: projection width
  int64_t block_size = 4096;  // columns per block of the tiled loss
  int reps = 3;               // timed forward+backward passes (the median is reported)
  int warmup = 1;             // untimed passes before them
  int threads = 0;            // intra-op threads; 0 = all cores
  double temperature = 0.5;
  double memory_limit_gb = 0;  // dense points estimated above this are skipped; 0 = 60 % of RAM
  std::string allocator = "trainer";  // trainer: glibc settings of the selfsup executable
  double gemm_seconds = 1.0;          // how long to measure the GEMM rate for
};

// "VmHWM" or "VmRSS" of this process in bytes, from /proc/self/status; -1 where unavailable.
double proc_status_bytes(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream fields(line.substr(key.size() + 1));
      double kib = 0;
      fields >> kib;
      return kib * 1024.0;
    }
  }
  return -1;
}

// Resets VmHWM to the current resident size (Linux >= 4.0); false where the kernel refuses.
bool reset_peak_rss() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.flush();
  return static_cast<bool>(clear_refs);
}

double physical_memory_bytes() {
  return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
}

// The allocator policy of src/cli/main.cpp (keep_freed_memory_for_reuse), so that the timings are
// those of a training run: freed blocks stay in the heap instead of being unmapped and faulted in
// again. It costs some memory: heap reuse leaves gaps, so the high-water mark is higher than with
// glibc's defaults (measured at 4k and 16k columns: tiled +13 %, dense +22 %), but with glibc's
// defaults the tiled loss, which allocates and frees the same [rows, block] matrices block after
// block, spends most of its time in page faults (3.3x slower at 16k). --allocator glibc shows both.
void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 256 << 20);
}

// GFLOP of the matrix products one forward+backward does (rows = B_local*V, cols gathered, P pool).
//   dense: logits [rows, P] (2 rows P D); backward: grad of the anchors (2 rows P D) and of the
//          whole [P, D] concatenation of columns and queue (2 rows P D).
//   tiled: forward blocks (2 rows P D); backward recomputes them (2 rows P D), grad of the anchors
//          (2 rows P D) and grad of the gathered columns only, the queue gets none (2 rows cols D);
//          see src/objectives/tiled_info_nce.cpp.
double matmul_gflop(bool dense, int64_t rows, int64_t cols, int64_t pool, int64_t dim) {
  const double per_column = 2.0 * double(rows) * double(dim);
  const double columns = dense ? 3.0 * double(pool) : 3.0 * double(pool) + double(cols);
  return per_column * columns / 1e9;
}

// GFLOP/s of [rows, D] x [D, n] (the product the tiled loss does per block: anchors times a block
// of candidates, transposed), repeated for about `seconds` after one untimed call.
double gemm_rate_gflops(int64_t rows, int64_t n, int64_t dim, double seconds) {
  torch::NoGradGuard no_grad;
  const auto anchors = torch::randn({rows, dim});
  const auto block = torch::randn({n, dim});
  auto out = anchors.matmul(block.t());
  int64_t calls = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    out = anchors.matmul(block.t());
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return 2.0 * double(rows) * double(n) * double(dim) * double(calls) / elapsed / 1e9;
}

nlohmann::json run_point(const BenchOptions& opt) {
  const bool dense = opt.mode == "dense";
  const int64_t rows = opt.batch * opt.views, cols = opt.batch * opt.views;
  const int64_t queue_size = opt.pool - cols;
  const double gflop = matmul_gflop(dense, rows, cols, opt.pool, opt.dim);
  const double dense_estimate = double(rows) * double(opt.pool) * kDenseBytesPerLogit +
                                double(opt.pool) * double(opt.dim) * kDenseBytesPerColumnRow;
  const double limit =
      opt.memory_limit_gb > 0 ? opt.memory_limit_gb * 1e9 : 0.6 * physical_memory_bytes();

  nlohmann::json out = {{"mode", opt.mode},
                        {"pool", opt.pool},
                        {"rows", rows},
                        {"cols", cols},
                        {"queue", queue_size},
                        {"dim", opt.dim},
                        {"block_size", opt.block_size},
                        {"threads", torch::get_num_threads()},
                        {"allocator", opt.allocator},
                        {"gflop", gflop},
                        {"dense_estimate_mb", dense_estimate / kMiB}};
  if (dense && dense_estimate > limit) {
    std::ostringstream why;
    why.precision(3);
    why << "would need " << dense_estimate / 1e9 << " GB (limit " << limit / 1e9 << " GB)";
    out["skipped"] = why.str();
    return out;
  }

  torch::manual_seed(0);
  // [B_local, V, D] and [K, D], L2-normalised; global = local (world of one, offset 0).
  auto local =
      torch::nn::functional::normalize(torch::randn({opt.batch, opt.views, opt.dim}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(-1))
          .requires_grad_(true);
  const auto queue = torch::nn::functional::normalize(
      torch::randn({queue_size, opt.dim}), torch::nn::functional::NormalizeFuncOptions().dim(-1));
  const auto options =
      selfsup::InfoNceOptions(opt.temperature).queue(queue).block_size(opt.block_size);
  auto forward_backward = [&] {
    const auto result = dense ? selfsup::info_nce(local, local, /*offset=*/0, options)
                              : selfsup::info_nce_tiled(local, local, /*offset=*/0, options);
    result.loss.backward();
    local.mutable_grad().reset();  // no accumulation pass next time
    return result.loss.item<double>();
  };

  // Measure before anything else allocates (the GEMM rate below comes after).
  const bool peak_was_reset = reset_peak_rss();
  const double rss_before = proc_status_bytes("VmRSS");
  double loss = 0;
  for (int i = 0; i < opt.warmup; ++i) loss = forward_backward();
  std::vector<double> seconds;
  for (int i = 0; i < opt.reps; ++i) {
    const auto start = Clock::now();
    loss = forward_backward();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  const double peak = proc_status_bytes("VmHWM");
  auto sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.size() % 2
                            ? sorted[sorted.size() / 2]
                            : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  const double rate = gemm_rate_gflops(rows, opt.block_size, opt.dim, opt.gemm_seconds);

  out["loss"] = loss;
  out["reps"] = opt.reps;
  out["warmup"] = opt.warmup;
  out["seconds"] = median;
  out["seconds_all"] = seconds;
  out["peak_extra_mb"] = (peak - rss_before) / kMiB;
  out["peak_rss_mb"] = peak / kMiB;
  out["peak_reset"] = peak_was_reset;  // false: the mark may include start-up (inputs excluded)
  out["gemm_gflops"] = rate;
  out["gemm_shape"] = std::vector<int64_t>{rows, opt.dim, opt.block_size};
  out["flop_bound_seconds"] = gflop / rate;
  out["ratio_to_flop_bound"] = median / (gflop / rate);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions opt;
  CLI::App app{
      "One point of the loss benchmark: dense or tiled InfoNCE, forward+backward, against "
      "a pool of P columns; prints one JSON line"};
  app.add_option("--mode", opt.mode, "dense | tiled")
      ->required()
      ->check(CLI::IsMember({"dense", "tiled"}));
  app.add_option("--pool", opt.pool, "P: columns per anchor (B_local*V gathered + queue)")
      ->required();
  app.add_option("--batch", opt.batch, "B_local: images (default 1024)");
  app.add_option("--views", opt.views, "V: views per image (default 2)");
  app.add_option("--dim", opt.dim, "D: projection width (default 128)");
  app.add_option("--block-size", opt.block_size, "columns per block, tiled (default 4096)");
  app.add_option("--reps", opt.reps, "timed passes, median reported (default 3)");
  app.add_option("--warmup", opt.warmup, "untimed passes first (default 1)");
  app.add_option("--threads", opt.threads, "intra-op threads, 0 = all cores (default)");
  app.add_option("--temperature", opt.temperature, "softmax temperature (default 0.5)");
  app.add_option("--memory-limit-gb", opt.memory_limit_gb,
                 "skip dense points estimated above this (default 60 % of physical RAM)");
  app.add_option("--allocator", opt.allocator,
                 "trainer: glibc settings of `selfsup` (default); glibc: glibc's defaults")
      ->check(CLI::IsMember({"trainer", "glibc"}));
  app.add_option("--gemm-seconds", opt.gemm_seconds, "time spent measuring the GEMM rate (1)");
  CLI11_PARSE(app, argc, argv);

  try {
    const int64_t cols = opt.batch * opt.views;
    SELFSUP_CHECK(opt.batch >= 1 && opt.views >= 2 && opt.dim >= 1,
                  "need --batch >= 1, --views >= 2, --dim >= 1");
    SELFSUP_CHECK(opt.pool >= cols, "--pool ", opt.pool,
                  " is smaller than the gathered columns B_local*V = ", cols,
                  "; pass --pool >= ", cols, " or a smaller --batch");
    SELFSUP_CHECK(opt.reps >= 1 && opt.warmup >= 0, "need --reps >= 1 and --warmup >= 0, got ",
                  opt.reps, " and ", opt.warmup);
    if (opt.allocator == "trainer") keep_freed_memory_for_reuse();
    torch::set_num_threads(selfsup::choose_threads(opt.threads, /*local_ranks=*/1));
    std::cout << run_point(opt).dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "selfsup_bench_loss: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
