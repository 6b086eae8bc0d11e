#pragma once
// Encoders (image -> feature vector) and the projection head. Names follow torchvision where an
// equivalent exists (conv1, bn1, layer1.0.conv1, ...), so exported weights load in Python.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "selfsup/core/config.h"

namespace selfsup {

/// Makes the normalisation layer after a convolution (`spatial`: input [N, C, H, W]) or a linear
/// layer ([N, C]) with `features` channels. Models take one so that the objective can choose
/// synchronized batch norm (dist/) without models knowing about ranks.
using NormFactory = std::function<torch::nn::AnyModule(int64_t features, bool spatial)>;

/// torch::nn::BatchNorm2d for spatial inputs, BatchNorm1d otherwise.
NormFactory batch_norm_factory();

/// An image encoder: [B, C, H, W] -> [B, feature_dim()].
class Encoder : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  virtual int64_t feature_dim() const = 0;
  /// Switches activations and 4-D weights to NHWC (channels-last), oneDNN's fast layout.
  void use_channels_last(bool enable);

 protected:
  /// The input in the layout this encoder computes in.
  torch::Tensor to_layout(const torch::Tensor& x) const {
    return channels_last_ ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x;
  }

 private:
  bool channels_last_ = false;
};

/// A small ConvNet for CPUs: three 3x3 conv-BN-ReLU stages (width, 2*width, 4*width channels;
/// strides stem_stride, 2, 2), then adaptive average pooling to pool x pool and flattening.
class ConvNetImpl : public Encoder {
 public:
  ConvNetImpl(int64_t in_channels, int64_t width, int64_t stem_stride, int64_t pool,
              const NormFactory& norm = batch_norm_factory());
  torch::Tensor forward(torch::Tensor x) override;
  int64_t feature_dim() const override { return feature_dim_; }

 private:
  torch::nn::Sequential features_{nullptr};
  int64_t pool_;
  int64_t feature_dim_;
};

/// ResNet basic block (two 3x3 convolutions), torchvision layout. ResNet-18 and -34.
class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t in_planes, int64_t planes, int64_t stride, const NormFactory& norm);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::AnyModule bn1, bn2;
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

/// ResNet bottleneck block (1x1 reduce, 3x3, 1x1 expand by 4), torchvision layout: the stride is
/// on the 3x3 convolution ("ResNet v1.5"). ResNet-50.
class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t in_planes, int64_t planes, int64_t stride, const NormFactory& norm);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::AnyModule bn1, bn2, bn3;
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

/// ResNet-18, -34 or -50 with torchvision's layer names (conv1, bn1, layer1.0.conv1, ...,
/// layer4.2.downsample.1), without the classifier: global average pooling gives 512 (18, 34) or
/// 2048 (50) features. The stem is "imagenet" (7x7 stride-2 conv1, 3x3 stride-2 max-pool: 224 px
/// images) or "small" (3x3 stride-1 conv1, no max-pool: 32 px images, as in SimCLR's CIFAR runs).
class ResNetImpl : public Encoder {
 public:
  ResNetImpl(int64_t depth, int64_t in_channels, const std::string& stem,
             const NormFactory& norm = batch_norm_factory());
  torch::Tensor forward(torch::Tensor x) override;
  int64_t feature_dim() const override { return feature_dim_; }

 private:
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::AnyModule bn1;
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  bool max_pool_ = false;
  int64_t feature_dim_ = 0;
};

/// MLP projection head of `layers` linear layers: (Linear -> BatchNorm1d -> ReLU) x (layers - 1)
/// -> Linear, hidden width `hidden_dim`; named fc1, bn1, fc2, bn2, ..., fc<layers>. Dropped at
/// transfer.
class ProjectionHeadImpl : public torch::nn::Module {
 public:
  ProjectionHeadImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim,
                     const NormFactory& norm = batch_norm_factory(), int64_t layers = 2);
  torch::Tensor forward(torch::Tensor x);

 private:
  std::vector<torch::nn::Linear> fcs_;
  std::vector<torch::nn::AnyModule> bns_;
};
TORCH_MODULE(ProjectionHead);

/// Builds the encoder named by `config.encoder` for images with `in_channels` channels.
std::shared_ptr<Encoder> make_encoder(const ModelConfig& config, int64_t in_channels,
                                      const NormFactory& norm = batch_norm_factory());

}  // namespace selfsup
