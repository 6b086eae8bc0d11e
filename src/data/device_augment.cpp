// SimCLR augmentations as batched tensor ops (augment.backend = "device").
//
// Per group of views (the V global ones, then the L local ones), N = K * B views, view-major
// (row n = k * B + b):
//   1. Host: each view's parameters from its KeyedRng, packed into one float table [N, kColumns]
//      and one int64 list of row indices per masked step; two host-to-device copies in all.
//   2. Crop + flip + resize: one grid_sample over the B images with the K views' grids stacked
//      along the height ([B, K*h, w, 2]), so the input is never repeated K times.
//   3. Colour jitter: for each position p of the order and each step t, the rows whose p-th step is
//      t are gathered, transformed with their own factors and scattered back (index_copy_): 4
//      positions x 4 steps, each row transformed exactly 4 times.
//   4. Grayscale, blur (per-row separable Gaussian kernels, one grouped conv2d per axis),
//      solarization: the same gather / transform / scatter on their rows.
//   5. Normalisation of the whole group.
// Pixels are float32 in [0, 1] from the uint8 input to the normalisation: no rounding in between.

#include "selfsup/data/device_augment.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "selfsup/core/error.h"
#include "selfsup/core/rng.h"

namespace selfsup {
namespace {

namespace F = torch::nn::functional;

// RandomResizedCrop gives up after this many rejected boxes and falls back to a central crop.
constexpr int kCropAttempts = 10;
// The blur kernel spans about this fraction of the view's side (SimCLR's recipe).
constexpr double kBlurKernelFraction = 0.1;
// torchvision's rgb_to_grayscale weights.
constexpr double kLumaRed = 0.2989;
constexpr double kLumaGreen = 0.587;
constexpr double kLumaBlue = 0.114;

enum JitterStep : int { kBrightness = 0, kContrast = 1, kSaturation = 2, kHue = 3 };

// Columns of the per-view float table moved to the device.
enum Column : int {
  kLeft = 0,
  kTop,
  kWidth,
  kHeight,
  kFlip,
  kBrightnessFactor,  // the 4 jitter factors, in JitterStep order
  kContrastFactor,
  kSaturationFactor,
  kHueShift,
  kSigma,
  kColumns
};

void check_pair(const std::vector<double>& pair, const char* key, double min_allowed) {
  SELFSUP_CHECK(pair.size() == 2 && pair[0] >= min_allowed && pair[0] <= pair[1], "augment.", key,
                " must be a pair [min, max] with ", min_allowed, " <= min <= max");
}

void check_config(const AugmentConfig& config, int channels) {
  SELFSUP_CHECK(channels == 1 || channels == 3, "DeviceAugment: images must have 1 or 3 channels, ",
                "got ", channels);
  check_pair(config.crop_scale, "crop_scale", 0.0);
  check_pair(config.local_crop_scale, "local_crop_scale", 0.0);
  check_pair(config.crop_ratio, "crop_ratio", 1e-9);
  check_pair(config.blur_sigma, "blur_sigma", 0.0);
  SELFSUP_CHECK(config.views >= 1, "augment.views = ", config.views, " must be >= 1");
  SELFSUP_CHECK(config.local_views >= 0, "augment.local_views = ", config.local_views,
                " must be >= 0");
  for (const auto* values : {&config.mean, &config.std}) {
    SELFSUP_CHECK(values->size() == 1 || values->size() == static_cast<size_t>(channels),
                  "augment.mean and augment.std need 1 value or one per channel (", channels,
                  "); got ", values->size());
  }
  for (const double s : config.std) SELFSUP_CHECK(s > 0, "augment.std must be > 0, got ", s);
}

// Odd kernel size of about kBlurKernelFraction of `side`, at least 3, and at most 2 * side - 1 so
// that reflect padding (half the kernel) stays inside the image.
int blur_kernel_size(int side) {
  int size = static_cast<int>(std::lround(kBlurKernelFraction * side));
  if (size % 2 == 0) ++size;
  return std::min(std::max(3, size), 2 * side - 1);
}

// [n, C, h, w] -> [n, 1, h, w] luma (the image itself when C = 1).
torch::Tensor luma(const torch::Tensor& x) {
  if (x.size(1) == 1) return x;
  return kLumaRed * x.select(1, 0).unsqueeze(1) + kLumaGreen * x.select(1, 1).unsqueeze(1) +
         kLumaBlue * x.select(1, 2).unsqueeze(1);
}

// torchvision's _blend: factor * x + (1 - factor) * other, clamped to [0, 1].
torch::Tensor blend(const torch::Tensor& x, const torch::Tensor& other,
                    const torch::Tensor& factor) {
  return (factor * x + (1 - factor) * other).clamp_(0, 1);
}

// torchvision's adjust_hue on tensors (_rgb2hsv, shift, _hsv2rgb); x [n, 3, h, w] in [0, 1],
// shift [n, 1, 1, 1] in turns.
torch::Tensor shift_hue(const torch::Tensor& x, const torch::Tensor& shift) {
  const torch::Tensor r = x.select(1, 0);  // [n, h, w]
  const torch::Tensor g = x.select(1, 1);
  const torch::Tensor b = x.select(1, 2);
  const torch::Tensor maxc = std::get<0>(x.max(1));
  const torch::Tensor minc = std::get<0>(x.min(1));
  const torch::Tensor equal = maxc == minc;
  const torch::Tensor chroma = maxc - minc;
  const torch::Tensor ones = torch::ones_like(maxc);
  const torch::Tensor saturation = chroma / torch::where(equal, ones, maxc);
  const torch::Tensor divisor = torch::where(equal, ones, chroma);
  const torch::Tensor rc = (maxc - r) / divisor;
  const torch::Tensor gc = (maxc - g) / divisor;
  const torch::Tensor bc = (maxc - b) / divisor;
  const torch::Tensor red_max = maxc == r;
  const torch::Tensor green_max = (maxc == g).logical_and(red_max.logical_not());
  const torch::Tensor blue_max = red_max.logical_or(maxc == g).logical_not();
  torch::Tensor hue =
      red_max * (bc - gc) + green_max * (2.0 + rc - bc) + blue_max * (4.0 + gc - rc);
  hue = torch::fmod(hue / 6.0 + 1.0, 1.0);
  hue = torch::remainder(hue + shift.view({-1, 1, 1}), 1.0);

  const torch::Tensor& value = maxc;
  const torch::Tensor sector_float = torch::floor(hue * 6.0);
  const torch::Tensor f = hue * 6.0 - sector_float;
  const torch::Tensor sector = torch::remainder(sector_float.to(torch::kInt32), 6);
  const torch::Tensor p = (value * (1.0 - saturation)).clamp(0, 1);
  const torch::Tensor q = (value * (1.0 - saturation * f)).clamp(0, 1);
  const torch::Tensor t = (value * (1.0 - saturation * (1.0 - f))).clamp(0, 1);
  // Sector i of the hue circle takes (r, g, b) from row i of this table.
  const std::array<std::array<const torch::Tensor*, 3>, 6> table{{{&value, &t, &p},
                                                                  {&q, &value, &p},
                                                                  {&p, &value, &t},
                                                                  {&p, &q, &value},
                                                                  {&t, &p, &value},
                                                                  {&value, &p, &q}}};
  std::array<torch::Tensor, 3> rgb;
  for (int c = 0; c < 3; ++c) {
    rgb[c] = *table[5][c];
    for (int i = 4; i >= 0; --i) rgb[c] = torch::where(sector == i, *table[i][c], rgb[c]);
  }
  return torch::stack({rgb[0], rgb[1], rgb[2]}, 1);
}

// Row indices of the views each masked step applies to, packed in one list.
class RowLists {
 public:
  // Starts a new list; returns its id.
  size_t open() {
    spans_.push_back({static_cast<int64_t>(rows_.size()), 0});
    return spans_.size() - 1;
  }
  void add(int64_t row) {
    rows_.push_back(row);
    ++spans_.back().second;
  }
  // Moves every list to `device` in one copy.
  void to(const torch::Device& device) {
    device_rows_ = torch::tensor(rows_, torch::kInt64).to(device);
  }
  bool empty(size_t id) const { return spans_[id].second == 0; }
  // [count] int64 on the device.
  torch::Tensor rows(size_t id) const {
    return device_rows_.narrow(0, spans_[id].first, spans_[id].second);
  }

 private:
  std::vector<int64_t> rows_{0};  // never empty, so that torch::tensor gets a 1-D list
  std::vector<std::pair<int64_t, int64_t>> spans_;  // (offset, count)
  torch::Tensor device_rows_;
};

// Applies `transform` to the rows `rows` of x [N, C, h, w] in place.
template <typename Transform>
void apply_to_rows(torch::Tensor& x, const torch::Tensor& rows, Transform transform) {
  x.index_copy_(0, rows, transform(x.index_select(0, rows), rows));
}

// Per-row Gaussian blur of x [n, C, h, w] with sigma [n]; reflect padding like torchvision.
torch::Tensor gaussian_blur(const torch::Tensor& x, const torch::Tensor& sigma) {
  const int64_t n = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const auto kernels = [&](int size) {  // [n * C, size], each row sums to 1
    const int half = (size - 1) / 2;
    const torch::Tensor offsets = torch::arange(-half, half + 1, x.options());
    torch::Tensor k = torch::exp(-0.5 * (offsets.unsqueeze(0) / sigma.unsqueeze(1)).pow(2));
    k = k / k.sum(1, /*keepdim=*/true);
    return k.repeat_interleave(channels, 0);
  };
  const int size_x = blur_kernel_size(static_cast<int>(width));
  const int size_y = blur_kernel_size(static_cast<int>(height));
  const int half_x = (size_x - 1) / 2, half_y = (size_y - 1) / 2;
  // [1, n*C, h, w]: each (view, channel) plane is its own group with its own kernel.
  torch::Tensor planes = x.reshape({1, n * channels, height, width});
  planes =
      F::pad(planes, F::PadFuncOptions({half_x, half_x, half_y, half_y}).mode(torch::kReflect));
  planes = F::conv2d(planes, kernels(size_x).view({n * channels, 1, 1, size_x}),
                     F::Conv2dFuncOptions().groups(n * channels));
  planes = F::conv2d(planes, kernels(size_y).view({n * channels, 1, size_y, 1}),
                     F::Conv2dFuncOptions().groups(n * channels));
  return planes.view({n, channels, height, width});
}

// Sampling coordinates of the output pixels along one axis, [N, out] normalised for grid_sample
// (align_corners = false): output pixel j of a box [start, start + extent) of an input of `in`
// pixels samples start + (j + 0.5) * extent / out - 0.5, clamped to the box (cv::resize and
// torchvision's crop-then-resize never read outside it), mirrored when `flip` is set.
torch::Tensor axis_coordinates(const torch::Tensor& start, const torch::Tensor& extent,
                               const torch::Tensor& flip, int64_t out, int64_t in) {
  const torch::Tensor j = torch::arange(out, start.options()).unsqueeze(0) + 0.5;  // [1, out]
  const torch::Tensor first = start.unsqueeze(1);                                  // [N, 1]
  const torch::Tensor last = first + extent.unsqueeze(1) - 1;
  torch::Tensor pixel = first + j * (extent.unsqueeze(1) / out) - 0.5;  // [N, out]
  pixel = torch::max(torch::min(pixel, last), first);
  if (flip.defined()) pixel = torch::where(flip.unsqueeze(1) > 0.5, pixel.flip({1}), pixel);
  return (2 * pixel + 1) / in - 1;
}

// The views of one group: K views per image of pixels [B, C, H, W] float32 in [0, 1], with
// params[k * B + b]; returns [K, B, C, out_h, out_w] normalised.
torch::Tensor augment_group(const torch::Tensor& pixels,
                            const std::vector<DeviceViewParams>& params, int64_t views,
                            int64_t out_h, int64_t out_w, const AugmentConfig& config) {
  const int64_t batch = pixels.size(0), channels = pixels.size(1);
  const int64_t rows = views * batch;
  SELFSUP_ASSERT(static_cast<int64_t>(params.size()) == rows);
  const bool colour = channels == 3;

  // 1. Host tables.
  std::vector<float> table(static_cast<size_t>(rows * kColumns));
  RowLists lists;
  std::array<std::array<size_t, 4>, 4> jitter_lists{};  // [position][step]
  const bool step_on[4] = {config.brightness > 0, config.contrast > 0,
                           colour && config.saturation > 0, colour && config.hue > 0};
  for (int64_t n = 0; n < rows; ++n) {
    const DeviceViewParams& p = params[static_cast<size_t>(n)];
    float* row = table.data() + n * kColumns;
    row[kLeft] = static_cast<float>(p.left);
    row[kTop] = static_cast<float>(p.top);
    row[kWidth] = static_cast<float>(p.width);
    row[kHeight] = static_cast<float>(p.height);
    row[kFlip] = p.flip ? 1.0f : 0.0f;
    row[kBrightnessFactor] = static_cast<float>(p.brightness);
    row[kContrastFactor] = static_cast<float>(p.contrast);
    row[kSaturationFactor] = static_cast<float>(p.saturation);
    row[kHueShift] = static_cast<float>(p.hue);
    row[kSigma] = static_cast<float>(p.sigma);
  }
  // One pass per list keeps each list contiguous in the packed rows. Steps that are off (a zero
  // range, or saturation and hue on grayscale images) get empty lists: torchvision skips them.
  for (int position = 0; position < 4; ++position) {
    for (int step = 0; step < 4; ++step) {
      jitter_lists[position][step] = lists.open();
      if (!step_on[step]) continue;
      for (int64_t n = 0; n < rows; ++n) {
        const DeviceViewParams& p = params[static_cast<size_t>(n)];
        if (p.jitter && p.order[position] == step) lists.add(n);
      }
    }
  }
  const size_t grayscale_list = lists.open();
  if (colour) {
    for (int64_t n = 0; n < rows; ++n)
      if (params[static_cast<size_t>(n)].grayscale) lists.add(n);
  }
  const size_t blur_list = lists.open();
  for (int64_t n = 0; n < rows; ++n) {
    const DeviceViewParams& p = params[static_cast<size_t>(n)];
    if (p.blur && p.sigma > 0) lists.add(n);  // sigma 0 is the identity
  }
  const size_t solarize_list = lists.open();
  for (int64_t n = 0; n < rows; ++n)
    if (params[static_cast<size_t>(n)].solarize) lists.add(n);

  const torch::Device device = pixels.device();
  const torch::Tensor values = torch::from_blob(table.data(), {rows, kColumns}, torch::kFloat32)
                                   .to(device, /*non_blocking=*/false, /*copy=*/true);
  lists.to(device);

  // 2. Crop, flip and resize: [K, B, h] and [K, B, w] coordinates -> grid [B, K*h, w, 2].
  const torch::Tensor x = axis_coordinates(values.select(1, kLeft), values.select(1, kWidth),
                                           values.select(1, kFlip), out_w, pixels.size(3));
  const torch::Tensor y = axis_coordinates(values.select(1, kTop), values.select(1, kHeight),
                                           torch::Tensor(), out_h, pixels.size(2));
  const torch::Tensor grid =
      torch::stack({x.view({views, batch, 1, out_w}).expand({views, batch, out_h, out_w}),
                    y.view({views, batch, out_h, 1}).expand({views, batch, out_h, out_w})},
                   -1)
          .permute({1, 0, 2, 3, 4})
          .reshape({batch, views * out_h, out_w, 2});
  torch::Tensor out = F::grid_sample(pixels, grid,
                                     F::GridSampleFuncOptions()
                                         .mode(torch::kBilinear)
                                         .padding_mode(torch::kBorder)
                                         .align_corners(false));  // [B, C, K*h, w]
  out = out.view({batch, channels, views, out_h, out_w})
            .permute({2, 0, 1, 3, 4})
            .reshape({rows, channels, out_h, out_w});  // [N, C, h, w], row n = k * B + b

  // 3. Colour jitter in each view's own order.
  for (int position = 0; position < 4; ++position) {
    for (int step = 0; step < 4; ++step) {
      const size_t list = jitter_lists[position][step];
      if (lists.empty(list)) continue;
      apply_to_rows(out, lists.rows(list), [&](const torch::Tensor& sub, const torch::Tensor& r) {
        // [n, 1, 1, 1]: each row's own factor of this step.
        const torch::Tensor f =
            values.select(1, kBrightnessFactor + step).index_select(0, r).view({-1, 1, 1, 1});
        switch (step) {
          case kBrightness:
            return (sub * f).clamp_(0, 1);
          case kContrast:
            return blend(sub, luma(sub).mean({1, 2, 3}, /*keepdim=*/true), f);
          case kSaturation:
            return blend(sub, luma(sub), f);
          default:
            return shift_hue(sub, f);
        }
      });
    }
  }

  // 4. Grayscale, blur, solarization.
  if (!lists.empty(grayscale_list)) {
    apply_to_rows(out, lists.rows(grayscale_list), [](const torch::Tensor& sub, const auto&) {
      return luma(sub).expand_as(sub).contiguous();
    });
  }
  if (!lists.empty(blur_list)) {
    apply_to_rows(out, lists.rows(blur_list), [&](const torch::Tensor& sub, const auto& r) {
      return gaussian_blur(sub.contiguous(), values.select(1, kSigma).index_select(0, r));
    });
  }
  if (!lists.empty(solarize_list)) {
    const double threshold = config.solarize_threshold;
    apply_to_rows(out, lists.rows(solarize_list),
                  [threshold](const torch::Tensor& sub, const auto&) {
                    return torch::where(sub >= threshold, 1.0 - sub, sub);
                  });
  }

  // 5. Normalisation, one value or one per channel.
  const auto per_channel = [&](const std::vector<double>& v) {
    return torch::tensor(v, torch::kFloat64).to(torch::kFloat32).to(device).view({1, -1, 1, 1});
  };
  out = (out - per_channel(config.mean)) / per_channel(config.std);
  return out.view({views, batch, channels, out_h, out_w});
}

}  // namespace

DeviceViewParams draw_device_view_params(const AugmentConfig& config,
                                         const std::vector<double>& crop_scale, int height,
                                         int width, KeyedRng& rng) {
  DeviceViewParams p;
  // torchvision's RandomResizedCrop.get_params: a box covering a fraction in `crop_scale` of the
  // area with an aspect ratio (w/h) log-uniform in crop_ratio; after kCropAttempts misfits, the
  // largest central box whose ratio is within range (the whole image when its ratio is).
  const double area = static_cast<double>(height) * width;
  const double log_ratio_min = std::log(config.crop_ratio[0]);
  const double log_ratio_max = std::log(config.crop_ratio[1]);
  bool found = false;
  for (int attempt = 0; attempt < kCropAttempts && !found; ++attempt) {
    const double target_area = area * rng.uniform(crop_scale[0], crop_scale[1]);
    const double aspect_ratio = std::exp(rng.uniform(log_ratio_min, log_ratio_max));
    const int w = static_cast<int>(std::lround(std::sqrt(target_area * aspect_ratio)));
    const int h = static_cast<int>(std::lround(std::sqrt(target_area / aspect_ratio)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      p.top = static_cast<int>(rng.integer(0, height - h));
      p.left = static_cast<int>(rng.integer(0, width - w));
      p.width = w;
      p.height = h;
      found = true;
    }
  }
  if (!found) {
    const double in_ratio = static_cast<double>(width) / height;
    p.width = width;
    p.height = height;
    if (in_ratio < config.crop_ratio[0]) {
      p.height = std::max(1, static_cast<int>(std::lround(width / config.crop_ratio[0])));
    } else if (in_ratio > config.crop_ratio[1]) {
      p.width = std::max(1, static_cast<int>(std::lround(height * config.crop_ratio[1])));
    }
    p.left = (width - p.width) / 2;
    p.top = (height - p.height) / 2;
  }
  p.flip = rng.bernoulli(config.flip_prob);
  // ColorJitter: each factor uniform in its range, the four steps in a random order.
  p.jitter = rng.bernoulli(config.jitter_prob);
  p.brightness = rng.uniform(1.0 - config.brightness, 1.0 + config.brightness);
  p.contrast = rng.uniform(1.0 - config.contrast, 1.0 + config.contrast);
  p.saturation = rng.uniform(1.0 - config.saturation, 1.0 + config.saturation);
  p.hue = rng.uniform(-config.hue, config.hue);
  for (int i = 3; i > 0; --i) std::swap(p.order[i], p.order[rng.integer(0, i)]);
  p.grayscale = rng.bernoulli(config.grayscale_prob);
  p.blur = rng.bernoulli(config.blur_prob);
  p.sigma = rng.uniform(config.blur_sigma[0], config.blur_sigma[1]);
  p.solarize = rng.bernoulli(config.solarize_prob);
  return p;
}

DeviceAugment::DeviceAugment(AugmentConfig config, int channels)
    : config_(std::move(config)), channels_(channels) {
  check_config(config_, channels_);
}

namespace {

struct ViewSizes {
  int64_t global_h, global_w, local_h, local_w;
};

ViewSizes view_sizes(const AugmentConfig& config, int64_t height, int64_t width) {
  ViewSizes s{};
  s.global_h = config.size > 0 ? config.size : height;
  s.global_w = config.size > 0 ? config.size : width;
  const auto local_side = [&](int64_t global) {
    return config.local_size > 0 ? int64_t{config.local_size}
                                 : std::max<int64_t>(1, std::llround(global * 3.0 / 7.0));
  };
  s.local_h = local_side(s.global_h);
  s.local_w = local_side(s.global_w);
  return s;
}

void check_images(const torch::Tensor& images, int channels) {
  SELFSUP_CHECK(images.defined() && images.dim() == 4 && images.scalar_type() == torch::kUInt8,
                "DeviceAugment expects uint8 images [B, C, H, W]; got ",
                images.defined() ? images.sizes() : torch::IntArrayRef{}, " ",
                images.defined() ? images.scalar_type() : torch::kUInt8);
  SELFSUP_CHECK(images.size(1) == channels, "DeviceAugment was built for ", channels,
                " channels; the images have ", images.size(1));
  SELFSUP_CHECK(images.size(2) > 0 && images.size(3) > 0, "DeviceAugment: empty images ",
                images.sizes());
}

}  // namespace

DeviceViews DeviceAugment::forward(const torch::Tensor& images, uint64_t seed, int64_t epoch,
                                   const torch::Tensor& indices) const {
  check_images(images, channels_);
  const int64_t batch = images.size(0);
  SELFSUP_CHECK(indices.defined() && indices.dim() == 1 && indices.size(0) == batch &&
                    indices.scalar_type() == torch::kInt64,
                "DeviceAugment: indices must be [B] int64 with B = ", batch, " images");
  const int height = static_cast<int>(images.size(2));
  const int width = static_cast<int>(images.size(3));
  const ViewSizes sizes = view_sizes(config_, height, width);
  const int64_t views = config_.views;
  const int64_t local_views = config_.local_views;

  // Parameters on the host, keyed per view: stream v for global views, V + l for local ones.
  const torch::Tensor host_indices = indices.to(torch::kCPU).contiguous();
  const int64_t* index = host_indices.data_ptr<int64_t>();
  const auto draw = [&](int64_t count, int64_t first_stream, const std::vector<double>& scale) {
    std::vector<DeviceViewParams> params;
    params.reserve(static_cast<size_t>(count * batch));
    for (int64_t k = 0; k < count; ++k) {
      for (int64_t b = 0; b < batch; ++b) {
        KeyedRng rng(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index[b]),
                     static_cast<uint64_t>(first_stream + k));
        params.push_back(draw_device_view_params(config_, scale, height, width, rng));
      }
    }
    return params;
  };

  DeviceViews out;
  const auto float_options = images.options().dtype(torch::kFloat32);
  if (batch == 0) {
    out.global = torch::empty({views, 0, channels_, sizes.global_h, sizes.global_w}, float_options);
    if (local_views > 0)
      out.local =
          torch::empty({local_views, 0, channels_, sizes.local_h, sizes.local_w}, float_options);
    return out;
  }
  const torch::Tensor pixels = images.to(torch::kFloat32).div_(255.0);  // [B, C, H, W] in [0, 1]
  out.global = augment_group(pixels, draw(views, 0, config_.crop_scale), views, sizes.global_h,
                             sizes.global_w, config_);
  if (local_views > 0) {
    out.local = augment_group(pixels, draw(local_views, views, config_.local_crop_scale),
                              local_views, sizes.local_h, sizes.local_w, config_);
  }
  return out;
}

torch::Tensor DeviceAugment::plain(const torch::Tensor& images) const {
  check_images(images, channels_);
  const int64_t batch = images.size(0);
  const ViewSizes sizes = view_sizes(config_, images.size(2), images.size(3));
  if (batch == 0) {
    return torch::empty({0, channels_, sizes.global_h, sizes.global_w},
                        images.options().dtype(torch::kFloat32));
  }
  DeviceViewParams whole;  // the whole image, nothing else
  whole.width = static_cast<int>(images.size(3));
  whole.height = static_cast<int>(images.size(2));
  const std::vector<DeviceViewParams> params(static_cast<size_t>(batch), whole);
  const torch::Tensor pixels = images.to(torch::kFloat32).div_(255.0);
  return augment_group(pixels, params, 1, sizes.global_h, sizes.global_w, config_)[0];
}

}  // namespace selfsup
