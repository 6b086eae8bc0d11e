// Feature extraction (single-rank and sharded over ranks) and labelled subsets.

#include "selfsup/transfer/features.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"
#include "selfsup/data/augment.h"

namespace selfsup {
namespace {

// Separates the subset's shuffling stream from every other stream drawn from the run seed.
constexpr uint64_t kSubsetStream = 0x737562736574ULL;  // "subset"

// Dataset index of output row `row`.
int64_t index_at(const ExtractOptions& options, int64_t row) {
  return options.indices.empty() ? row : options.indices[static_cast<size_t>(row)];
}

int64_t requested_count(const Dataset& dataset, const ExtractOptions& options) {
  return options.indices.empty() ? dataset.size() : static_cast<int64_t>(options.indices.size());
}

// Un-augmented, normalised images [count, C, H, W] of output rows [first, first+count), and their
// labels [count].
std::pair<torch::Tensor, torch::Tensor> plain_images(const Dataset& dataset,
                                                     const SimClrAugment& augment,
                                                     const ExtractOptions& options, int64_t first,
                                                     int64_t count) {
  const int64_t c = augment.channels(), h = augment.global_size(), w = h;
  auto images = torch::empty({count, c, h, w}, torch::kFloat);
  auto labels = torch::empty({count}, torch::kLong);
  float* pixels = images.data_ptr<float>();
  int64_t* label_ptr = labels.data_ptr<int64_t>();
  std::atomic<int64_t> bad{0};
  at::parallel_for(0, count, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t index = index_at(options, first + i);
      try {
        const auto sample = dataset.get(index);
        augment.plain(sample.image, pixels + i * c * h * w);
        label_ptr[i] = sample.label;
      } catch (const BadSampleError& error) {
        // An unreadable file keeps its row (the shards and the probes need fixed counts): the
        // image is the normalised mean, the label the one its index knows. Training logged the
        // file already; here it is counted.
        std::fill(pixels + i * c * h * w, pixels + (i + 1) * c * h * w, 0.0f);
        label_ptr[i] = dataset.label(index);
        ++bad;
      }
    }
  });
  if (bad > 0) {
    spdlog::warn("{}: {} unreadable sample(s) among rows [{}, {}) given a blank image",
                 dataset.describe(), bad.load(), first, first + count);
  }
  return {images, labels};
}

torch::Device device_of(const torch::nn::Module& module) {
  const auto parameters = module.parameters();
  return parameters.empty() ? torch::Device(torch::kCPU) : parameters.front().device();
}

// Features [count, D] (CPU) and labels [count] of output rows [first, first+count).
FeatureSet extract_rows(Encoder& encoder, const Dataset& dataset, const ExtractOptions& options,
                        int64_t first, int64_t count) {
  SELFSUP_CHECK(options.batch_size >= 1, "feature extraction batch size must be >= 1, got ",
                options.batch_size);
  torch::NoGradGuard no_grad;
  const bool was_training = encoder.is_training();
  encoder.eval();  // batch norm uses its running statistics; no augmentation
  const SimClrAugment plain = SimClrAugment::for_dataset(options.augment, dataset);
  const torch::Device device = device_of(encoder);
  std::vector<torch::Tensor> features, labels;
  for (int64_t start = first; start < first + count; start += options.batch_size) {
    const int64_t len = std::min(options.batch_size, first + count - start);
    auto [images, batch_labels] = plain_images(dataset, plain, options, start, len);
    // [len, feature_dim], back on the CPU where the probes run
    features.push_back(encoder.forward(images.to(device)).to(torch::kCPU).contiguous());
    labels.push_back(batch_labels);
  }
  encoder.train(was_training);
  if (features.empty()) {
    return {torch::empty({0, encoder.feature_dim()}, torch::kFloat),
            torch::empty({0}, torch::kLong)};
  }
  return {torch::cat(features), torch::cat(labels)};
}

}  // namespace

FeatureSet extract_features(Encoder& encoder, const Dataset& dataset,
                            const ExtractOptions& options) {
  return extract_rows(encoder, dataset, options, 0, requested_count(dataset, options));
}

FeatureSet extract_features_distributed(Encoder& encoder, const Dataset& dataset,
                                        const ExtractOptions& options, Communicator& comm) {
  const int64_t n = requested_count(dataset, options);
  SELFSUP_CHECK(n > 0, "feature extraction: no samples requested from ", dataset.describe());
  const int64_t world = comm.size();
  // 1. Contiguous shards of `shard` rows; this rank's is [begin, begin + count).
  const int64_t shard = (n + world - 1) / world;
  const int64_t begin = std::min(n, comm.rank() * shard);
  const int64_t count = std::min(n, begin + shard) - begin;
  const FeatureSet local = extract_rows(encoder, dataset, options, begin, count);

  // 2. Padded to [shard, D] and [shard] on every rank, gathered. NCCL moves CUDA tensors only; the
  // other backends move CPU tensors.
  const torch::Device gather_device =
      comm.backend() == "nccl" ? device_of(encoder) : torch::Device(torch::kCPU);
  const int64_t dim = local.features.size(1);
  auto features = torch::zeros({shard, dim}, torch::kFloat);
  auto labels = torch::full({shard}, int64_t{-1}, torch::kLong);
  features.narrow(0, 0, count).copy_(local.features);
  labels.narrow(0, 0, count).copy_(local.labels);
  const auto all_features = comm.all_gather(features.to(gather_device));  // [world*shard, D]
  const auto all_labels = comm.all_gather(labels.to(gather_device));      // [world*shard]

  // 3. Full shards come first, so the padding lies after row n.
  return {all_features.narrow(0, 0, n).to(torch::kCPU).contiguous(),
          all_labels.narrow(0, 0, n).to(torch::kCPU).contiguous()};
}

FeatureSet pixel_features(const Dataset& dataset, const ExtractOptions& options) {
  auto [images, labels] =
      plain_images(dataset, SimClrAugment::for_dataset(options.augment, dataset), options, 0,
                   requested_count(dataset, options));
  return {images.flatten(1), labels};
}

torch::Tensor dataset_labels(const Dataset& dataset) {
  const int64_t n = dataset.size();
  auto labels = torch::empty({n}, torch::kLong);
  int64_t* out = labels.data_ptr<int64_t>();
  at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = dataset.label(i);
  });
  return labels;
}

std::vector<int64_t> class_balanced_subset(const torch::Tensor& labels, int64_t num_classes,
                                           double fraction, uint64_t seed) {
  SELFSUP_CHECK(labels.dim() == 1 && labels.scalar_type() == torch::kInt64,
                "class_balanced_subset: labels must be a 1-D int64 tensor, got ",
                labels.scalar_type(), " ", labels.sizes());
  SELFSUP_CHECK(num_classes >= 1, "class_balanced_subset: num_classes must be >= 1, got ",
                num_classes);
  SELFSUP_CHECK(fraction > 0.0 && fraction <= 1.0,
                "class_balanced_subset: fraction must be in (0, 1], got ", fraction);
  const torch::Tensor cpu_labels = labels.to(torch::kCPU).contiguous();
  const int64_t n = cpu_labels.size(0);
  const int64_t* label_data = cpu_labels.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(num_classes));
  std::vector<int64_t> labelled;  // samples with a label (-1: unknown, e.g. an unreadable file)
  for (int64_t i = 0; i < n; ++i) {
    SELFSUP_CHECK(label_data[i] >= -1 && label_data[i] < num_classes,
                  "class_balanced_subset: label ", label_data[i], " of sample ", i,
                  " is outside [0, ", num_classes, ")");
    if (label_data[i] < 0) continue;
    by_class[static_cast<size_t>(label_data[i])].push_back(i);
    labelled.push_back(i);
  }
  std::vector<int64_t> subset;
  if (fraction >= 1.0) {
    subset = labelled;
    return subset;
  }
  const auto per_class = std::max<int64_t>(
      1, std::llround(fraction * static_cast<double>(n) / static_cast<double>(num_classes)));
  for (int64_t c = 0; c < num_classes; ++c) {
    auto& members = by_class[static_cast<size_t>(c)];
    // Fisher-Yates keyed by (seed, class) only: the order does not depend on the fraction, so a
    // smaller subset is a prefix of a larger one, class by class.
    std::mt19937_64 engine(mix_key(mix_key(splitmix64(seed), kSubsetStream), uint64_t(c)));
    for (int64_t i = static_cast<int64_t>(members.size()) - 1; i > 0; --i) {
      const int64_t j = std::uniform_int_distribution<int64_t>(0, i)(engine);
      std::swap(members[static_cast<size_t>(i)], members[static_cast<size_t>(j)]);
    }
    const auto take = std::min<int64_t>(per_class, static_cast<int64_t>(members.size()));
    subset.insert(subset.end(), members.begin(), members.begin() + take);
  }
  std::sort(subset.begin(), subset.end());
  return subset;
}

}  // namespace selfsup
