#include "selfsup/train/coordinator.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "selfsup/core/error.h"
#include "selfsup/train/checkpoint.h"

namespace selfsup {
namespace fs = std::filesystem;

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void record_stop_signal(int signal) { g_stop_signal = signal; }

constexpr int kStopSignals[] = {SIGTERM, SIGUSR1};

// Every leaf of a JSON object as "a.b.c" -> value.
void flatten(const nlohmann::json& node, const std::string& prefix,
             std::map<std::string, nlohmann::json>& out) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items())
      flatten(value, prefix.empty() ? key : prefix + "." + key, out);
  } else {
    out[prefix] = node;
  }
}

bool starts_with_any(const std::string& key, std::initializer_list<const char*> prefixes) {
  for (const char* p : prefixes) {
    const std::string prefix(p);
    if (key == prefix || key.rfind(prefix + ".", 0) == 0) return true;
  }
  return false;
}

}  // namespace

StopSignals::StopSignals() {
  struct sigaction action {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // system calls (file writes, MPI polling) carry on
  for (size_t i = 0; i < std::size(kStopSignals); ++i)
    sigaction(kStopSignals[i], &action, &previous_[i]);
}

StopSignals::~StopSignals() {
  for (size_t i = 0; i < std::size(kStopSignals); ++i)
    sigaction(kStopSignals[i], &previous_[i], nullptr);
}

int StopSignals::pending() { return g_stop_signal; }
void StopSignals::clear() { g_stop_signal = 0; }

std::set<int64_t> injected_nonfinite_steps(int rank) {
  std::set<int64_t> steps;
  const char* spec = std::getenv("SELFSUP_INJECT_NONFINITE");
  if (spec == nullptr || *spec == '\0') return steps;
  std::stringstream entries(spec);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    const auto colon = entry.find(':');
    SELFSUP_CHECK(colon != std::string::npos, "SELFSUP_INJECT_NONFINITE='", spec,
                  "': expected RANK:STEP,STEP,... entries separated by ';'");
    try {
      if (std::stoi(entry.substr(0, colon)) != rank) continue;
      std::stringstream list(entry.substr(colon + 1));
      std::string step;
      while (std::getline(list, step, ',')) steps.insert(std::stoll(step));
    } catch (const std::logic_error&) {
      throw Error("SELFSUP_INJECT_NONFINITE='" + std::string(spec) +
                  "': ranks and steps must be integers");
    }
  }
  return steps;
}

std::string broadcast_string(const std::string& text, Communicator& comm) {
  auto length = torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong);
  comm.broadcast_(length, 0);
  auto bytes = torch::zeros({length.item<int64_t>()}, torch::kUInt8);
  if (comm.rank() == 0 && !text.empty()) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  comm.broadcast_(bytes, 0);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), bytes.numel());
}

std::string choose_resume(const std::string& request, const std::string& checkpoints_dir,
                          Communicator& comm) {
  std::string decision, error;
  if (comm.rank() == 0 && !request.empty()) {
    try {
      if (request == "auto") {
        if (fs::exists(fs::path(checkpoints_dir) / "latest"))
          decision = latest_checkpoint(checkpoints_dir);
      } else {
        SELFSUP_CHECK(fs::is_directory(request), "--resume ", request,
                      ": no such checkpoint directory (pass a checkpoints/step_<N> directory, or "
                      "auto)");
        decision = request;
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  // One broadcast carries the decision or rank 0's error, so every rank fails together.
  const std::string message =
      broadcast_string(error.empty() ? "ok:" + decision : "error:" + error, comm);
  if (message.rfind("error:", 0) == 0) throw Error(message.substr(6));
  return message.substr(3);
}

std::vector<std::string> compare_for_resume(const Config& config, const std::string& saved_json,
                                            int saved_world, int world) {
  std::map<std::string, nlohmann::json> now, saved, defaults;
  flatten(nlohmann::json::parse(config_to_json(config)), "", now);
  flatten(nlohmann::json::parse(saved_json), "", saved);
  flatten(nlohmann::json::parse(config_to_json(Config{})), "", defaults);
  std::vector<std::string> errors, warnings;
  std::map<std::string, nlohmann::json> keys = now;
  keys.insert(saved.begin(), saved.end());
  for (const auto& [key, unused] : keys) {
    const auto a = saved.find(key), b = now.find(key);
    const std::string before = a == saved.end() ? "(absent)" : a->second.dump();
    const std::string after = b == now.end() ? "(absent)" : b->second.dump();
    if (before == after) continue;
    // A key added after the checkpoint was written: its default is what that run did (one batch
    // per step before train.accumulate_steps, no discriminator before adversarial_weight, ...).
    const auto default_value = defaults.find(key);
    if (before == "(absent)" && default_value != defaults.end() &&
        default_value->second.dump() == after)
      continue;
    // Nothing the run computes depends on these.
    if (starts_with_any(
            key, {"name", "transfer", "dist", "checkpoint", "monitor", "train.log_every",
                  "train.threads", "train.max_skipped_steps", "data.workers", "data.prefetch",
                  "model.channels_last", "model.init"}))
      continue;
    const std::string change = key + " " + before + " -> " + after;
    // The saved tensors (shapes, queue, sampler position, the pretext task's own networks and
    // optimizers) depend on these.
    if (starts_with_any(key, {"model", "negatives", "pretext", "train.batch_size",
                              "train.accumulate_steps", "augment.views", "augment.local_views",
                              "data.dataset", "data.root", "data.name", "data.limit_train"}))
      errors.push_back(change);
    else
      warnings.push_back(change + " (the resumed run differs from an uninterrupted one)");
  }
  if (saved_world != world) {
    if (config.model.batch_norm == "local") {
      errors.push_back("the world size " + std::to_string(saved_world) + " -> " +
                       std::to_string(world) +
                       " with model.batch_norm = \"local\" (the batch statistics depend on the "
                       "ranks' slices; use the same number of ranks)");
    } else {
      warnings.push_back("the world size " + std::to_string(saved_world) + " -> " +
                         std::to_string(world) +
                         ": the ranks' random generators start afresh, so the run is not "
                         "bitwise identical to an uninterrupted one");
    }
  }
  if (!errors.empty()) {
    std::string message = "cannot resume: the checkpoint was written with a different config: ";
    for (size_t i = 0; i < errors.size(); ++i) message += (i ? "; " : "") + errors[i];
    throw ConfigError(message +
                      ". Resume with the config of that run (its config.json, also in the "
                      "checkpoint's meta.json), or start a new "
                      "run directory");
  }
  return warnings;
}

}  // namespace selfsup
