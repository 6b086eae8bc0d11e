#include "selfsup/models/encoder.h"

#include "selfsup/core/error.h"

namespace selfsup {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

}  // namespace

NormFactory batch_norm_factory() {
  return [](int64_t features, bool spatial) {
    return spatial ? nn::AnyModule(nn::BatchNorm2d(features))
                   : nn::AnyModule(nn::BatchNorm1d(features));
  };
}

void Encoder::use_channels_last(bool enable) {
  channels_last_ = enable;
  torch::NoGradGuard no_grad;
  const auto format = enable ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  for (auto& p : parameters()) {
    if (p.dim() == 4) p.set_data(p.contiguous(format));
  }
}

ConvNetImpl::ConvNetImpl(int64_t in_channels, int64_t width, int64_t stem_stride, int64_t pool,
                         const NormFactory& norm)
    : pool_(pool), feature_dim_(4 * width * pool * pool) {
  nn::Sequential features;
  features->push_back(conv3x3(in_channels, width, stem_stride));
  features->push_back(norm(width, true));
  features->push_back(nn::ReLU(true));
  features->push_back(conv3x3(width, 2 * width, 2));
  features->push_back(norm(2 * width, true));
  features->push_back(nn::ReLU(true));
  features->push_back(conv3x3(2 * width, 4 * width, 2));
  features->push_back(norm(4 * width, true));
  features->push_back(nn::ReLU(true));
  features_ = register_module("features", features);
}

torch::Tensor ConvNetImpl::forward(torch::Tensor x) {
  x = features_->forward(to_layout(x));               // [B, 4w, H/(4s), W/(4s)]
  x = torch::adaptive_avg_pool2d(x, {pool_, pool_});  // [B, 4w, p, p]
  return x.flatten(1);                                // [B, 4w*p*p]
}

namespace {

nn::Sequential shortcut(int64_t in_planes, int64_t out_planes, int64_t stride,
                        const NormFactory& norm) {
  nn::Sequential layers;
  layers->push_back(
      nn::Conv2d(nn::Conv2dOptions(in_planes, out_planes, 1).stride(stride).bias(false)));
  layers->push_back(norm(out_planes, true));
  return layers;
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride,
                               const NormFactory& norm) {
  conv1 = register_module("conv1", conv3x3(in_planes, planes, stride));
  bn1 = norm(planes, true);
  register_module("bn1", bn1.ptr());
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = norm(planes, true);
  register_module("bn2", bn2.ptr());
  if (stride != 1 || in_planes != planes)
    downsample = register_module("downsample", shortcut(in_planes, planes, stride, norm));
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  auto out = torch::relu(bn1.forward(conv1->forward(x)));
  out = bn2.forward(conv2->forward(out));
  auto identity = downsample ? downsample->forward(x) : x;
  return torch::relu(out + identity);
}

BottleneckImpl::BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride,
                               const NormFactory& norm) {
  const int64_t out_planes = planes * kExpansion;
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in_planes, planes, 1).bias(false)));
  bn1 = norm(planes, true);
  register_module("bn1", bn1.ptr());
  conv2 = register_module("conv2", conv3x3(planes, planes, stride));
  bn2 = norm(planes, true);
  register_module("bn2", bn2.ptr());
  conv3 =
      register_module("conv3", nn::Conv2d(nn::Conv2dOptions(planes, out_planes, 1).bias(false)));
  bn3 = norm(out_planes, true);
  register_module("bn3", bn3.ptr());
  if (stride != 1 || in_planes != out_planes)
    downsample = register_module("downsample", shortcut(in_planes, out_planes, stride, norm));
}

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  auto out = torch::relu(bn1.forward(conv1->forward(x)));
  out = torch::relu(bn2.forward(conv2->forward(out)));
  out = bn3.forward(conv3->forward(out));
  auto identity = downsample ? downsample->forward(x) : x;
  return torch::relu(out + identity);
}

namespace {

// One stage of `blocks` blocks, the first with `stride`; advances `in_planes`.
template <typename Block>
nn::Sequential resnet_stage(int64_t& in_planes, int64_t planes, int64_t blocks, int64_t stride,
                            const NormFactory& norm) {
  nn::Sequential stage;
  for (int64_t i = 0; i < blocks; ++i) {
    stage->push_back(Block(in_planes, planes, i == 0 ? stride : 1, norm));
    in_planes = planes * Block::Impl::kExpansion;
  }
  return stage;
}

}  // namespace

ResNetImpl::ResNetImpl(int64_t depth, int64_t in_channels, const std::string& stem,
                       const NormFactory& norm) {
  SELFSUP_CHECK(stem == "small" || stem == "imagenet", "model.stem = \"", stem,
                "\" is unknown; use \"small\" or \"imagenet\"");
  if (stem == "imagenet") {
    conv1 = register_module(
        "conv1",
        nn::Conv2d(nn::Conv2dOptions(in_channels, 64, 7).stride(2).padding(3).bias(false)));
    max_pool_ = true;
  } else {
    conv1 = register_module("conv1", conv3x3(in_channels, 64, 1));
  }
  bn1 = norm(64, true);
  register_module("bn1", bn1.ptr());
  std::vector<int64_t> blocks;
  if (depth == 18) blocks = {2, 2, 2, 2};
  if (depth == 34 || depth == 50) blocks = {3, 4, 6, 3};
  SELFSUP_CHECK(!blocks.empty(), "ResNet depth ", depth, " is not built; use 18, 34 or 50");
  int64_t planes = 64;
  auto add_stage = [&](const char* name, int64_t count, int64_t width, int64_t stride) {
    auto stage = depth == 50 ? resnet_stage<Bottleneck>(planes, width, count, stride, norm)
                             : resnet_stage<BasicBlock>(planes, width, count, stride, norm);
    return register_module(name, stage);
  };
  layer1 = add_stage("layer1", blocks[0], 64, 1);
  layer2 = add_stage("layer2", blocks[1], 128, 2);
  layer3 = add_stage("layer3", blocks[2], 256, 2);
  layer4 = add_stage("layer4", blocks[3], 512, 2);
  feature_dim_ = planes;  // 512 x expansion
}

torch::Tensor ResNetImpl::forward(torch::Tensor x) {
  x = torch::relu(bn1.forward(conv1->forward(to_layout(x))));
  if (max_pool_) x = torch::max_pool2d(x, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);
  x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
  return torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);  // [B, feature_dim]
}

ProjectionHeadImpl::ProjectionHeadImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim,
                                       const NormFactory& norm, int64_t layers) {
  SELFSUP_CHECK(layers >= 1, "model.head_layers = ", layers, " must be >= 1");
  int64_t width = in_dim;
  for (int64_t i = 1; i < layers; ++i) {
    fcs_.push_back(register_module("fc" + std::to_string(i),
                                   nn::Linear(nn::LinearOptions(width, hidden_dim).bias(false))));
    bns_.push_back(norm(hidden_dim, false));
    register_module("bn" + std::to_string(i), bns_.back().ptr());
    width = hidden_dim;
  }
  fcs_.push_back(register_module("fc" + std::to_string(layers), nn::Linear(width, out_dim)));
}

torch::Tensor ProjectionHeadImpl::forward(torch::Tensor x) {
  for (size_t i = 0; i < bns_.size(); ++i) x = torch::relu(bns_[i].forward(fcs_[i]->forward(x)));
  return fcs_.back()->forward(x);
}

std::shared_ptr<Encoder> make_encoder(const ModelConfig& config, int64_t in_channels,
                                      const NormFactory& norm) {
  std::shared_ptr<Encoder> encoder;
  if (config.encoder == "convnet") {
    encoder = std::make_shared<ConvNetImpl>(in_channels, config.width, config.stem_stride,
                                            config.pool, norm);
  } else if (config.encoder == "resnet18" || config.encoder == "resnet34" ||
             config.encoder == "resnet50") {
    encoder = std::make_shared<ResNetImpl>(std::stoi(config.encoder.substr(6)), in_channels,
                                           config.stem, norm);
  } else {
    throw ConfigError("model.encoder = \"" + config.encoder +
                      "\" is unknown; use convnet, resnet18, resnet34 or resnet50");
  }
  encoder->use_channels_last(config.channels_last);
  return encoder;
}

}  // namespace selfsup
