#!/usr/bin/env python3
"""Load an encoder exported by `selfsup export` into PyTorch, with numpy and torch only.

    selfsup export --run runs/fashion_mnist_simclr          # -> runs/.../encoder.safetensors
    python3 docs/export_example.py runs/fashion_mnist_simclr/encoder.safetensors \
        [--input images.npy] [--out features.npy]

The file is read by hand (no `safetensors` package): an 8-byte little-endian header length N, N
bytes of JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw
tensor bytes. The metadata says which architecture to build (as selfsup's src/models/encoder.cpp
defines it), the input size [C, H, W] and the normalisation the encoder was trained with.

--input: images as .npy, [N, C, H, W] or [N, H, W], uint8 in [0, 255] or float in [0, 1]; they are
normalised as in training. Without --input, a few random images are embedded. The features are the
same as `selfsup embed --encoder FILE --input images.npy --out features.npy` computes (checked by
tests/cli/export_test.sh to 1e-5).
"""

import argparse
import json
import struct

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path):
    """Returns ({name: torch.Tensor}, {metadata key: string})."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    metadata = header.pop("__metadata__", {})
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = body[begin:end]
        if entry["dtype"] == "BF16":  # numpy has no bfloat16: widen the 16 bits to float32
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
            tensor = torch.from_numpy(array.copy()).to(torch.bfloat16)
        else:
            array = np.frombuffer(raw, dtype=DTYPES[entry["dtype"]])
            tensor = torch.from_numpy(array.copy())
        tensors[name] = tensor.reshape(entry["shape"])
    return tensors, metadata


def conv3x3(cin, cout, stride):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class ConvNet(nn.Module):
    """selfsup's small ConvNet: three conv3x3-BN-ReLU stages (width, 2*width, 4*width channels,
    strides stem_stride, 2, 2), adaptive average pooling to pool x pool, flatten (C, H, W order)."""

    def __init__(self, in_channels, width, stem_stride, pool):
        super().__init__()
        self.features = nn.Sequential(
            conv3x3(in_channels, width, stem_stride), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            conv3x3(width, 2 * width, 2), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            conv3x3(2 * width, 4 * width, 2), nn.BatchNorm2d(4 * width), nn.ReLU(inplace=True))
        self.pool = pool

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.features(x), self.pool).flatten(1)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (same parameter names)."""

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18 with the small-image stem (conv1 3x3 stride 1, no max-pool) and no fc:
    global average pooling gives 512 features. The names are torchvision's, so
    torchvision.models.resnet18 with `conv1 = nn.Conv2d(C, 64, 3, 1, 1, bias=False)`,
    `maxpool = nn.Identity()` and `fc = nn.Identity()` should take the same state dict (untested
    here: Debian's python3-torch comes without torchvision)."""

    def __init__(self, in_channels):
        super().__init__()
        self.conv1 = conv3x3(in_channels, 64, 1)
        self.bn1 = nn.BatchNorm2d(64)

        def stage(cin, cout, stride):
            return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))

        self.layer1 = stage(64, 64, 1)
        self.layer2 = stage(64, 128, 2)
        self.layer3 = stage(128, 256, 2)
        self.layer4 = stage(256, 512, 2)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_encoder(path):
    """The encoder of `path` in evaluation mode, and its metadata (architecture etc. parsed)."""
    tensors, metadata = read_safetensors(path)
    architecture = json.loads(metadata["architecture"])
    channels, _, _ = json.loads(metadata["input_size"])
    if architecture["encoder"] == "convnet":
        model = ConvNet(channels, architecture["width"], architecture["stem_stride"],
                        architecture["pool"])
    elif architecture["encoder"] == "resnet18":
        model = ResNet18(channels)
    else:
        raise ValueError(f"unknown architecture {architecture}")
    model.load_state_dict(tensors, strict=True)  # every name and shape must match
    model.eval()
    info = {key: json.loads(metadata[key]) for key in ["architecture", "input_size",
                                                        "normalization", "feature_dim"]}
    info.update({key: metadata[key] for key in ["selfsup_version", "source_checkpoint", "step"]})
    return model, info


def embed(model, info, images):
    """Features [N, feature_dim] of images [N, C, H, W] or [N, H, W] (uint8, or float in [0, 1])."""
    if images.ndim == 3:
        images = images[:, None]
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    channels = x.shape[1]
    mean = torch.tensor(info["normalization"]["mean"], dtype=torch.float32).view(1, channels, 1, 1)
    std = torch.tensor(info["normalization"]["std"], dtype=torch.float32).view(1, channels, 1, 1)
    with torch.no_grad():
        return model((x - mean) / std)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoder", help="encoder.safetensors written by `selfsup export`")
    parser.add_argument("--input", help="images, .npy ([N, C, H, W] or [N, H, W])")
    parser.add_argument("--out", help="write the features here (.npy, float32)")
    args = parser.parse_args()

    model, info = load_encoder(args.encoder)
    print(f"{info['architecture']} from {info['source_checkpoint']} (step {info['step']}, "
          f"selfsup {info['selfsup_version']}): input {info['input_size']}, "
          f"{info['feature_dim']} features")
    if args.input:
        images = np.load(args.input)
    else:
        images = np.random.default_rng(0).integers(0, 256, size=[4] + info["input_size"],
                                                   dtype=np.uint8)
    features = embed(model, info, images)
    print(f"features {list(features.shape)}, first row starts {features[0, :4].tolist()}")
    if args.out:
        np.save(args.out, features.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
