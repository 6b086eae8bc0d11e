// Fine-tuning, data-parallel. One step on every rank:
//   1. the sampler's global batch over the labelled subset, this rank's contiguous slice of it
//      (the loader's views, keyed by (seed, epoch, sample index), not by rank);
//   2. forward encoder and classifier (synchronized batch norm by default), mean cross-entropy over
//      the local slice, backward;
//   3. the GradientReducer averages gradients over ranks: with equal slices that is the gradient of
//      the mean over the global batch;
//   4. one all_reduce of the loss: every rank sees the same global mean, so all agree to stop on a
//      non-finite loss;
//   5. the optimizer steps, identically on every rank.
// Scoring: features of the test split sharded over the ranks and gathered
// (extract_features_distributed), then the classifier on every rank alike.

#include "selfsup/transfer/finetune.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>

#include "selfsup/core/device.h"
#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/loader.h"
#include "selfsup/data/sampler.h"
#include "selfsup/dist/gradient_reducer.h"
#include "selfsup/dist/sync_batch_norm.h"
#include "selfsup/transfer/features.h"

namespace selfsup {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Streams of their own, derived from the run seed: the sampler and the views of fine-tuning, and
// the initialisation of the classifier and of the random encoder.
constexpr uint64_t kFinetuneDataStream = 0x66696E6574756E65ULL;  // "finetune"
constexpr uint64_t kClassifierStream = 0x636C617373ULL;          // "class"

// The same seed as the random-encoder linear-probe baseline, so that "random init" fine-tuning
// starts from the encoder that baseline probes.
uint64_t random_encoder_seed(uint64_t seed) { return seed + 0x9E3779B9ull; }

NormFactory norm_factory(const ModelConfig& model, Communicator& comm) {
  if (model.batch_norm == "local") return batch_norm_factory();
  // SyncBatchNorm holds a shared_ptr; the Communicator outlives the model (the caller owns both),
  // so a non-owning pointer does.
  std::shared_ptr<Communicator> shared(std::shared_ptr<Communicator>(), &comm);
  return [shared](int64_t features, bool /*spatial*/) {
    return torch::nn::AnyModule(SyncBatchNorm(features, shared));
  };
}

// Copies every parameter and buffer of `source` into the same-named one of `target` (batch norm
// and synchronized batch norm share names, so either may be on either side).
void copy_state(const torch::nn::Module& source, torch::nn::Module& target) {
  torch::NoGradGuard no_grad;
  auto target_parameters = target.named_parameters();
  auto target_buffers = target.named_buffers();
  int64_t copied = 0;
  for (const auto& item : source.named_parameters()) {
    auto* to = target_parameters.find(item.key());
    SELFSUP_CHECK(to != nullptr, "fine-tuning: the encoder has no parameter ", item.key());
    to->copy_(item.value());
    ++copied;
  }
  for (const auto& item : source.named_buffers()) {
    auto* to = target_buffers.find(item.key());
    SELFSUP_CHECK(to != nullptr, "fine-tuning: the encoder has no buffer ", item.key());
    to->copy_(item.value());
  }
  SELFSUP_CHECK(copied == static_cast<int64_t>(target_parameters.size()), "fine-tuning: copied ",
                copied, " parameters into an encoder with ", target_parameters.size());
}

torch::Device device_of(const torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

// The views of fine-tuning: crop + flip, no colour jitter or blur; or the plain image (a full-size
// box of the image's own aspect ratio, no flip).
AugmentConfig finetune_augment(const Config& config, const Dataset& dataset) {
  AugmentConfig augment = config.augment;
  augment.views = 1;
  augment.local_views = 0;
  augment.jitter_prob = 0.0;
  augment.grayscale_prob = 0.0;
  augment.blur_prob = 0.0;
  augment.solarize_prob = 0.0;
  if (config.transfer.finetune.augment) {
    augment.crop_scale = config.transfer.finetune.crop_scale;
    augment.flip_prob = 0.5;
  } else {
    // The whole image; images of varying size: the central square (every box of scale 1 and ratio
    // 1 misfits, and the crop falls back to the central box of ratio 1).
    const double ratio =
        dataset.height() > 0 ? double(dataset.width()) / double(dataset.height()) : 1.0;
    augment.crop_scale = {1.0, 1.0};
    augment.crop_ratio = {ratio, ratio};
    augment.flip_prob = 0.0;
  }
  return augment;
}

std::unique_ptr<torch::optim::Optimizer> make_finetune_optimizer(
    const FinetuneConfig& config, const std::vector<torch::Tensor>& parameters) {
  if (config.optimizer == "sgd") {
    return std::make_unique<torch::optim::SGD>(parameters, torch::optim::SGDOptions(config.lr)
                                                               .momentum(config.momentum)
                                                               .nesterov(config.momentum > 0.0)
                                                               .weight_decay(config.weight_decay));
  }
  SELFSUP_CHECK(config.optimizer == "adam", "transfer.finetune.optimizer = \"", config.optimizer,
                "\" is unknown; use adam or sgd");
  return std::make_unique<torch::optim::Adam>(
      parameters, torch::optim::AdamOptions(config.lr).weight_decay(config.weight_decay));
}

}  // namespace

FinetuneResult finetune(const Config& config, const FinetuneData& data, const Encoder* pretrained,
                        Communicator& comm) {
  const auto start = std::chrono::steady_clock::now();
  const FinetuneConfig& fc = config.transfer.finetune;
  SELFSUP_CHECK(data.train != nullptr && data.test != nullptr,
                "fine-tuning needs a training and a test dataset");
  const Dataset& train = *data.train;
  const int world = comm.size();
  const auto labelled = static_cast<int64_t>(data.labelled.size());
  const int64_t classes = std::max(train.num_classes(), data.test->num_classes());
  SELFSUP_CHECK(classes >= 2, "fine-tuning needs labels; ", train.describe(), " has ", classes,
                " classes");

  // A global batch of at most the whole subset, divisible by the world size.
  const int64_t global_batch = std::min(fc.batch_size, labelled) / world * world;
  SELFSUP_CHECK(global_batch >= world, "fine-tuning: ", labelled,
                " labelled samples are fewer than the ", world,
                " ranks; raise transfer.finetune.fractions or data.limit_train");
  const uint64_t data_seed = mix_key(config.seed, kFinetuneDataStream);
  DistributedSampler sampler(labelled, global_batch, comm.rank(), world, data_seed);
  int64_t total_steps = fc.epochs * sampler.steps_per_epoch();
  if (fc.max_steps > 0) total_steps = std::min(total_steps, fc.max_steps);

  LoaderOptions loader_options;
  loader_options.seed = data_seed;
  loader_options.workers = config.data.workers;
  loader_options.prefetch = config.data.prefetch;
  loader_options.views = 1;
  Loader loader(train, SimClrAugment::for_dataset(finetune_augment(config, train), train),
                loader_options);

  // The model, identical on every rank: seeded, then rank 0's copy broadcast.
  const torch::Device device =
      pretrained ? device_of(*pretrained) : resolve_device(config.device, comm.local_rank());
  torch::manual_seed(random_encoder_seed(config.seed));
  std::shared_ptr<Encoder> encoder =
      make_encoder(config.model, train.channels(), norm_factory(config.model, comm));
  encoder->to(device);
  if (pretrained) copy_state(*pretrained, *encoder);
  torch::manual_seed(mix_key(config.seed, kClassifierStream));
  torch::nn::Linear classifier(encoder->feature_dim(), classes);
  classifier->to(device);
  broadcast_module(*encoder, comm);
  broadcast_module(*classifier, comm);
  encoder->train();
  classifier->train();

  std::vector<torch::Tensor> parameters = encoder->parameters();
  for (const auto& p : classifier->parameters()) parameters.push_back(p);
  auto optimizer = make_finetune_optimizer(fc, parameters);
  GradientReducer reducer(parameters, comm);

  FinetuneResult result;
  result.global_batch = global_batch;
  int64_t step = 0;
  for (int64_t epoch = 0; step < total_steps; ++epoch) {
    // The sampler indexes the subset; the loader wants dataset indices.
    auto batches = sampler.local_batches(epoch);
    for (auto& batch : batches)
      for (auto& index : batch) index = data.labelled[static_cast<size_t>(index)];
    loader.start_epoch(epoch, std::move(batches));
    while (step < total_steps) {
      auto batch = loader.next();
      if (!batch) break;
      const double progress = double(step) / double(total_steps);
      const double lr = 0.5 * fc.lr * (1.0 + std::cos(kPi * progress));
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);

      optimizer->zero_grad();
      const torch::Tensor images = batch->views.select(0, 0).to(device);  // [B_local, C, H, W]
      const torch::Tensor labels = batch->labels.to(device);              // [B_local]
      const torch::Tensor loss =
          torch::nn::functional::cross_entropy(classifier(encoder->forward(images)), labels);
      loss.backward();
      reducer.reduce();
      torch::Tensor global_loss = loss.detach().reshape({1}).clone();
      comm.all_reduce_(global_loss, ReduceOp::kAvg);
      const double mean_loss = global_loss.item<double>();
      // The same value on every rank: all stop together.
      SELFSUP_CHECK(std::isfinite(mean_loss), "fine-tuning diverged: the loss is ", mean_loss,
                    " at step ", step, "; lower transfer.finetune.lr");
      optimizer->step();
      result.losses.push_back(mean_loss);
      ++step;
    }
  }
  result.steps = step;
  result.epochs = double(step) * double(global_batch) / double(labelled);

  // With local batch norm the running statistics differ by rank: score rank 0's model everywhere.
  broadcast_module(*encoder, comm);
  ExtractOptions options(config.augment);
  options.batch_size = config.transfer.batch_size;
  const FeatureSet test = extract_features_distributed(*encoder, *data.test, options, comm);
  {
    torch::NoGradGuard no_grad;
    classifier->eval();
    const torch::Tensor logits = classifier(test.features.to(device)).to(torch::kCPU);
    const int64_t correct = logits.argmax(1).eq(test.labels).sum().item<int64_t>();
    result.top1 = 100.0 * double(correct) / double(test.labels.size(0));
  }
  result.encoder = encoder;
  result.classifier = classifier;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace selfsup
