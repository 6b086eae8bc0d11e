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

BasicBlockImpl::BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride,
                               const NormFactory& norm) {
  conv1 = register_module("conv1", conv3x3(in_planes, planes, stride));
  bn1 = norm(planes, true);
  register_module("bn1", bn1.ptr());
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = norm(planes, true);
  register_module("bn2", bn2.ptr());
  if (stride != 1 || in_planes != planes) {
    nn::Sequential shortcut;
    shortcut->push_back(
        nn::Conv2d(nn::Conv2dOptions(in_planes, planes, 1).stride(stride).bias(false)));
    shortcut->push_back(norm(planes, true));
    downsample = register_module("downsample", shortcut);
  }
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  auto out = torch::relu(bn1.forward(conv1->forward(x)));
  out = bn2.forward(conv2->forward(out));
  auto identity = downsample ? downsample->forward(x) : x;
  return torch::relu(out + identity);
}

ResNet18Impl::ResNet18Impl(int64_t in_channels, const NormFactory& norm) {
  conv1 = register_module("conv1", conv3x3(in_channels, 64, 1));
  bn1 = norm(64, true);
  register_module("bn1", bn1.ptr());
  auto stage = [&norm](int64_t in, int64_t out, int64_t stride) {
    return nn::Sequential(BasicBlock(in, out, stride, norm), BasicBlock(out, out, 1, norm));
  };
  layer1 = register_module("layer1", stage(64, 64, 1));
  layer2 = register_module("layer2", stage(64, 128, 2));
  layer3 = register_module("layer3", stage(128, 256, 2));
  layer4 = register_module("layer4", stage(256, 512, 2));
}

torch::Tensor ResNet18Impl::forward(torch::Tensor x) {
  x = torch::relu(bn1.forward(conv1->forward(to_layout(x))));
  x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
  return torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);  // [B, 512]
}

ProjectionHeadImpl::ProjectionHeadImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim,
                                       const NormFactory& norm) {
  fc1 = register_module("fc1", nn::Linear(nn::LinearOptions(in_dim, hidden_dim).bias(false)));
  bn1 = norm(hidden_dim, false);
  register_module("bn1", bn1.ptr());
  fc2 = register_module("fc2", nn::Linear(hidden_dim, out_dim));
}

torch::Tensor ProjectionHeadImpl::forward(torch::Tensor x) {
  return fc2->forward(torch::relu(bn1.forward(fc1->forward(x))));
}

std::shared_ptr<Encoder> make_encoder(const ModelConfig& config, int64_t in_channels,
                                      const NormFactory& norm) {
  std::shared_ptr<Encoder> encoder;
  if (config.encoder == "convnet") {
    encoder = std::make_shared<ConvNetImpl>(in_channels, config.width, config.stem_stride,
                                            config.pool, norm);
  } else if (config.encoder == "resnet18") {
    encoder = std::make_shared<ResNet18Impl>(in_channels, norm);
  } else {
    throw ConfigError("model.encoder = \"" + config.encoder +
                      "\" is unknown; use convnet or resnet18");
  }
  encoder->use_channels_last(config.channels_last);
  return encoder;
}

}  // namespace selfsup
