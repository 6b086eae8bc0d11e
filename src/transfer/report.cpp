// The transfer stage's report: the printed table and the plots of results.json.

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "selfsup/core/plot.h"
#include "selfsup/transfer/transfer.h"

namespace selfsup {
namespace fs = std::filesystem;

namespace {

std::string fraction_label(double fraction) {
  std::ostringstream out;
  out << std::setprecision(3) << 100.0 * fraction << "%";
  return out.str();
}

// "SimCLR encoder" or "<task> encoder": what pretrained the encoder being evaluated.
std::string encoder_label(const nlohmann::json& results) {
  const std::string task = results.value("pretext", "simclr");
  return (task == "simclr" ? std::string("SimCLR") : task) + " encoder";
}

}  // namespace

std::string format_results_table(const nlohmann::json& results) {
  std::ostringstream out;
  const std::string ours = encoder_label(results);
  auto row = [&](const std::string& name, const nlohmann::json& entry) {
    out << "  " << std::left << std::setw(44) << name << std::right << std::setw(8) << std::fixed
        << std::setprecision(2) << entry.at("top1").get<double>() << " %\n";
  };
  out << "Transfer results on " << results.value("dataset", "?") << " test ("
      << results.value("test_samples", 0) << " images), encoder " << results.value("encoder", "?")
      << "\n";
  out << "  " << std::left << std::setw(44) << "method (frozen encoder, all labels)" << std::right
      << std::setw(10) << "top-1"
      << "\n";
  const std::string k = std::to_string(results.at("knn").value("k", 0));
  row(ours + ", linear probe", results.at("linear_probe"));
  row(ours + ", kNN (k=" + k + ")", results.at("knn"));
  if (results.contains("baselines")) {
    const auto& baselines = results["baselines"];
    row("baseline: raw pixels, linear probe", baselines.at("raw_pixels"));
    row("baseline: random encoder, linear probe", baselines.at("random_encoder"));
    for (const auto& [key, label] :
         {std::pair{"raw_pixels", "raw pixels"}, std::pair{"random_encoder", "random encoder"}}) {
      if (baselines.at(key).contains("knn_top1")) {
        row(std::string("baseline: ") + label + ", kNN (k=" + k + ")",
            {{"top1", baselines.at(key).at("knn_top1")}});
      }
    }
  }

  if (results.contains("finetune") && results["finetune"].contains("fractions")) {
    const auto& fractions = results["finetune"]["fractions"];
    const auto& settings = results["finetune"].value("settings", nlohmann::json::object());
    out << "\n  " << std::left << std::setw(44) << "labels used (class-balanced)" << std::right;
    for (const auto& f : fractions) out << std::setw(10) << fraction_label(f.at("fraction"));
    out << "\n";
    auto fraction_row = [&](const std::string& name, const char* key) {
      if (!fractions.front().contains(key)) return;
      out << "  " << std::left << std::setw(44) << name << std::right << std::fixed
          << std::setprecision(2);
      for (const auto& f : fractions)
        out << std::setw(8) << f.at(key).at("top1").get<double>() << " %";
      out << "\n";
    };
    fraction_row(ours + ", fine-tuned", "pretrained");
    fraction_row(ours + ", linear probe (frozen)", "linear_probe");
    fraction_row("baseline: random init, fine-tuned (scratch)", "random_init");
    fraction_row("baseline: raw pixels, linear classifier", "raw_pixels");
    out << "  " << std::left << std::setw(44) << "fine-tuning steps (epochs over the subset)"
        << std::right;
    for (const auto& f : fractions) {
      std::ostringstream cell;
      cell << f.at("pretrained").value("steps", 0) << " (" << std::fixed << std::setprecision(1)
           << f.at("pretrained").value("epochs", 0.0) << ")";
      out << std::setw(10) << cell.str();
    }
    out << "\n  fine-tuning: " << settings.value("optimizer", "?") << ", lr " << std::defaultfloat
        << settings.value("lr", 0.0) << ", global batch up to " << settings.value("batch_size", 0)
        << ", augmentation " << settings.value("augment", "?") << ",\n  at most "
        << settings.value("max_steps", 0) << " steps per run (0: no cap)\n";
  }
  out << "  wall time " << std::fixed << std::setprecision(1) << results.value("wall_seconds", 0.0)
      << " s\n";
  return out.str();
}

bool write_results_plots(const nlohmann::json& results, const std::string& out_dir,
                         const std::string& monitor_csv) try {
  const fs::path dir(out_dir);
  bool drawn = true;
  if (results.contains("finetune") && results["finetune"].contains("fractions")) {
    // One row per fraction: percent of labels, then top-1 of each method ("NaN": not run).
    const fs::path data = dir / "results.dat";
    {
      std::ofstream out(data, std::ios::trunc);
      out << "# labels_percent pretrained_finetune random_init_finetune raw_pixels "
             "frozen_linear_probe\n";
      auto top1 = [](const nlohmann::json& f, const char* key) {
        return f.contains(key) ? std::to_string(f[key].at("top1").get<double>()) : "NaN";
      };
      for (const auto& f : results["finetune"]["fractions"]) {
        out << 100.0 * f.at("fraction").get<double>() << " " << top1(f, "pretrained") << " "
            << top1(f, "random_init") << " " << top1(f, "raw_pixels") << " "
            << top1(f, "linear_probe") << "\n";
      }
    }
    std::ostringstream gp;
    gp << "set terminal pngcairo size 900,620 noenhanced\n"
       << "set output " << gnuplot_quoted((dir / "results.png").string()) << "\n"
       << "set title 'Transfer on " << results.value("dataset", "?") << " test: top-1 by share of "
       << "training labels (encoder " << results.value("encoder", "?") << ")'\n"
       << "set logscale x\nset xlabel 'labels used (% of the training split, class-balanced)'\n"
       << "set ylabel 'test top-1 (%)'\nset grid\nset key below\n"
       << "set xrange [0.5:200]\n"
       << "linear_level = " << results.at("linear_probe").at("top1").get<double>() << "\n"
       << "data = " << gnuplot_quoted(data.string()) << "\n"
       << "plot data using 1:2 with linespoints lw 2 pt 7 title '" << encoder_label(results)
       << ", fine-tuned', "
          "data using 1:3 with linespoints lw 2 pt 5 title 'random init, fine-tuned (scratch)', "
          "data using 1:4 with linespoints lw 2 pt 9 title 'raw pixels, linear classifier', "
          "data using 1:5 with linespoints lw 1 pt 6 dt 3 title '"
       << encoder_label(results)
       << ", linear probe "
          "(frozen)', "
          "linear_level with lines dt 2 lc 'black' title 'linear probe, all labels'\n";
    drawn = run_gnuplot((dir / "results.gp").string(), gp.str()) && drawn;
  }
  if (fs::exists(monitor_csv)) {
    std::ostringstream gp;
    gp << "set terminal pngcairo size 900,540 noenhanced\n"
       << "set output " << gnuplot_quoted((dir / "monitor.png").string()) << "\n"
       << "set datafile separator ','\nset key autotitle columnhead\nset grid\n"
       << "set title 'online kNN monitor during pretraining (fixed train/test subsets)'\n"
       << "set xlabel 'step'\nset ylabel 'kNN top-1 (%)'\n"
       << "plot " << gnuplot_quoted(monitor_csv)
       << " using 'step':'knn_top1' with linespoints lw 2 pt 7 title 'kNN top-1'\n";
    drawn = run_gnuplot((dir / "monitor.gp").string(), gp.str()) && drawn;
  }
  return drawn;
} catch (const std::exception& e) {
  spdlog::warn("could not draw the transfer plots: {}", e.what());
  return false;
}

}  // namespace selfsup
