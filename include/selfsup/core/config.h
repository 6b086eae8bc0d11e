#pragma once
// The typed configuration of a run, parsed from JSON in one place (src/core/config.cpp).
//
// Each struct lists its fields once, in `visit`, with the range it accepts; the same list drives
// parsing (with errors naming the key path, the value given and what is expected), serialising the
// resolved config, and rejecting unknown keys. Library code receives these structs, never raw JSON.

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace selfsup {

/// Parameters of the synthetic dataset (data.dataset = "synthetic"): procedurally drawn images
/// whose class decides their shapes and colours, for tests and benchmarks.
struct SyntheticConfig {
  int64_t train_size = 2048;  // training images
  int64_t test_size = 512;    // test images
  int image_size = 32;        // side of the square images, pixels
  int channels = 3;           // 1 (grayscale) or 3 (RGB)
  int classes = 10;           // number of classes

  template <typename V>
  void visit(V& v) {
    v("train_size", train_size, 1, INT64_MAX);
    v("test_size", test_size, 1, INT64_MAX);
    v("image_size", image_size, 4, 4096);
    v("channels", channels, 1, 3);
    v("classes", classes, 2, 100000);
  }
};

/// Where the images come from.
struct DataConfig {
  // Dataset format: "idx" (MNIST / Fashion-MNIST files), "cifar10" / "cifar100" (the binary
  // versions), "folder" (one sub-folder per class of JPEG/PNG files), "tar" (WebDataset-style
  // shards: NNNN.jpg + NNNN.cls members in .tar files), "synthetic" (see SyntheticConfig).
  std::string dataset = "idx";
  std::string root = "/usr/share/datasets/fashion-mnist";  // folder holding the dataset files
  std::string name = "fashion-mnist";                      // dataset name, for reports
  std::string train_split =
      "train";                     // folder / tar: sub-folder (or shard prefix) of the train split
  std::string test_split = "val";  // folder / tar: sub-folder (or shard prefix) of the test split
  bool index_cache = true;         // folder / tar: cache the file index under the root (or run dir)
  int64_t limit_train = 0;         // use only the first N training images (0 = all)
  int64_t limit_test = 0;          // use only the first N test images (0 = all)
  int workers = 2;                 // loader worker threads
  int prefetch = 4;                // batches prepared ahead (bounded queue)
  // "global": one permutation of all samples per epoch, each rank takes its slice of every global
  // batch (results independent of the world size); "shards" (tar): each rank reads only whole
  // shards of its own, shuffled within them (I/O locality; results depend on the world size).
  std::string sampler = "global";
  bool pin_memory = true;  // CUDA only: batches are assembled in pinned (page-locked) memory
  // Unreadable samples are replaced by a deterministic substitute; above this fraction of the
  // samples seen, the run stops with the worst files listed.
  double max_bad_fraction = 0.01;
  SyntheticConfig synthetic;

  template <typename V>
  void visit(V& v) {
    v("dataset", dataset,
      std::vector<std::string>{"idx", "cifar10", "cifar100", "folder", "tar", "synthetic"});
    v("root", root);
    v("name", name);
    v("train_split", train_split);
    v("test_split", test_split);
    v("index_cache", index_cache);
    v("limit_train", limit_train, 0, INT64_MAX);
    v("limit_test", limit_test, 0, INT64_MAX);
    v("workers", workers, 1, 256);
    v("prefetch", prefetch, 1, 1024);
    v("sampler", sampler, std::vector<std::string>{"global", "shards"});
    v("pin_memory", pin_memory);
    v("max_bad_fraction", max_bad_fraction, 0.0, 1.0);
    v("synthetic", synthetic);
  }
};

/// The SimCLR augmentation recipe, per view: V global views plus L local views (multi-crop).
/// Colour steps (saturation, hue, grayscale) are skipped on grayscale images.
struct AugmentConfig {
  int views = 2;                                    // global views per image (SimCLR: >= 2)
  int size = 0;                                     // side of a global view (0 = the image's)
  std::vector<double> crop_scale{0.2, 1.0};         // global crops: area fraction range
  std::vector<double> crop_ratio{0.75, 4.0 / 3.0};  // random resized crop: aspect ratio range
  int local_views = 0;                              // local (small) views per image
  int local_size = 0;                               // side of a local view (0 = size * 3 / 7)
  std::vector<double> local_crop_scale{0.05, 0.4};  // local crops: area fraction range
  double flip_prob = 0.5;                           // horizontal flip probability
  double jitter_prob = 0.8;                         // probability of colour jitter
  double brightness = 0.4;                          // brightness factor drawn from [1-b, 1+b]
  double contrast = 0.4;                            // contrast factor drawn from [1-c, 1+c]
  double saturation = 0.4;                          // saturation factor drawn from [1-s, 1+s]
  double hue = 0.1;                                 // hue shift drawn from [-h, h] (turns)
  double grayscale_prob = 0.2;                      // random grayscale probability
  double blur_prob = 0.0;                           // Gaussian blur probability
  std::vector<double> blur_sigma{0.1, 2.0};         // blur sigma range, pixels
  double solarize_prob = 0.0;                       // solarization probability
  double solarize_threshold = 0.5;                  // pixels >= threshold are inverted
  std::vector<double> mean{0.2860};  // normalisation mean, one value or one per channel
  std::vector<double> std{0.3530};   // normalisation standard deviation, likewise
  // Where the augmentations run: "cpu" (OpenCV, in the loader's threads) or "device" (batched
  // tensor ops on the training device, e.g. the GPU; the loader only decodes and resizes).
  std::string backend = "cpu";

  /// Views per image in the contrastive loss: global plus local.
  int total_views() const { return views + local_views; }

  template <typename V>
  void visit(V& v) {
    v("views", views, 1, 16);
    v("size", size, 0, 4096);
    v("crop_scale", crop_scale, 0.0, 1.0, /*ordered_pair=*/true);
    v("crop_ratio", crop_ratio, 0.01, 100.0, /*ordered_pair=*/true);
    v("local_views", local_views, 0, 32);
    v("local_size", local_size, 0, 4096);
    v("local_crop_scale", local_crop_scale, 0.0, 1.0, /*ordered_pair=*/true);
    v("flip_prob", flip_prob, 0.0, 1.0);
    v("jitter_prob", jitter_prob, 0.0, 1.0);
    v("brightness", brightness, 0.0, 1.0);
    v("contrast", contrast, 0.0, 1.0);
    v("saturation", saturation, 0.0, 1.0);
    v("hue", hue, 0.0, 0.5);
    v("grayscale_prob", grayscale_prob, 0.0, 1.0);
    v("blur_prob", blur_prob, 0.0, 1.0);
    v("blur_sigma", blur_sigma, 0.0, 100.0, /*ordered_pair=*/true);
    v("solarize_prob", solarize_prob, 0.0, 1.0);
    v("solarize_threshold", solarize_threshold, 0.0, 1.0);
    v("mean", mean, -10.0, 10.0, /*ordered_pair=*/false);
    v("std", std, 1e-6, 100.0, /*ordered_pair=*/false);
    v("backend", backend, std::vector<std::string>{"cpu", "device"});
  }
};

/// Encoder and projection head.
struct ModelConfig {
  std::string encoder = "convnet";  // "convnet" (small, for CPUs), "resnet18", "resnet34" (basic
                                    // blocks) or "resnet50" (bottlenecks), torchvision's layers
  std::string stem = "small";       // ResNets: "small" (3x3 stride-1 conv1, no max-pool: 32 px
                                    // images) or "imagenet" (7x7 stride-2 conv1 + 3x3 max-pool)
  int width = 64;                   // ConvNet: channels of the first stage (doubled per stage)
  int stem_stride = 1;              // ConvNet: stride of the first convolution (1 or 2)
  int pool = 2;                     // ConvNet: output spatial size of the final adaptive pooling
  bool channels_last = true;        // NHWC activations (oneDNN's fast path on CPU)
  int head_hidden = 512;            // projection head hidden width
  int head_layers = 2;              // projection head linear layers (Linear-BN-ReLU x (n-1), then
                                    // Linear; SimCLR v1: 2, v2: 3); 1 = a linear projection
  int proj_dim = 128;               // projection dimension (where the loss is computed)
  std::string batch_norm = "sync";  // "sync": statistics over the global batch (all ranks), as
                                    // SimCLR's global BN; "local": this rank's slice only
  std::string init;                 // encoder weights to start from: an encoder.safetensors of
                                    // `selfsup export` ("" = random initialisation); its
                                    // architecture must match the fields above

  template <typename V>
  void visit(V& v) {
    v("encoder", encoder, std::vector<std::string>{"convnet", "resnet18", "resnet34", "resnet50"});
    v("stem", stem, std::vector<std::string>{"small", "imagenet"});
    v("width", width, 1, 4096);
    v("stem_stride", stem_stride, 1, 2);
    v("pool", pool, 1, 16);
    v("channels_last", channels_last);
    v("head_hidden", head_hidden, 1, 65536);
    v("head_layers", head_layers, 1, 16);
    v("proj_dim", proj_dim, 1, 65536);
    v("batch_norm", batch_norm, std::vector<std::string>{"sync", "local"});
    v("init", init);
  }
};

/// The contrastive loss.
struct LossConfig {
  double temperature = 0.5;   // softmax temperature of the cosine similarities
  bool tiled = false;         // stream column blocks (memory independent of the pool size)
  int64_t block_size = 4096;  // tiled: columns per block

  template <typename V>
  void visit(V& v) {
    v("temperature", temperature, 1e-4, 100.0);
    v("tiled", tiled);
    v("block_size", block_size, 1, int64_t(1) << 31);
  }
};

/// Negatives beyond the current batch: a FIFO queue of recycled keys and an optional momentum
/// (EMA) key encoder. N of the MI bound counts every candidate, the queue included.
struct NegativesConfig {
  // "batch": the other views of the global batch (SimCLR); "batch+queue": those and the queue;
  // "queue": negatives only from the queue, the batch gives only positives (MoCo).
  std::string source = "batch";
  int64_t queue_size = 0;  // K keys kept; every step enqueues the global batch x views keys
  double momentum = 0.0;   // key encoder = EMA of the encoder (MoCo v2: 0.99); 0 = no key encoder

  template <typename V>
  void visit(V& v) {
    v("source", source, std::vector<std::string>{"batch", "batch+queue", "queue"});
    v("queue_size", queue_size, 0, int64_t(1) << 40);
    v("momentum", momentum, 0.0, 0.99999);
  }
};

/// Jigsaw puzzles: each view is cut into a 3x3 grid of cells; one tile per cell, smaller than the
/// cell by `gap` and placed at a random offset in it (so that edges do not give the order away);
/// the tiles are shuffled by one of `permutations` permutations chosen far apart in Hamming
/// distance, and the encoder (shared weights, one tile at a time) must say which.
struct JigsawConfig {
  int64_t permutations = 100;  // P: the permutation set (classes of the pretext problem)
  double gap = 0.2;            // fraction of a cell's side left out around its tile

  template <typename V>
  void visit(V& v) {
    v("permutations", permutations, 2, 1000);
    v("gap", gap, 0.0, 0.9);
  }
};

/// Colorization: the encoder sees the luminance of an RGB view (as a gray image) and a decoder
/// predicts the a and b channels of its CIE Lab colours.
struct ColorizationConfig {
  // "bins": per-pixel classification over a bins x bins grid of quantised (a, b) (Zhang et al.);
  // "regression": per-pixel L2 on (a, b) / 110.
  std::string target = "bins";
  // Bins per axis of [-110, 110]. Odd, so that the neutral axis a = b = 0 is the centre of a bin
  // rather than an edge where float rounding splits gray pixels between four bins.
  int bins = 11;

  template <typename V>
  void visit(V& v) {
    v("target", target, std::vector<std::string>{"bins", "regression"});
    v("bins", bins, 2, 64);
  }
};

/// In-painting (context encoder): a square region of each view is set to the mean (0 after
/// normalisation); the encoder-decoder reconstructs the view, the loss is L2 on the region.
struct InpaintingConfig {
  std::string mask = "center";    // "center" or "random" (a position per sample)
  double size = 0.5;              // side of the masked square as a fraction of the view's side
  double adversarial_weight = 0;  // > 0: the context encoder's joint loss, (1 - w) x L2 on the
                                  // hole + w x an adversarial term from a discriminator trained
                                  // against the views with their holes filled (Pathak et al.
                                  // use 0.001)

  template <typename V>
  void visit(V& v) {
    v("mask", mask, std::vector<std::string>{"center", "random"});
    v("size", size, 0.05, 0.95);
    v("adversarial_weight", adversarial_weight, 0.0, 1.0);
  }
};

/// Super-resolution: the view downsampled by `factor` (area average) and brought back to full
/// size (bilinear) is the input; the encoder-decoder reconstructs the full-resolution view.
struct SuperResolutionConfig {
  int factor = 2;  // 2 or 4; must divide the view's side

  template <typename V>
  void visit(V& v) {
    v("factor", factor, 2, 4);
  }
};

/// Autoencoders: the encoder-decoder reconstructs the clean view from itself ("none") or from a
/// corrupted copy (denoising: "gaussian" noise or "mask"ed pixels).
struct AutoencoderConfig {
  std::string noise = "none";  // "none" (plain), "gaussian" or "mask"
  double sigma = 0.5;          // gaussian: noise standard deviation, in normalised units
  double mask_prob = 0.3;      // mask: probability that a pixel (all its channels) is zeroed

  template <typename V>
  void visit(V& v) {
    v("noise", noise, std::vector<std::string>{"none", "gaussian", "mask"});
    v("sigma", sigma, 0.0, 10.0);
    v("mask_prob", mask_prob, 0.0, 0.99);
  }
};

/// GAN: the discriminator is the encoder plus a linear logit; a small generator (a decoder from
/// a latent vector) plays against it with the non-saturating loss, in alternating updates.
struct GanConfig {
  int latent_dim = 64;  // generator input: z ~ N(0, I) of this size

  template <typename V>
  void visit(V& v) {
    v("latent_dim", latent_dim, 1, 4096);
  }
};

/// Denoising diffusion (DDPM): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with t uniform; the
/// encoder reads x_t, a decoder conditioned on an embedding of t predicts eps (L2).
struct DiffusionConfig {
  int timesteps = 1000;      // T
  double beta_start = 1e-4;  // linear noise schedule: beta_1
  double beta_end = 0.02;    // beta_T
  int time_dim = 128;        // sinusoidal timestep embedding width

  template <typename V>
  void visit(V& v) {
    v("timesteps", timesteps, 1, 100000);
    v("beta_start", beta_start, 1e-8, 0.5);
    v("beta_end", beta_end, 1e-8, 0.999);
    v("time_dim", time_dim, 2, 4096);
  }
};

/// The pretext task that trains the encoder (one Objective each, src/objectives/<task>.cpp).
struct PretextConfig {
  // "simclr" (contrastive: loss, negatives), "rotation", "jigsaw", "colorization", "inpainting",
  // "superres", "autoencoder", "gan" or "diffusion". Every task but simclr takes one view per
  // image (augment.views = 1) and draws its own randomness keyed by (seed, epoch, sample).
  std::string task = "simclr";
  int decoder_width = 64;  // encoder-decoder tasks and the GAN generator: decoder channels
  JigsawConfig jigsaw;
  ColorizationConfig colorization;
  InpaintingConfig inpainting;
  SuperResolutionConfig superres;
  AutoencoderConfig autoencoder;
  GanConfig gan;
  DiffusionConfig diffusion;

  template <typename V>
  void visit(V& v) {
    v("task", task,
      std::vector<std::string>{"simclr", "rotation", "jigsaw", "colorization", "inpainting",
                               "superres", "autoencoder", "gan", "diffusion"});
    v("decoder_width", decoder_width, 1, 4096);
    v("jigsaw", jigsaw);
    v("colorization", colorization);
    v("inpainting", inpainting);
    v("superres", superres);
    v("autoencoder", autoencoder);
    v("gan", gan);
    v("diffusion", diffusion);
  }
};

/// Optimizer and learning-rate schedule.
struct OptimConfig {
  std::string name = "adam";        // "adam", "adamw" (decoupled weight decay), "sgd" or "lars"
                                    // (SGD with layer-wise trust ratios, SimCLR's optimizer)
  double lr = 1e-3;                 // peak learning rate (before lr_scaling)
  std::string lr_scaling = "none";  // peak = lr x ("linear") B/base_batch or ("sqrt")
                                    // sqrt(B/base_batch), B the global batch of one step
  int64_t base_batch = 256;         // the batch that lr is given for
  double weight_decay = 1e-6;       // weight decay (adam, sgd: L2 in the gradient; adamw:
                                    // decoupled; lars: L2, not on batch-norm and bias parameters)
  double momentum = 0.9;            // SGD and LARS momentum
  bool nesterov = false;            // SGD Nesterov momentum
  double trust_coefficient = 1e-3;  // LARS: a layer's step is lr x trust_coefficient x |w| / |g|
  int64_t warmup_steps = 100;       // linear warmup from 0 to lr
  std::string schedule = "cosine";  // after warmup: "cosine" (to min_lr_ratio*lr) or "constant"
  double min_lr_ratio = 0.0;        // final learning rate as a fraction of lr

  template <typename V>
  void visit(V& v) {
    v("name", name, std::vector<std::string>{"adam", "adamw", "sgd", "lars"});
    v("lr", lr, 1e-9, 100.0);
    v("lr_scaling", lr_scaling, std::vector<std::string>{"none", "linear", "sqrt"});
    v("base_batch", base_batch, 1, INT64_MAX);
    v("weight_decay", weight_decay, 0.0, 10.0);
    v("momentum", momentum, 0.0, 0.9999);
    v("nesterov", nesterov);
    v("trust_coefficient", trust_coefficient, 0.0, 1.0);
    v("warmup_steps", warmup_steps, 0, INT64_MAX);
    v("schedule", schedule, std::vector<std::string>{"cosine", "constant"});
    v("min_lr_ratio", min_lr_ratio, 0.0, 1.0);
  }
};

/// The training loop.
struct TrainConfig {
  int64_t batch_size = 256;      // global batch of one forward pass (images; each gives
                                 // augment.total_views() views): the contrastive pool
  int64_t epochs = 5;            // passes over the training set
  int64_t max_steps = 0;         // stop after this many optimizer steps (0 = no limit)
  int64_t accumulate_steps = 1;  // micro-batches of batch_size per optimizer step: the optimizer
                                 // sees accumulate_steps x batch_size images, but the negatives of
                                 // each image stay its own micro-batch (plus the queue)
  int64_t log_every = 20;        // a log line every K steps when stderr is not a terminal
  int threads = 0;               // intra-op threads per rank (0 = all cores / ranks on the node)
  int64_t max_skipped_steps = 10;  // stop after this many consecutive steps skipped on a
                                   // non-finite loss or gradient (every rank skips together)
  bool cudnn_benchmark = true;     // CUDA: cuDNN times its convolution algorithms on the first
                                   // steps and keeps the fastest (false: reproducible choices)
  std::string precision = "fp32";  // "fp32"; "bf16": autocast of the encoder and head to
                                   // bfloat16 on CUDA, the loss in fp32 (SimCLR only); "auto":
                                   // bf16 on CUDA, fp32 on CPU

  template <typename V>
  void visit(V& v) {
    v("batch_size", batch_size, 2, INT64_MAX);
    v("epochs", epochs, 1, INT64_MAX);
    v("max_steps", max_steps, 0, INT64_MAX);
    v("accumulate_steps", accumulate_steps, 1, 4096);
    v("log_every", log_every, 1, INT64_MAX);
    v("threads", threads, 0, 4096);
    v("max_skipped_steps", max_skipped_steps, 1, INT64_MAX);
    v("precision", precision, std::vector<std::string>{"fp32", "bf16", "auto"});
    v("cudnn_benchmark", cudnn_benchmark);
  }
};

/// Periodic checkpoints (the final one is always written). Each holds everything a bitwise-exact
/// resume needs: model, optimizer, queue, momentum encoder, step, sampler position, RNG streams.
struct CheckpointConfig {
  int64_t every_steps = 1000;  // a checkpoint every K optimizer steps (0 = only at the end)
  int64_t keep = 3;            // newest checkpoints kept; older ones are deleted

  template <typename V>
  void visit(V& v) {
    v("every_steps", every_steps, 0, INT64_MAX);
    v("keep", keep, 1, 1000000);
  }
};

/// Linear probe on frozen features.
struct LinearProbeConfig {
  int64_t epochs = 30;         // passes over the training features
  int64_t batch_size = 1024;   // mini-batch size
  double lr = 1e-2;            // Adam learning rate (cosine-decayed)
  double weight_decay = 1e-3;  // L2 penalty on the weights (1e-3 beat 1e-5 on probe trials, docs)

  template <typename V>
  void visit(V& v) {
    v("epochs", epochs, 1, INT64_MAX);
    v("batch_size", batch_size, 1, INT64_MAX);
    v("lr", lr, 1e-9, 100.0);
    v("weight_decay", weight_decay, 0.0, 10.0);
  }
};

/// Weighted kNN on frozen features.
struct KnnConfig {
  int64_t k = 200;           // neighbours
  double temperature = 0.1;  // weight = exp(cosine / temperature)

  template <typename V>
  void visit(V& v) {
    v("k", k, 1, INT64_MAX);
    v("temperature", temperature, 1e-4, 100.0);
  }
};

/// Fine-tuning of the whole encoder plus a linear classifier on a class-balanced share of the
/// training labels, data-parallel over the ranks, scored on the test split.
struct FinetuneConfig {
  bool enabled = true;                            // run fine-tuning in the transfer stage
  std::vector<double> fractions{0.01, 0.1, 1.0};  // labelled shares of the training split, (0, 1]
  int64_t epochs = 30;                            // passes over the labelled subset ...
  int64_t max_steps = 60;    // ... but at most this many optimizer steps per run (0 = no cap):
                             // the budget that keeps large fractions affordable on a CPU
  int64_t batch_size = 256;  // global batch (clipped to the subset, rounded to the world size)
  std::string optimizer = "adam";  // "adam" or "sgd" (with momentum, Nesterov)
  double lr = 3e-3;                // peak learning rate, cosine-decayed per step to 0 (3e-3 beat
                                   // 1e-3 and 1e-2 at the 60-step budget, README)
  double weight_decay = 1e-4;      // L2 weight decay (every parameter)
  double momentum = 0.9;           // SGD momentum
  bool augment = true;             // random resized crop (crop_scale) + horizontal flip; false:
                                   // the plain image
  std::vector<double> crop_scale{0.5, 1.0};  // crop area fraction range when augmenting

  template <typename V>
  void visit(V& v) {
    v("enabled", enabled);
    v("fractions", fractions, 0.0, 1.0, /*ordered_pair=*/false);
    v("epochs", epochs, 1, INT64_MAX);
    v("max_steps", max_steps, 0, INT64_MAX);
    v("batch_size", batch_size, 1, INT64_MAX);
    v("optimizer", optimizer, std::vector<std::string>{"adam", "sgd"});
    v("lr", lr, 1e-9, 100.0);
    v("weight_decay", weight_decay, 0.0, 10.0);
    v("momentum", momentum, 0.0, 0.9999);
    v("augment", augment);
    v("crop_scale", crop_scale, 0.0, 1.0, /*ordered_pair=*/true);
  }
};

/// The transfer (downstream) stage.
struct TransferConfig {
  bool enabled = true;        // run after pretraining
  bool baselines = true;      // also probe raw pixels and a random encoder, and fine-tune a random
                              // initialisation and a raw-pixel classifier on each label fraction
  int64_t batch_size = 1024;  // feature extraction batch size (per rank)
  LinearProbeConfig linear;
  KnnConfig knn;
  FinetuneConfig finetune;

  template <typename V>
  void visit(V& v) {
    v("enabled", enabled);
    v("baselines", baselines);
    v("batch_size", batch_size, 1, INT64_MAX);
    v("linear", linear);
    v("knn", knn);
    v("finetune", finetune);
  }
};

/// The online kNN monitor: weighted kNN (transfer.knn's k and temperature) of the current encoder
/// on fixed class-balanced subsets of the train and test splits, at the end of training epochs.
struct MonitorConfig {
  int64_t every_epochs = 1;      // score every K epochs (0 = off)
  int64_t train_samples = 5000;  // training images that vote (the kNN memory bank)
  int64_t test_samples = 1000;   // test images scored

  template <typename V>
  void visit(V& v) {
    v("every_epochs", every_epochs, 0, INT64_MAX);
    v("train_samples", train_samples, 1, INT64_MAX);
    v("test_samples", test_samples, 1, INT64_MAX);
  }
};

/// Distribution across ranks.
struct DistConfig {
  std::string backend = "auto";     // "auto", "local", "mpi" or "nccl"
  double timeout_s = 300.0;         // a collective unfinished after this long aborts every rank
  bool check_shapes = true;         // ranks compare dtype and shape before every collective (a
                                    // small extra collective each: turn off for speed at scale)
  bool overlap_grad_reduce = true;  // reduce gradient buckets during backward, as each fills
  int64_t bucket_mb = 25;           // MiB of gradients per all-reduce bucket

  template <typename V>
  void visit(V& v) {
    v("backend", backend, std::vector<std::string>{"auto", "local", "mpi", "nccl"});
    v("timeout_s", timeout_s, 1.0, 86400.0);
    v("check_shapes", check_shapes);
    v("overlap_grad_reduce", overlap_grad_reduce);
    v("bucket_mb", bucket_mb, 1, 4096);
  }
};

/// The whole run.
struct Config {
  std::string name = "run";    // run name: the default run directory is runs/<name>
  std::string description;     // what the run is for, in words (kept in the resolved config)
  uint64_t seed = 0;           // seeds every random stream of the run
  std::string device = "cpu";  // "cpu" or "cuda"
  DataConfig data;
  AugmentConfig augment;
  ModelConfig model;
  PretextConfig pretext;
  LossConfig loss;
  NegativesConfig negatives;
  OptimConfig optim;
  TrainConfig train;
  CheckpointConfig checkpoint;
  TransferConfig transfer;
  MonitorConfig monitor;
  DistConfig dist;

  template <typename V>
  void visit(V& v) {
    v("name", name);
    v("description", description);
    v("seed", seed);
    v("device", device, std::vector<std::string>{"cpu", "cuda"});
    v("data", data);
    v("augment", augment);
    v("model", model);
    v("pretext", pretext);
    v("loss", loss);
    v("negatives", negatives);
    v("optim", optim);
    v("train", train);
    v("checkpoint", checkpoint);
    v("transfer", transfer);
    v("monitor", monitor);
    v("dist", dist);
  }
};

/// Parses a config from JSON text; `source` names it in errors. Unknown keys, wrong types and
/// out-of-range values throw ConfigError naming the key path, the value and what is expected.
Config parse_config(const std::string& json_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});

/// The rules that tie several keys together (each key's own range is checked while parsing):
/// throws ConfigError naming the keys and what to change. parse_config applies it; code that
/// builds a Config by hand (tests, tools) gets it from the Trainer.
void check_config(const Config& config, const std::string& source);

/// The smallest jigsaw tile side, pixels: three stride-2 stages of an encoder still see 1 pixel.
constexpr int64_t kMinJigsawTile = 4;

/// Jigsaw geometry for views of side `side`: each of the 3x3 cells is `cell` pixels, each tile
/// `tile` pixels (cell minus the gap).
struct JigsawGeometry {
  int64_t cell = 0;
  int64_t tile = 0;
};
JigsawGeometry jigsaw_geometry(const JigsawConfig& jigsaw, int64_t side);

/// Throws ConfigError, saying what to change, when pretext.task does not fit images of `channels`
/// channels and views of side `side` (either 0 when not known yet): jigsaw tiles under
/// kMinJigsawTile pixels, colorization on grayscale, a super-resolution factor that does not
/// divide the side. check_config calls it with what the config says; the Trainer again with the
/// dataset's values.
void check_pretext_fit(const Config& config, int64_t channels, int64_t side,
                       const std::string& source);

/// The precision the encoder and head compute in: "bf16" when train.precision is "bf16", or "auto"
/// on CUDA with the contrastive task; else "fp32".
std::string resolved_precision(const Config& config);

/// Reads and parses a config file, then applies `key.path=value` overrides (values parsed as JSON,
/// or taken as strings when they are not valid JSON).
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// The resolved config (every field, defaults included) as pretty-printed JSON.
std::string config_to_json(const Config& config);

}  // namespace selfsup
