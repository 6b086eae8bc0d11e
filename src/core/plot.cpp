#include "selfsup/core/plot.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <exception>
#include <fstream>

namespace selfsup {
namespace {

// `text` in single quotes for the shell ('\'' stands for a quote inside).
std::string shell_quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c != '\'' ? std::string(1, c) : std::string("'\\''");
  return out + "'";
}

}  // namespace

std::string gnuplot_quoted(const std::string& path) {
  std::string out = "'";
  for (const char c : path) out += c != '\'' ? std::string(1, c) : std::string("''");
  return out + "'";
}

bool run_gnuplot(const std::string& script_path, const std::string& script) try {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    spdlog::warn("gnuplot not found: {} not drawn (install gnuplot-nox, see launch/setup.sh)",
                 script_path);
    return false;
  }
  {
    std::ofstream out(script_path, std::ios::trunc);
    out << script;
    if (!out.flush()) {
      spdlog::warn("cannot write the gnuplot script {}; no plot drawn", script_path);
      return false;
    }
  }
  const std::string log_path = script_path + ".log";
  const std::string command =
      "gnuplot " + shell_quoted(script_path) + " 2>" + shell_quoted(log_path);
  if (std::system(command.c_str()) != 0) {
    spdlog::warn("gnuplot failed on {}; see {}", script_path, log_path);
    return false;
  }
  return true;
} catch (const std::exception& e) {
  spdlog::warn("could not draw plots from {}: {}", script_path, e.what());
  return false;
}

}  // namespace selfsup
