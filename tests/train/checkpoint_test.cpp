#include "selfsup/train/checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "selfsup/core/error.h"

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
  const auto path = save_checkpoint(dir.string(), info_for(7), *model, optimizer);
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
  save_checkpoint(dir.string(), info_for(5), *model, optimizer);
  {
    torch::NoGradGuard no_grad;
    model->weight.fill_(2.0);
  }
  const auto path = save_checkpoint(dir.string(), info_for(5), *model, optimizer);
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
  const auto path = save_checkpoint(dir.string(), info_for(1), *model, optimizer);

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
