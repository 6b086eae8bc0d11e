#include "selfsup/train/coordinator.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "selfsup/core/error.h"
#include "selfsup/train/metrics.h"

namespace selfsup {
namespace {
namespace fs = std::filesystem;

TEST(Coordinator, StopSignalsAreRecordedNotFatal) {
  {
    StopSignals signals;
    EXPECT_EQ(StopSignals::pending(), 0);
    std::raise(SIGUSR1);  // would end the process without the handler
    EXPECT_EQ(StopSignals::pending(), SIGUSR1);
    std::raise(SIGTERM);
    EXPECT_EQ(StopSignals::pending(), SIGTERM);
  }
  // The previous (default) handlers are back.
  struct sigaction current {};
  sigaction(SIGTERM, nullptr, &current);
  EXPECT_EQ(current.sa_handler, SIG_DFL);
  StopSignals::clear();
}

TEST(Coordinator, ResumeChoiceOnOneRank) {
  LocalCommunicator comm;
  const auto dir = fs::temp_directory_path() / "selfsup_coordinator_test";
  fs::remove_all(dir);
  fs::create_directories(dir / "step_4");
  EXPECT_EQ(choose_resume("", dir.string(), comm), "");
  EXPECT_EQ(choose_resume("auto", dir.string(), comm), "");  // no `latest` yet: start fresh
  std::ofstream(dir / "latest") << "step_4\n";
  EXPECT_EQ(choose_resume("auto", dir.string(), comm), (dir / "step_4").string());
  EXPECT_EQ(choose_resume((dir / "step_4").string(), dir.string(), comm),
            (dir / "step_4").string());
  EXPECT_THROW(choose_resume((dir / "step_9").string(), dir.string(), comm), Error);
  EXPECT_EQ(broadcast_string("hello", comm), "hello");
}

std::string error_of(const Config& config, const Config& saved, int saved_world, int world) {
  try {
    compare_for_resume(config, config_to_json(saved), saved_world, world);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Coordinator, ResumeConfigMismatchesNameTheKey) {
  Config saved;
  Config config = saved;
  EXPECT_TRUE(compare_for_resume(config, config_to_json(saved), 2, 2).empty());

  config.model.width = 32;
  config.negatives.queue_size = 1024;
  auto message = error_of(config, saved, 1, 1);
  EXPECT_NE(message.find("model.width 64 -> 32"), std::string::npos) << message;
  EXPECT_NE(message.find("negatives.queue_size 0 -> 1024"), std::string::npos) << message;

  // Settings that change the run but not the saved tensors: warnings; bookkeeping: nothing.
  config = saved;
  config.optim.lr = 0.5;
  config.train.threads = 3;
  config.name = "other";
  const auto warnings = compare_for_resume(config, config_to_json(saved), 1, 1);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("optim.lr"), std::string::npos) << warnings[0];

  // Another world size: an error with local batch norm, a warning with synchronized.
  config = saved;
  config.model.batch_norm = "local";
  saved.model.batch_norm = "local";
  message = error_of(config, saved, 2, 4);
  EXPECT_NE(message.find("world size 2 -> 4"), std::string::npos) << message;
  config.model.batch_norm = saved.model.batch_norm = "sync";
  EXPECT_EQ(compare_for_resume(config, config_to_json(saved), 2, 4).size(), 1u);

  // The sampler position counts optimizer steps, so accumulation cannot change on resume; a
  // checkpoint written before the key existed ran one batch per step.
  config = saved;
  config.train.accumulate_steps = 2;
  message = error_of(config, saved, 1, 1);
  EXPECT_NE(message.find("train.accumulate_steps 1 -> 2"), std::string::npos) << message;
  auto old_json = nlohmann::json::parse(config_to_json(saved));
  old_json["train"].erase("accumulate_steps");
  EXPECT_TRUE(compare_for_resume(saved, old_json.dump(), 1, 1).empty());
  config.train.accumulate_steps = 2;
  EXPECT_THROW(compare_for_resume(config, old_json.dump(), 1, 1), ConfigError);
  // So for any key added later, at its default; the pretext task's settings are refused (its
  // networks and optimizers are in the checkpoint).
  old_json["pretext"]["inpainting"].erase("adversarial_weight");
  EXPECT_TRUE(compare_for_resume(saved, old_json.dump(), 1, 1).empty());
  config = saved;
  config.pretext.inpainting.adversarial_weight = 0.001;
  message = error_of(config, saved, 1, 1);
  EXPECT_NE(message.find("pretext.inpainting.adversarial_weight 0.0 -> 0.001"), std::string::npos)
      << message;
}

TEST(Metrics, ResumeKeepsRowsUpToTheCheckpoint) {
  const auto dir = fs::temp_directory_path() / "selfsup_metrics_resume_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    MetricsWriter writer(dir.string());
    for (int step = 1; step <= 5; ++step) writer.write({{"step", step}, {"loss", 1.0 / step}});
  }
  {
    MetricsWriter writer(dir.string(), /*resume_step=*/3);  // steps 4 and 5 are written again
    writer.write({{"step", 4}, {"loss", 9.0}, {"skipped", 0.0}});
  }
  std::ifstream jsonl(dir / "metrics.jsonl");
  std::vector<int64_t> steps;
  std::string line;
  while (std::getline(jsonl, line)) steps.push_back(nlohmann::json::parse(line).at("step"));
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4}));
  std::ifstream csv(dir / "metrics.csv");
  std::vector<std::string> lines;
  while (std::getline(csv, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "step,loss,skipped");
  EXPECT_EQ(lines[1], "1,1,");  // a column the old row lacks stays empty
  EXPECT_EQ(lines[4], "4,9,0");
}

}  // namespace
}  // namespace selfsup
