#include "selfsup/train/metrics.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "selfsup/core/error.h"
#include "selfsup/core/files.h"

namespace selfsup {
namespace fs = std::filesystem;

MetricsWriter::MetricsWriter(const std::string& run_dir, int64_t resume_step,
                             const std::string& name)
    : csv_path_((fs::path(run_dir) / (name + ".csv")).string()) {
  const fs::path jsonl = fs::path(run_dir) / (name + ".jsonl");
  if (resume_step >= 0 && fs::exists(jsonl)) {
    std::ifstream in(jsonl);
    std::string line;
    while (std::getline(in, line)) {
      const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (row.is_object() && row.value("step", INT64_MAX) <= resume_step) kept_.push_back(line);
    }
    // The CSV's columns stay those of the run (the JSON objects do not keep their order).
    std::ifstream csv(csv_path_);
    std::string header;
    if (std::getline(csv, header)) {
      std::stringstream fields(header);
      std::string column;
      while (std::getline(fields, column, ',')) columns_.push_back(column);
    }
  }
  // Rewritten atomically (a kill now must not lose the history), then appended to.
  std::string text;
  for (const auto& line : kept_) text += line + '\n';
  write_file_atomic(jsonl.string(), text);
  jsonl_.open(jsonl, std::ios::app);
  SELFSUP_CHECK(jsonl_, "cannot write metrics files in ", run_dir,
                "; check that the run directory is writable");
  write_csv_head();
}

void MetricsWriter::write_csv_head() {
  csv_.close();
  std::ostringstream text;
  text << std::setprecision(8);
  if (!columns_.empty()) {
    for (size_t i = 0; i < columns_.size(); ++i) text << (i ? "," : "") << columns_[i];
    text << '\n';
    // Rows kept from before a resume, in these columns (empty where a row lacks one).
    for (const auto& line : kept_) {
      const auto kept = nlohmann::json::parse(line);
      for (size_t i = 0; i < columns_.size(); ++i) {
        text << (i ? "," : "");
        const auto it = kept.find(columns_[i]);
        if (it != kept.end() && it->is_number()) text << it->get<double>();
      }
      text << '\n';
    }
  }
  write_file_atomic(csv_path_, text.str());  // atomically, like the JSON lines
  csv_.open(csv_path_, std::ios::app);
  SELFSUP_CHECK(csv_, "cannot write ", csv_path_, "; check that the run directory is writable");
  csv_ << std::setprecision(8);
}

void MetricsWriter::write(const std::vector<std::pair<std::string, double>>& row) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [key, value] : row) {
    const bool integral = value == std::floor(value) && std::abs(value) < 1e15;
    if (!std::isfinite(value)) {
      object[key] = nullptr;  // JSON has no NaN/Inf
    } else if (integral && (key == "step" || key == "epoch")) {
      object[key] = static_cast<int64_t>(value);
    } else {
      object[key] = value;
    }
  }
  jsonl_ << object.dump() << '\n';
  std::vector<std::string> columns;
  for (const auto& [key, value] : row) columns.push_back(key);
  if (columns != columns_ && (columns_.empty() || !kept_.empty())) {
    // The first row fixes the columns; rows kept from before a resume are rewritten in them.
    columns_ = columns;
    write_csv_head();
  }
  kept_.clear();
  SELFSUP_ASSERT(row.size() == columns_.size(), "metrics row has ", row.size(),
                 " columns, expected ", columns_.size());
  for (size_t i = 0; i < row.size(); ++i) csv_ << (i ? "," : "") << row[i].second;
  csv_ << '\n';
  jsonl_.flush();
  csv_.flush();
}

namespace {

// A path inside single quotes, for gnuplot ('' is a quote) or the shell ('\'' is a quote).
std::string quoted(const fs::path& path, bool for_shell) {
  std::string out = "'";
  for (char c : path.string()) out += c != '\'' ? std::string(1, c) : (for_shell ? "'\\''" : "''");
  return out + "'";
}

}  // namespace

bool write_plots(const std::string& run_dir) try {
  const fs::path dir(run_dir);
  const fs::path csv = dir / "metrics.csv";
  if (!fs::exists(csv)) return false;
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    spdlog::warn("gnuplot not found: no plots drawn (install gnuplot-nox, see launch/setup.sh)");
    return false;
  }
  // The columns present: contrastive runs have the MI bound and the similarities, the other pretext
  // tasks their own metrics.
  std::string header;
  {
    std::ifstream in(csv);
    std::getline(in, header);
  }
  auto has_column = [&](const std::string& name) {
    return ("," + header + ",").find("," + name + ",") != std::string::npos;
  };
  const fs::path plots = dir / "plots";
  fs::create_directories(plots);
  const fs::path script = plots / "plots.gp";
  {
    std::ofstream gp(script);
    auto png = [&](const char* name) { return quoted(plots / name, false); };
    gp << "set datafile separator ','\n"
          "set terminal pngcairo size 900,540 noenhanced\n"
          "set key autotitle columnhead\n"
          "set grid\n"
          "set xlabel 'step'\n"
          "data = "
       << quoted(csv, false)
       << "\n"
          "set output "
       << png("loss.png") << "\n"
       << (has_column("mi_bound") ? "set title 'NT-Xent loss'\n" : "set title 'training loss'\n")
       << "plot data using 'step':'loss' with lines lw 2\n";
    if (has_column("mi_bound")) {
      gp << "set output " << png("mi_bound.png")
         << "\n"
            "set title 'InfoNCE mutual-information bound log(N) - loss (nats)'\n"
            "plot data using 'step':'mi_bound' with lines lw 2\n";
    }
    if (has_column("pos_sim") && has_column("neg_sim")) {
      gp << "set output " << png("similarity.png")
         << "\n"
            "set title 'mean cosine similarity'\n"
            "plot data using 'step':'pos_sim' with lines lw 2, data using 'step':'neg_sim' with "
            "lines lw 2\n";
    }
    if (has_column("accuracy")) {
      gp << "set output " << png("accuracy.png")
         << "\n"
            "set title 'pretext accuracy (training batch)'\n"
            "plot data using 'step':'accuracy' with lines lw 2\n";
    }
    if (has_column("generator_loss")) {
      gp << "set output " << png("gan.png")
         << "\n"
            "set title 'GAN losses'\n"
            "plot data using 'step':'loss' with lines lw 2 title 'discriminator', data using "
            "'step':'generator_loss' with lines lw 2 title 'generator'\n";
    }
    gp << "set output " << png("lr.png")
       << "\n"
          "set title 'learning rate'\n"
          "plot data using 'step':'lr' with lines lw 2\n"
          "set output "
       << png("throughput.png")
       << "\n"
          "set title 'training throughput (images/s)'\n"
          "plot data using 'step':'images_per_s' with lines lw 2\n";
  }
  const std::string command =
      "gnuplot " + quoted(script, true) + " 2>" + quoted(plots / "gnuplot.log", true);
  if (std::system(command.c_str()) != 0) {
    spdlog::warn("gnuplot failed; see {}", (plots / "gnuplot.log").string());
    return false;
  }
  return true;
} catch (const std::exception& e) {
  spdlog::warn("could not draw plots: {}", e.what());
  return false;
}

}  // namespace selfsup
