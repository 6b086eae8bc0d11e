#include "selfsup/train/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "selfsup/core/error.h"
#include "selfsup/core/files.h"

namespace selfsup {
namespace {
namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("selfsup_checkpoint_test_" + name);
  fs::remove_all(dir);
  return dir;
}

CheckpointInfo info_for(int64_t step) {
  CheckpointInfo info;
  info.step = step;
  info.epoch = 1;
  info.config_json = R"({"name": "test"})";
  return info;
}

TEST(Checkpoint, SaveLoadRoundTripAndLatest) {
  const auto dir = fresh_dir("roundtrip");
  torch::manual_seed(0);
  torch::nn::Linear model(4, 3);
  torch::optim::Adam optimizer(model->parameters());
  const auto path = save_checkpoint(dir.string(), info_for(7), *model, &optimizer);
  EXPECT_EQ(fs::path(path).filename(), "step_7");
  EXPECT_EQ(latest_checkpoint(dir.string()), path);

  torch::manual_seed(1);
  torch::nn::Linear other(4, 3);
  ASSERT_FALSE(torch::equal(model->weight, other->weight));
  const auto loaded = load_model(path, *other);
  EXPECT_EQ(loaded.step, 7);
  EXPECT_TRUE(torch::equal(model->weight, other->weight));
  EXPECT_TRUE(torch::equal(model->bias, other->bias));
}

TEST(Checkpoint, OverwritingTheSameStepLeavesNoDebris) {
  const auto dir = fresh_dir("overwrite");
  torch::nn::Linear model(4, 3);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  save_checkpoint(dir.string(), info_for(5), *model, &optimizer);
  {
    torch::NoGradGuard no_grad;
    model->weight.fill_(2.0);
  }
  const auto path = save_checkpoint(dir.string(), info_for(5), *model, &optimizer);
  torch::nn::Linear other(4, 3);
  load_model(latest_checkpoint(dir.string()), *other);
  EXPECT_TRUE(torch::equal(other->weight, torch::full({3, 4}, 2.0)));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step_5"}));
}

TEST(Checkpoint, CorruptOrMismatchedModelIsAClearError) {
  const auto dir = fresh_dir("corrupt");
  torch::nn::Linear model(4, 3);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  const auto path = save_checkpoint(dir.string(), info_for(1), *model, &optimizer);

  torch::nn::Linear wrong_shape(5, 3);  // a different model config
  try {
    load_model(path, *wrong_shape);
    FAIL() << "loading into a different model must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }

  fs::resize_file(fs::path(path) / "model.pt", 100);  // truncated
  EXPECT_THROW(load_model(path, *model), Error);
}

// The message of the CheckpointError that `f` throws ("" when it throws none).
template <typename F>
std::string checkpoint_error(F f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, TruncatedOrDamagedFilesAreFoundAndThePreviousOneOffered) {
  const auto dir = fresh_dir("damaged");
  torch::nn::Linear model(16, 16);
  torch::optim::Adam optimizer(model->parameters());
  const auto first = save_checkpoint(dir.string(), info_for(10), *model, &optimizer);
  const auto second = save_checkpoint(dir.string(), info_for(20), *model, &optimizer);
  EXPECT_EQ(verify_checkpoint(second).step, 20);

  const auto optimizer_file = fs::path(second) / "optimizer.pt";
  const auto size = fs::file_size(optimizer_file);
  fs::resize_file(optimizer_file, size - 1);
  auto message = checkpoint_error([&] { verify_checkpoint(second); });
  EXPECT_NE(message.find("optimizer.pt has " + std::to_string(size - 1) + " bytes"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  EXPECT_NE(message.find("--resume " + first), std::string::npos) << message;

  // Same size, one byte flipped: only the checksum can tell.
  const auto model_file = fs::path(first) / "model.pt";
  std::string bytes = read_file(model_file.string());
  bytes[bytes.size() / 2] ^= 0x20;
  std::ofstream(model_file, std::ios::binary | std::ios::trunc) << bytes;
  message = checkpoint_error([&] { load_model(first, *model); });
  EXPECT_NE(message.find("model.pt does not match its CRC-32"), std::string::npos) << message;
  EXPECT_NE(message.find("no earlier checkpoint"), std::string::npos) << message;

  fs::remove(fs::path(first) / "meta.json");
  message = checkpoint_error([&] { verify_checkpoint(first); });
  EXPECT_NE(message.find("meta.json is missing"), std::string::npos) << message;
}

TEST(Checkpoint, PruneKeepsTheNewestAndLatest) {
  const auto dir = fresh_dir("prune");
  torch::nn::Linear model(2, 2);
  for (int64_t step : {5, 10, 15, 20})
    save_checkpoint(dir.string(), info_for(step), *model, nullptr);
  prune_checkpoints(dir.string(), 2);
  std::vector<std::string> names;
  for (const auto& path : list_checkpoints(dir.string()))
    names.push_back(fs::path(path).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"step_15", "step_20"}));
  // `latest` naming an older checkpoint (a run resumed from it) protects that one.
  std::ofstream(dir / "latest") << "step_15\n";
  prune_checkpoints(dir.string(), 1);
  EXPECT_EQ(list_checkpoints(dir.string()).size(), 2u);  // step_20 is the newest; step_15 latest
  EXPECT_EQ(latest_checkpoint(dir.string()), (dir / "step_15").string());
  // A run resumed from step_15 writes step_17 and step_19: the abandoned step_20 goes first.
  save_checkpoint(dir.string(), info_for(17), *model, nullptr);
  save_checkpoint(dir.string(), info_for(19), *model, nullptr);
  prune_checkpoints(dir.string(), 2);
  names.clear();
  for (const auto& path : list_checkpoints(dir.string()))
    names.push_back(fs::path(path).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"step_17", "step_19"}));
}

TEST(Checkpoint, CleanRepairsWhatAnInterruptedSaveLeft) {
  const auto dir = fresh_dir("clean");
  torch::nn::Linear model(2, 2);
  save_checkpoint(dir.string(), info_for(5), *model, nullptr);
  // A save of step 5 again died after moving the old one aside, before its own was in place; and
  // a save of step 6 died while writing.
  fs::rename(dir / "step_5", dir / ".old_step_5");
  fs::create_directories(dir / ".tmp_step_6");
  std::ofstream(dir / ".tmp_step_6" / "model.pt") << "partial";
  std::ofstream(dir / "latest.tmp.123") << "step_6";
  const auto done = clean_checkpoints(dir.string());
  EXPECT_EQ(done.size(), 3u);
  EXPECT_EQ(latest_checkpoint(dir.string()), (dir / "step_5").string());
  EXPECT_EQ(verify_checkpoint(latest_checkpoint(dir.string())).step, 5);
  EXPECT_FALSE(fs::exists(dir / ".tmp_step_6"));
  EXPECT_FALSE(fs::exists(dir / "latest.tmp.123"));
}

TEST(Checkpoint, OptimizerAndRngStatesRoundTrip) {
  const auto dir = fresh_dir("state");
  torch::manual_seed(3);
  torch::nn::Linear model(4, 3);
  torch::optim::Adam optimizer(model->parameters(), 0.1);
  for (int i = 0; i < 3; ++i) {  // some Adam moments and a step count
    optimizer.zero_grad();
    model(torch::randn({8, 4})).pow(2).sum().backward();
    optimizer.step();
  }
  const auto rng = get_rng_state(/*cuda=*/false);
  const auto states = torch::stack({rng, rng});  // two ranks
  const auto path = save_checkpoint(dir.string(), info_for(3), *model, &optimizer, states);
  const auto expected_draw = torch::randn({5});

  torch::manual_seed(99);
  torch::nn::Linear other(4, 3);
  torch::optim::Adam other_optimizer(other->parameters(), 0.1);
  load_model(path, *other);
  load_optimizer(path, other_optimizer);
  const auto loaded = load_rng_states(path);
  ASSERT_EQ(loaded.size(0), 2);
  set_rng_state(loaded[1], /*cuda=*/false);
  EXPECT_TRUE(torch::equal(torch::randn({5}), expected_draw));
  // One more identical step on both: bitwise the same weights.
  const auto input = torch::randn({8, 4});
  optimizer.zero_grad();
  model(input).pow(2).sum().backward();
  optimizer.step();
  other_optimizer.zero_grad();
  other(input).pow(2).sum().backward();
  other_optimizer.step();
  EXPECT_TRUE(torch::equal(model->weight, other->weight));
  EXPECT_THROW(set_rng_state(torch::zeros({3}, torch::kUInt8), false), Error);
}

TEST(Checkpoint, MissingLatestIsAClearError) {
  const auto dir = fresh_dir("missing");
  fs::create_directories(dir);
  try {
    latest_checkpoint(dir.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no checkpoint"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace selfsup
