#include "selfsup/train/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "selfsup/core/files.h"

namespace selfsup {
namespace fs = std::filesystem;

namespace {

constexpr const char* kStepPrefix = "step_";
constexpr const char* kTmpPrefix = ".tmp_";
constexpr const char* kOldPrefix = ".old_";

// The step of a "step_<N>" directory name, or -1.
int64_t step_of(const std::string& name) {
  if (name.rfind(kStepPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::string(kStepPrefix).size());
  if (digits.empty() || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// CRC-32 (zlib) and size of a file, read in 4 MiB chunks.
std::pair<uint64_t, uint32_t> size_and_crc(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  SELFSUP_CHECK(in, "cannot read ", file.string());
  std::vector<char> buffer(4 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t size = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = in.gcount();
    if (got <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buffer.data()), static_cast<uInt>(got));
    size += static_cast<uint64_t>(got);
  }
  return {size, static_cast<uint32_t>(crc)};
}

// "; the previous checkpoint is X: resume from it with --resume X" or "" when there is none.
std::string offer_previous(const fs::path& path) {
  const int64_t step = step_of(path.filename().string());
  std::string previous;
  for (const auto& dir : list_checkpoints(path.parent_path().string())) {
    const int64_t s = step_of(fs::path(dir).filename().string());
    if (s >= 0 && (step < 0 || s < step)) previous = dir;
  }
  if (previous.empty()) return "; there is no earlier checkpoint in " + path.parent_path().string();
  return "; the previous checkpoint is " + previous + ": resume from it with --resume " + previous;
}

template <typename Archive>
void save_archive(const fs::path& file, const std::function<void(Archive&)>& fill) {
  Archive archive;
  fill(archive);
  archive.save_to(file.string());
}

// optimizer.pt for the Trainer's optimizer, optimizer.<name>.pt for an objective's own.
std::string optimizer_file(const std::string& name) {
  return name.empty() ? "optimizer.pt" : "optimizer." + name + ".pt";
}

}  // namespace

std::string save_checkpoint(const std::string& checkpoints_dir, const CheckpointInfo& info,
                            torch::nn::Module& model, torch::optim::Optimizer* optimizer,
                            const torch::Tensor& rng_states,
                            const std::map<std::string, torch::optim::Optimizer*>& own_optimizers) {
  const fs::path root(checkpoints_dir);
  fs::create_directories(root);
  const std::string name = kStepPrefix + std::to_string(info.step);
  const fs::path tmp = root / (kTmpPrefix + name);
  const fs::path final_dir = root / name;
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  // 1. Write every file into the temporary directory.
  using Out = torch::serialize::OutputArchive;
  save_archive<Out>(tmp / "model.pt", [&](Out& archive) { model.save(archive); });
  if (optimizer != nullptr)
    save_archive<Out>(tmp / "optimizer.pt", [&](Out& archive) { optimizer->save(archive); });
  for (const auto& [name, own] : own_optimizers) {
    save_archive<Out>(tmp / optimizer_file(name), [&](Out& archive) { own->save(archive); });
  }
  if (rng_states.defined()) {
    save_archive<Out>(tmp / "rng.pt", [&](Out& archive) {
      archive.write("states", rng_states.to(torch::kCPU).contiguous(), /*is_buffer=*/true);
    });
  }
  nlohmann::json files = nlohmann::json::object();
  for (const auto& entry : fs::directory_iterator(tmp)) {
    sync_path(entry.path().string());
    const auto [size, crc] = size_and_crc(entry.path());
    files[entry.path().filename().string()] = {{"bytes", size}, {"crc32", crc}};
  }
  const nlohmann::json meta = {{"step", info.step},
                               {"epoch", info.epoch},
                               {"step_in_epoch", info.step_in_epoch},
                               {"total_steps", info.total_steps},
                               {"images_seen", info.images_seen},
                               {"skipped_steps", info.skipped_steps},
                               {"consecutive_skips", info.consecutive_skips},
                               {"world_size", info.world_size},
                               {"selfsup_version", SELFSUP_VERSION},
                               {"files", files},
                               {"config", nlohmann::json::parse(info.config_json)}};
  // meta.json last: a directory with it is complete (write_file_atomic flushes it).
  write_file_atomic((tmp / "meta.json").string(), meta.dump(2) + "\n");
  sync_path(tmp.string());
  // 2. Rename it into place. A checkpoint of the same step from an earlier run (which `latest` may
  //    name) is moved aside first and deleted only after `latest` is updated; clean_checkpoints
  //    moves it back if we die in between. So `latest` always names a complete checkpoint.
  const fs::path old_dir = root / (kOldPrefix + name);
  fs::remove_all(old_dir);
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir);
  fs::rename(tmp, final_dir);
  sync_path(root.string());
  // 3. Only now point `latest` at it.
  write_file_atomic((root / "latest").string(), name + "\n");
  fs::remove_all(old_dir);
  return final_dir.string();
}

std::vector<std::string> list_checkpoints(const std::string& checkpoints_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(std::move(path));
  return out;
}

void prune_checkpoints(const std::string& checkpoints_dir, int64_t keep) {
  std::string latest;
  if (fs::exists(fs::path(checkpoints_dir) / "latest")) latest = latest_checkpoint(checkpoints_dir);
  // Oldest written first (not lowest step: after a resume from an earlier checkpoint, the newer
  // steps of the abandoned branch are the ones to go).
  std::vector<std::pair<fs::file_time_type, std::string>> all;
  for (const auto& path : list_checkpoints(checkpoints_dir)) {
    std::error_code ec;
    const auto written = fs::last_write_time(fs::path(path) / "meta.json", ec);
    all.emplace_back(ec ? fs::file_time_type::min() : written, path);
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  const int64_t excess = static_cast<int64_t>(all.size()) - std::max<int64_t>(1, keep);
  for (int64_t i = 0; i < excess; ++i) {
    const fs::path path(all[i].second);
    if (path.string() == latest) continue;
    // Renamed first, so that a kill during the deletion never leaves a half-deleted step_<N>
    // (clean_checkpoints removes what is left of it).
    const fs::path doomed = path.parent_path() / (kTmpPrefix + ("del_" + path.filename().string()));
    fs::rename(path, doomed);
    fs::remove_all(doomed);
  }
}

std::vector<std::string> clean_checkpoints(const std::string& checkpoints_dir) {
  std::vector<std::string> done;
  std::error_code ec;
  if (!fs::is_directory(checkpoints_dir, ec)) return done;
  std::vector<fs::path> entries;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) entries.push_back(entry);
  for (const auto& path : entries) {
    const std::string name = path.filename().string();
    if (name.rfind(kOldPrefix, 0) == 0) {
      // Moved aside by a save that died before its replacement was in place: restore it.
      const fs::path original = path.parent_path() / name.substr(std::string(kOldPrefix).size());
      if (!fs::exists(original)) {
        fs::rename(path, original);
        done.push_back("restored " + original.string() + " (a save was interrupted)");
        continue;
      }
      fs::remove_all(path);
      done.push_back("removed " + path.string());
    } else if (name.rfind(kTmpPrefix, 0) == 0 || name.find(".tmp.") != std::string::npos) {
      fs::remove_all(path);  // a checkpoint (or the `latest` pointer) whose save was interrupted
      done.push_back("removed " + path.string() + " (an interrupted save)");
    }
  }
  return done;
}

std::string latest_checkpoint(const std::string& checkpoints_dir) {
  const fs::path pointer = fs::path(checkpoints_dir) / "latest";
  SELFSUP_CHECK(fs::exists(pointer), "no checkpoint in ", checkpoints_dir, " (", pointer.string(),
                " is missing); train first or pass --checkpoint");
  std::string name = read_file(pointer.string());
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  const fs::path dir = fs::path(checkpoints_dir) / name;
  SELFSUP_CHECK(step_of(name) >= 0 && fs::is_directory(dir), pointer.string(), " points to ",
                dir.string(), ", which does not exist", offer_previous(dir));
  return dir.string();
}

CheckpointInfo verify_checkpoint(const std::string& path) {
  const fs::path dir(path);
  auto fail = [&](const std::string& what) -> CheckpointError {
    return CheckpointError("checkpoint " + path + " is unusable: " + what + offer_previous(dir));
  };
  if (!fs::is_directory(dir)) throw fail("no such directory");
  const fs::path meta_path = dir / "meta.json";
  if (!fs::exists(meta_path)) throw fail("meta.json is missing (an incomplete checkpoint)");
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(read_file(meta_path.string()));
  } catch (const std::exception& e) {
    throw fail(std::string("meta.json is not valid JSON (") + e.what() + ")");
  }
  CheckpointInfo info;
  try {
    info.step = meta.at("step").get<int64_t>();
    info.epoch = meta.at("epoch").get<int64_t>();
    // Written by every version that writes "files"; older checkpoints hold only step and epoch.
    info.step_in_epoch = meta.value("step_in_epoch", int64_t{0});
    info.total_steps = meta.value("total_steps", int64_t{0});
    info.images_seen = meta.value("images_seen", int64_t{0});
    info.skipped_steps = meta.value("skipped_steps", int64_t{0});
    info.consecutive_skips = meta.value("consecutive_skips", int64_t{0});
    info.world_size = meta.value("world_size", 1);
    info.version = meta.value("selfsup_version", std::string("unknown"));
    info.config_json = meta.at("config").dump(2);
  } catch (const std::exception& e) {
    throw fail(std::string("meta.json lacks a field (") + e.what() + ")");
  }
  if (!meta.contains("files")) {
    if (!fs::exists(dir / "model.pt")) throw fail("model.pt is missing");
    return info;  // written before checksums existed
  }
  for (const auto& [file, expected] : meta.at("files").items()) {
    const fs::path file_path = dir / file;
    if (!fs::exists(file_path)) throw fail(file + " is missing");
    const auto [size, crc] = size_and_crc(file_path);
    const auto want_size = expected.at("bytes").get<uint64_t>();
    if (size != want_size) {
      throw fail(file + " has " + std::to_string(size) + " bytes, " + std::to_string(want_size) +
                 " were written (truncated)");
    }
    if (crc != expected.at("crc32").get<uint32_t>())
      throw fail(file + " does not match its CRC-32 (the file is damaged)");
  }
  return info;
}

namespace {

// What Module::load does, but copying each stored tensor into the module's own tensor instead of
// re-pointing it at the archive's storage: the model keeps its device, memory layout
// (channels-last) and allocation, so a resumed run computes bit for bit as the uninterrupted one.
// The stored shape must match; `prefix` is the dotted name of `module` for messages.
void copy_from_archive(torch::nn::Module& module, torch::serialize::InputArchive& archive,
                       const std::string& prefix, const std::string& path) {
  torch::NoGradGuard no_grad;
  auto copy = [&](const std::string& name, torch::Tensor& target, bool is_buffer) {
    torch::Tensor stored;
    archive.read(name, stored, is_buffer);
    if (stored.sizes() != target.sizes()) {
      const std::string full = prefix + name;
      throw Error("cannot load checkpoint " + path + ": " + full + " has shape " +
                  c10::str(stored.sizes()) + " there but " + c10::str(target.sizes()) +
                  " in this model; the checkpoint was written with a different " +
                  (full.rfind("queue.", 0) == 0
                       ? "negatives.queue_size or model.proj_dim (the queue of recycled keys)"
                       : std::string("model config")));
    }
    target.copy_(stored);
  };
  for (auto& item : module.named_parameters(/*recurse=*/false))
    copy(item.key(), item.value(), false);
  for (auto& item : module.named_buffers(/*recurse=*/false)) copy(item.key(), item.value(), true);
  for (const auto& child : module.named_children()) {
    torch::serialize::InputArchive child_archive;
    archive.read(child.key(), child_archive);
    copy_from_archive(*child.value(), child_archive, prefix + child.key() + ".", path);
  }
}

}  // namespace

CheckpointInfo load_model(const std::string& path, torch::nn::Module& model) {
  const fs::path dir(path);
  const CheckpointInfo info = verify_checkpoint(path);
  try {
    torch::serialize::InputArchive archive;
    archive.load_from((dir / "model.pt").string(), torch::kCPU);
    copy_from_archive(model, archive, "", path);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    // A tensor the model has and the checkpoint lacks: name the setting that adds it.
    std::string hint = "corrupt, or written for a different model config";
    if (what.find("key_encoder") != std::string::npos || what.find("key_head") != std::string::npos)
      hint = "written without the momentum encoder that negatives.momentum > 0 adds";
    else if (what.find("queue") != std::string::npos)
      hint = "written without the queue that negatives.queue_size > 0 adds";
    throw Error("cannot load checkpoint " + path + ": " + what + " (" + hint + ")");
  }
  return info;
}

void load_optimizer(const std::string& path, torch::optim::Optimizer& optimizer,
                    const std::string& name) {
  const fs::path file = fs::path(path) / optimizer_file(name);
  SELFSUP_CHECK(fs::exists(file), "cannot resume from ", path, ": ", file.filename().string(),
                " is missing (the checkpoint holds ",
                name.empty() ? "weights only)" : "no state of the objective's own optimizer)");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(file.string());
    optimizer.load(archive);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw Error("cannot load the optimizer state of checkpoint " + path + ": " +
                what.substr(0, what.find('\n')) + " (was optim.name changed?)");
  }
}

torch::Tensor load_rng_states(const std::string& path) {
  const fs::path file = fs::path(path) / "rng.pt";
  if (!fs::exists(file)) return {};
  torch::serialize::InputArchive archive;
  archive.load_from(file.string());
  torch::Tensor states;
  archive.read("states", states, /*is_buffer=*/true);
  return states;
}

torch::Tensor get_rng_state(bool cuda) {
  std::vector<torch::Tensor> parts{at::detail::getDefaultCPUGenerator().get_state()};
  if (cuda) {
    parts.push_back(at::globalContext().defaultGenerator(torch::Device(torch::kCUDA)).get_state());
  }
  return torch::cat(parts);
}

void set_rng_state(const torch::Tensor& state, bool cuda) {
  auto cpu = at::detail::getDefaultCPUGenerator();
  const int64_t cpu_bytes = cpu.get_state().numel();
  const bool fits =
      state.dim() == 1 && (cuda ? state.numel() > cpu_bytes : state.numel() == cpu_bytes);
  SELFSUP_CHECK(fits, "the saved RNG state has ", state.numel(), " bytes, expected ",
                cuda ? "more than " : "", cpu_bytes, cuda ? " (CPU and CUDA)" : " (CPU)");
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(state.slice(0, 0, cpu_bytes).clone());
  }
  if (cuda && state.numel() > cpu_bytes) {
    auto gpu = at::globalContext().defaultGenerator(torch::Device(torch::kCUDA));
    std::lock_guard<std::mutex> lock(gpu.mutex());
    gpu.set_state(state.slice(0, cpu_bytes).clone());
  }
}

}  // namespace selfsup
