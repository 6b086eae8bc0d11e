#include "selfsup/train/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "selfsup/core/error.h"
#include "selfsup/core/files.h"

namespace selfsup {
namespace fs = std::filesystem;

std::string save_checkpoint(const std::string& checkpoints_dir, const CheckpointInfo& info,
                            torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  const fs::path root(checkpoints_dir);
  fs::create_directories(root);
  const std::string name = "step_" + std::to_string(info.step);
  const fs::path tmp = root / (".tmp_" + name);
  const fs::path final_dir = root / name;
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  // 1. Write every file into the temporary directory.
  {
    torch::serialize::OutputArchive archive;
    model.save(archive);
    archive.save_to((tmp / "model.pt").string());
  }
  {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to((tmp / "optimizer.pt").string());
  }
  nlohmann::json meta = {{"step", info.step},
                         {"epoch", info.epoch},
                         {"selfsup_version", SELFSUP_VERSION},
                         {"config", nlohmann::json::parse(info.config_json)}};
  write_file_atomic((tmp / "meta.json").string(), meta.dump(2) + "\n");
  // 2. Flush the files and the directory.
  for (const auto& entry : fs::directory_iterator(tmp)) sync_path(entry.path().string());
  sync_path(tmp.string());
  // 3. Rename it into place. A checkpoint of the same step from an earlier run (which `latest` may
  //    name) is moved aside first and deleted only after `latest` is updated, so a crash at any
  //    point leaves `latest` naming a complete checkpoint.
  const fs::path old_dir = root / (".old_" + name);
  fs::remove_all(old_dir);
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir);
  fs::rename(tmp, final_dir);
  sync_path(root.string());
  // 4. Only now point `latest` at it.
  write_file_atomic((root / "latest").string(), name + "\n");
  fs::remove_all(old_dir);
  return final_dir.string();
}

std::string latest_checkpoint(const std::string& checkpoints_dir) {
  const fs::path pointer = fs::path(checkpoints_dir) / "latest";
  SELFSUP_CHECK(fs::exists(pointer), "no checkpoint in ", checkpoints_dir, " (", pointer.string(),
                " is missing); train first or pass --checkpoint");
  std::string name = read_file(pointer.string());
  while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
  const fs::path dir = fs::path(checkpoints_dir) / name;
  SELFSUP_CHECK(fs::is_directory(dir), pointer.string(), " points to ", dir.string(),
                ", which does not exist");
  return dir.string();
}

CheckpointInfo load_model(const std::string& path, torch::nn::Module& model) {
  const fs::path dir(path);
  CheckpointInfo info;
  // LibTorch's archive replaces each tensor with the stored one whatever its shape, so a checkpoint
  // of another model config would load silently: remember the shapes and compare after loading.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (const auto& item : model.named_parameters())
    expected.emplace_back(item.key(), item.value().sizes().vec());
  for (const auto& item : model.named_buffers())
    expected.emplace_back(item.key(), item.value().sizes().vec());
  try {
    const auto meta = nlohmann::json::parse(read_file((dir / "meta.json").string()));
    info.step = meta.at("step").get<int64_t>();
    info.epoch = meta.at("epoch").get<int64_t>();
    info.config_json = meta.at("config").dump(2);
    // Load straight onto the model's device (a checkpoint written on a GPU loads on a CPU too).
    const auto parameters = model.parameters();
    const torch::Device device = parameters.empty() ? torch::kCPU : parameters.front().device();
    torch::serialize::InputArchive archive;
    archive.load_from((dir / "model.pt").string(), device);
    model.load(archive);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    // A tensor the model has and the checkpoint lacks: name the setting that adds it.
    std::string hint = "corrupt, or written for a different model config";
    if (what.find("key_encoder") != std::string::npos || what.find("key_head") != std::string::npos)
      hint = "written without the momentum encoder that negatives.momentum > 0 adds";
    else if (what.find("queue.") != std::string::npos)
      hint = "written without the queue that negatives.queue_size > 0 adds";
    throw Error("cannot load checkpoint " + path + ": " + what + " (" + hint + ")");
  }
  auto parameters = model.named_parameters();
  auto buffers = model.named_buffers();
  for (const auto& [name, shape] : expected) {
    const auto* tensor = parameters.find(name);
    if (tensor == nullptr) tensor = buffers.find(name);
    const auto loaded = tensor ? tensor->sizes().vec() : std::vector<int64_t>{};
    if (loaded != shape) {
      throw Error("cannot load checkpoint " + path + ": " + name + " has shape " +
                  c10::str(c10::IntArrayRef(loaded)) + " there but " +
                  c10::str(c10::IntArrayRef(shape)) +
                  " in this model; the checkpoint was written with a different " +
                  (name.rfind("queue.", 0) == 0
                       ? "negatives.queue_size or model.proj_dim (the queue of recycled keys)"
                       : std::string("model config")));
    }
  }
  return info;
}

}  // namespace selfsup
