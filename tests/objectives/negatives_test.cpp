// Recycled negatives: the FIFO queue, the queue-only loss (MoCo: the batch gives positives only)
// against a naive float64 formula and between the dense and tiled paths, the SimCLR objective with
// a queue and a momentum key encoder (what it enqueues, when, and the EMA in closed form), the
// config rules, the memory check, and checkpoints of the queue and the key encoder.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>

#include "selfsup/core/config.h"
#include "selfsup/core/error.h"
#include "selfsup/dist/communicator.h"
#include "selfsup/objectives/info_nce.h"
#include "selfsup/objectives/negative_queue.h"
#include "selfsup/objectives/objective.h"
#include "selfsup/objectives/tiled_info_nce.h"
#include "selfsup/train/checkpoint.h"

namespace selfsup {
namespace {
namespace fs = std::filesystem;

torch::Tensor unit_rows(torch::IntArrayRef shape, uint64_t seed,
                        torch::Dtype dtype = torch::kFloat) {
  torch::manual_seed(seed);
  auto z = torch::randn(shape, dtype);
  return z / z.norm(2, -1, true);
}

template <typename Message>
void expect_error(Message&& run, const std::vector<std::string>& needles) {
  try {
    run();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const auto& needle : needles)
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
          << "'" << needle << "' missing from: " << e.what();
  }
}

// ---- the queue ----------------------------------------------------------------------------------

TEST(NegativeQueue, FillsThenOverwritesTheOldest) {
  NegativeQueue queue(6, 2);
  EXPECT_EQ(queue->size(), 0);
  EXPECT_EQ(queue->keys().size(0), 0);
  for (int push = 1; push <= 5; ++push) {
    queue->push(torch::full({2, 2}, float(push)));
    EXPECT_EQ(queue->size(), std::min(6, 2 * push));
  }
  // Pushes 3, 4 and 5 remain; 1 and 2 were overwritten, the oldest first.
  const auto values = std::get<0>(queue->keys().select(1, 0).sort());
  EXPECT_TRUE(torch::equal(values, torch::tensor({3.f, 3.f, 4.f, 4.f, 5.f, 5.f})));
  EXPECT_FALSE(queue->keys().requires_grad());
}

TEST(NegativeQueue, RejectsPushesThatCannotWork) {
  NegativeQueue queue(6, 2);
  expect_error([&] { queue->push(torch::zeros({4, 2})); }, {"do not divide the capacity 6"});
  expect_error([&] { queue->push(torch::zeros({2, 3})); }, {"[n, 2]"});
}

TEST(NegativeQueue, RoundTripsThroughAnArchive) {
  NegativeQueue queue(4, 3);
  queue->push(unit_rows({2, 3}, 1));
  std::stringstream stream;
  {
    torch::serialize::OutputArchive archive;
    queue->save(archive);
    archive.save_to(stream);
  }
  NegativeQueue restored(4, 3);
  torch::serialize::InputArchive archive;
  archive.load_from(stream);
  restored->load(archive);
  EXPECT_EQ(restored->size(), 2);
  EXPECT_TRUE(torch::equal(restored->keys(), queue->keys()));
  // The write position came back too: the next push lands after the restored keys.
  const auto before = restored->keys().clone();
  restored->push(torch::ones({2, 3}));
  EXPECT_EQ(restored->size(), 4);
  EXPECT_TRUE(torch::equal(restored->keys().narrow(0, 0, 2), before));
  EXPECT_TRUE(torch::equal(restored->keys().narrow(0, 2, 2), torch::ones({2, 3})));
}

// ---- the loss without batch negatives (source "queue") ------------------------------------------

// Per anchor (i, v): the mean over v' != v of -log( e(q_iv . k_iv') / (sum_{v'' != v}
// e(q_iv . k_iv'') + sum_u e(q_iv . u)) ), e(x) = exp(x / T), in float64.
torch::Tensor naive_queue_only(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& queue, double temperature) {
  const int64_t batch = q.size(0), views = q.size(1);
  auto total = torch::zeros({}, q.options());
  for (int64_t i = 0; i < batch; ++i) {
    for (int64_t v = 0; v < views; ++v) {
      const auto anchor = q[i][v];
      auto denominator = (queue.matmul(anchor) / temperature).exp().sum();
      for (int64_t w = 0; w < views; ++w)
        if (w != v) denominator = denominator + (anchor.dot(k[i][w]) / temperature).exp();
      for (int64_t w = 0; w < views; ++w) {
        if (w == v) continue;
        total = total -
                ((anchor.dot(k[i][w]) / temperature).exp() / denominator).log() / double(views - 1);
      }
    }
  }
  return total / double(batch * views);
}

TEST(QueueOnlyInfoNce, DenseMatchesNaiveAndTiledMatchesDense) {
  for (const int64_t views : {2, 3}) {
    SCOPED_TRACE("views " + std::to_string(views));
    const int64_t b_global = 4, b_local = 2, offset = 2, dim = 6, queue_size = 5;
    // Anchors from one encoder, columns (keys) from another: different tensors.
    const auto keys = unit_rows({b_global, views, dim}, 3, torch::kDouble);
    const auto queries = unit_rows({b_local, views, dim}, 4, torch::kDouble);
    const auto queue = unit_rows({queue_size, dim}, 5, torch::kDouble);

    auto q_naive = queries.clone().requires_grad_(true);
    const auto naive = naive_queue_only(q_naive, keys.narrow(0, offset, b_local), queue, 0.3);
    naive.backward();

    const auto options = InfoNceOptions(0.3).queue(queue).batch_negatives(false);
    auto q_dense = queries.clone().requires_grad_(true);
    const auto dense = info_nce(q_dense, keys, offset, options);
    dense.loss.backward();
    EXPECT_NEAR(dense.loss.item<double>(), naive.item<double>(), 1e-10);
    EXPECT_LE((q_dense.grad() - q_naive.grad()).abs().max().item<double>(), 1e-10);
    EXPECT_EQ(dense.candidates_per_anchor, views - 1 + queue_size);
    // Negatives are the queue only: their mean cosine over every anchor and queue entry.
    const auto queue_cos = queries.reshape({-1, dim}).matmul(queue.t());
    EXPECT_NEAR(dense.neg_sim, queue_cos.mean().item<double>(), 1e-12);

    for (const int64_t block_size : {1, 3, 100}) {
      auto q_tiled = queries.clone().requires_grad_(true);
      const auto tiled =
          info_nce_tiled(q_tiled, keys, offset, InfoNceOptions(options).block_size(block_size));
      tiled.loss.backward();
      EXPECT_NEAR(tiled.loss.item<double>(), dense.loss.item<double>(), 1e-10) << block_size;
      EXPECT_LE((q_tiled.grad() - q_dense.grad()).abs().max().item<double>(), 1e-10);
      EXPECT_EQ(tiled.candidates_per_anchor, dense.candidates_per_anchor);
      EXPECT_NEAR(tiled.neg_sim, dense.neg_sim, 1e-12);
      EXPECT_NEAR(tiled.uniformity, dense.uniformity, 1e-12);
      EXPECT_NEAR(tiled.pos_sim, dense.pos_sim, 1e-12);
    }
  }
}

TEST(QueueOnlyInfoNce, KeysWithoutGradientGiveTheSameAnchorGradient) {
  // A momentum encoder's keys do not require gradients; the tiled backward then skips their
  // product, and the anchors' gradient is the one computed with gradients for the keys.
  const auto keys = unit_rows({4, 2, 6}, 7);
  const auto queue = unit_rows({6, 6}, 9);
  for (const bool batch_negatives : {true, false}) {
    const auto options =
        InfoNceOptions(0.5).queue(queue).block_size(3).batch_negatives(batch_negatives);
    auto q1 = unit_rows({2, 2, 6}, 8).requires_grad_(true);
    info_nce_tiled(q1, keys, 2, options).loss.backward();
    auto q2 = unit_rows({2, 2, 6}, 8).requires_grad_(true);
    auto k2 = keys.clone().requires_grad_(true);
    info_nce_tiled(q2, k2, 2, options).loss.backward();
    auto q3 = unit_rows({2, 2, 6}, 8).requires_grad_(true);
    info_nce(q3, keys, 2, options).loss.backward();
    EXPECT_TRUE(k2.grad().defined());
    EXPECT_LE((q1.grad() - q2.grad()).abs().max().item<double>(), 1e-6) << batch_negatives;
    EXPECT_LE((q1.grad() - q3.grad()).abs().max().item<double>(), 1e-6) << batch_negatives;
  }
}

// ---- the objective ------------------------------------------------------------------------------

Config small_config() {
  Config config;
  config.model.width = 4;
  config.model.head_hidden = 16;
  config.model.proj_dim = 8;
  config.train.batch_size = 5;
  return config;
}

TEST(SimClrNegatives, QueueFillsWithAppliedStepsOnlyAndCountsInN) {
  Config config = small_config();
  config.negatives.source = "batch+queue";
  config.negatives.queue_size = 20;  // two steps of 5 images x 2 views
  auto objective = std::dynamic_pointer_cast<SimClrObjective>(
      make_objective(config, 1, std::make_shared<LocalCommunicator>()));
  ASSERT_TRUE(objective && objective->queue());
  const auto views = torch::randn({2, 5, 1, 12, 12});
  const int64_t batch_candidates = 2 * 5 - 1;

  EXPECT_EQ(objective->compute(views).candidates_per_anchor, batch_candidates);
  objective->end_step(/*applied=*/false);  // a skipped step enqueues nothing
  EXPECT_EQ(objective->queue()->size(), 0);
  auto out = objective->compute(views);
  EXPECT_EQ(out.candidates_per_anchor, batch_candidates);
  objective->end_step(/*applied=*/true);
  EXPECT_EQ(objective->queue()->size(), 10);
  // What was enqueued: the step's projections, unit vectors, without gradient.
  const auto keys = objective->queue()->keys();
  EXPECT_LE((keys.norm(2, 1) - 1).abs().max().item<double>(), 1e-5);
  out = objective->compute(views);
  EXPECT_EQ(out.candidates_per_anchor, batch_candidates + 10);
  EXPECT_NEAR(out.metrics.at("queue_fill"), 0.5, 1e-12);
  objective->end_step(true);
  objective->compute(views);
  objective->end_step(true);
  EXPECT_EQ(objective->queue()->size(), 20);  // full, and stays full
  EXPECT_EQ(objective->compute(views).candidates_per_anchor, batch_candidates + 20);
}

TEST(SimClrNegatives, MomentumEncoderFollowsTheEncoderInClosedForm) {
  Config config = small_config();
  config.negatives.source = "queue";
  config.negatives.queue_size = 10;
  config.negatives.momentum = 0.9;
  auto objective = make_objective(config, 1, std::make_shared<LocalCommunicator>());
  const auto parameters = objective->named_parameters();
  // The key encoder starts as a copy and never requires gradients.
  int64_t key_tensors = 0;
  for (const auto& item : parameters) {
    if (item.key().rfind("key_", 0) != 0) continue;
    ++key_tensors;
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    const auto online = parameters[item.key().substr(4)];
    EXPECT_TRUE(torch::equal(item.value(), online)) << item.key();
  }
  EXPECT_GT(key_tensors, 0);

  const auto views = torch::randn({2, 5, 1, 12, 12});
  auto out = objective->compute(views);
  EXPECT_EQ(out.candidates_per_anchor, 1);  // the queue is empty: only the positive
  out.loss.backward();
  // Move the online weights as an optimizer would, then let the key encoder follow.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : objective->parameters())
      if (p.requires_grad()) p.add_(torch::randn_like(p) * 0.1);
  }
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : parameters) before[item.key()] = item.value().detach().clone();
  objective->end_step(true);
  for (const auto& item : parameters) {
    if (item.key().rfind("key_", 0) != 0) {
      EXPECT_TRUE(torch::equal(item.value(), before[item.key()])) << item.key();
      continue;
    }
    const auto expected = 0.9 * before[item.key()] + 0.1 * before[item.key().substr(4)];
    EXPECT_LE((item.value() - expected).abs().max().item<double>(), 1e-6) << item.key();
    EXPECT_FALSE(item.value().grad().defined()) << item.key();
  }
  EXPECT_EQ(objective->compute(views).candidates_per_anchor, 1 + 10);
}

// ---- config rules and memory --------------------------------------------------------------------

std::string with_negatives(const std::string& negatives) {
  return R"({"train": {"batch_size": 64}, "negatives": )" + negatives + "}";
}

TEST(NegativesConfig, RulesNameTheKeyAndTheFix) {
  expect_error(
      [] {
        parse_config(with_negatives(R"({"source": "batch+queue", "queue_size": 1000})"), "x.json");
      },
      {"negatives.queue_size = 1000", "multiple", "64 x 2 = 128", "896 or 1024"});
  expect_error([] { parse_config(with_negatives(R"({"source": "queue"})"), "x.json"); },
               {"negatives.source = \"queue\" needs a queue", "negatives.queue_size"});
  expect_error([] { parse_config(with_negatives(R"({"queue_size": 256})"), "x.json"); },
               {"negatives.queue_size = 256 is unused", "batch+queue"});
  expect_error([] { parse_config(with_negatives(R"({"source": "bank"})"), "x.json"); },
               {"negatives.source"});
  expect_error([] { parse_config(with_negatives(R"({"momentum": 1.0})"), "x.json"); },
               {"negatives.momentum"});
  const auto ok = parse_config(
      with_negatives(R"({"source": "queue", "queue_size": 256, "momentum": 0.99})"), "x.json");
  EXPECT_EQ(ok.negatives.queue_size, 256);
  EXPECT_NE(config_to_json(ok).find("\"momentum\": 0.99"), std::string::npos);
}

TEST(NegativesConfig, APoolTooLargeForMemorySaysWhatToChange) {
  Config config = small_config();
  config.train.batch_size = 1024;
  config.negatives.source = "batch+queue";
  config.negatives.queue_size = int64_t(1) << 26;   // 64M keys: 2048 x 64M logits = 4.7 PB dense
  const double memory = 16.0 * (int64_t(1) << 30);  // what one rank may use
  expect_error([&] { check_loss_memory(config, 1, memory); },
               {"dense contrastive loss", "[2048 rows x 67110912 columns]", "set loss.tiled=true"});
  config.loss.tiled = true;
  config.loss.block_size = int64_t(1) << 26;
  expect_error([&] { check_loss_memory(config, 1, memory); }, {"lower loss.block_size"});
  // Tiled with a sensible block the loss no longer depends on the pool, but the queue itself
  // (64M keys of 8 floats, 2 GiB) is more than half of 2 GiB.
  config.loss.block_size = 4096;
  EXPECT_LT(contrastive_loss_bytes(config, 1), double(int64_t(1) << 30));
  EXPECT_NO_THROW(check_loss_memory(config, 1, memory));
  expect_error([&] { check_loss_memory(config, 1, 2.0 * (int64_t(1) << 30)); },
               {"lower negatives.queue_size"});
  // More ranks: fewer rows each. 4 ranks hold a quarter of the dense matrices.
  config.loss.tiled = false;
  EXPECT_NEAR(contrastive_loss_bytes(config, 4), contrastive_loss_bytes(config, 1) / 4, 1.0);
  // The largest queue the config accepts does not overflow the estimate.
  config.negatives.queue_size = int64_t(1) << 40;
  EXPECT_GT(contrastive_loss_bytes(config, 1), 1e15);
}

// ---- checkpoints --------------------------------------------------------------------------------

TEST(SimClrNegatives, QueueAndKeyEncoderAreSavedAndRestored) {
  Config config = small_config();
  config.negatives.source = "batch+queue";
  config.negatives.queue_size = 20;
  config.negatives.momentum = 0.5;
  auto comm = std::make_shared<LocalCommunicator>();
  auto trained = make_objective(config, 1, comm);
  torch::optim::SGD optimizer(trained->parameters(), torch::optim::SGDOptions(0.1));
  const auto views = torch::randn({2, 5, 1, 12, 12});
  for (int step = 0; step < 3; ++step) {
    optimizer.zero_grad();
    trained->compute(views).loss.backward();
    optimizer.step();
    trained->end_step(true);
  }
  const fs::path dir =
      fs::temp_directory_path() / ("selfsup_negatives_" + std::to_string(::getpid()));
  CheckpointInfo info;
  info.step = 3;
  info.config_json = config_to_json(config);
  const auto path = save_checkpoint(dir.string(), info, *trained, &optimizer);

  torch::manual_seed(123);  // different initial weights
  auto restored = std::dynamic_pointer_cast<SimClrObjective>(make_objective(config, 1, comm));
  load_model(path, *restored);
  EXPECT_EQ(restored->queue()->size(), 20);
  const auto expected = trained->named_parameters();
  for (const auto& item : restored->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
  const auto expected_buffers = trained->named_buffers();
  for (const auto& item : restored->named_buffers())
    EXPECT_TRUE(torch::equal(item.value(), expected_buffers[item.key()])) << item.key();

  // A queue of another size (or dimension) is named in the error.
  config.negatives.queue_size = 30;
  config.train.batch_size = 5;
  auto other = make_objective(config, 1, comm);
  expect_error([&] { load_model(path, *other); }, {"queue.keys", "negatives.queue_size"});
  fs::remove_all(dir);
}

}  // namespace
}  // namespace selfsup
