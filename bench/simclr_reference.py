#!/usr/bin/env python3
"""The same SimCLR training step as selfsup, written in Python PyTorch, for throughput ratios.

Reads a resolved selfsup config (config.json of a run), builds the same ConvNet encoder, projection
head, NT-Xent loss and Adam optimizer, and times training steps on a fixed batch of real
Fashion-MNIST images (two views each; the views are random crops made once, so the timing is the
model step only: forward, loss, backward, optimizer). Prints one JSON line with images/s.
"""
import argparse
import gzip
import json
import math
import os
import struct
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx_images(root, count):
    for name in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"):
        path = os.path.join(root, name)
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                _, n, h, w = struct.unpack(">IIII", f.read(16))
                n = min(n, count)
                data = f.read(n * h * w)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(n, 1, h, w)
    raise SystemExit(f"no train-images-idx3-ubyte[.gz] under {root}")


def conv_bn_relu(cin, cout, stride):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ConvNet(nn.Module):
    """selfsup's ConvNet: width, 2*width, 4*width channels; strides stem_stride, 2, 2; pool x pool."""

    def __init__(self, width, pool, stem_stride):
        super().__init__()
        self.features = nn.Sequential(*conv_bn_relu(1, width, stem_stride),
                                      *conv_bn_relu(width, 2 * width, 2),
                                      *conv_bn_relu(2 * width, 4 * width, 2))
        self.pool = pool
        self.feature_dim = 4 * width * pool * pool

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.features(x), self.pool).flatten(1)


class Head(nn.Module):
    def __init__(self, din, hidden, dout):
        super().__init__()
        self.fc1 = nn.Linear(din, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, dout)

    def forward(self, x):
        return self.fc2(F.relu(self.bn1(self.fc1(x))))


def nt_xent(z, views, temperature):
    # z: [B*V, D] image-major (b*V + v), L2-normalised
    n = z.shape[0]
    logits = z @ z.t() / temperature
    eye = torch.eye(n, dtype=torch.bool)
    lse = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1)
    same = (torch.arange(n)[:, None] // views) == (torch.arange(n)[None, :] // views)
    pos_mask = same & ~eye
    pos = (logits * pos_mask).sum(1) / (views - 1)
    return (lse - pos).mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="resolved selfsup config.json")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    parser.add_argument("--batch", type=int, default=0, help="override train.batch_size")
    args = parser.parse_args()
    cfg = json.load(open(args.config))
    torch.set_num_threads(args.threads or os.cpu_count())
    torch.manual_seed(0)
    m = cfg["model"]
    if m["encoder"] != "convnet":
        raise SystemExit("the reference implements the convnet encoder only")
    encoder = ConvNet(m["width"], m["pool"], m.get("stem_stride", 1))
    head = Head(encoder.feature_dim, m["head_hidden"], m["proj_dim"])
    model = nn.Sequential(encoder, head)
    channels_last = m.get("channels_last", False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"],
                           weight_decay=cfg["optim"]["weight_decay"])
    batch = args.batch or cfg["train"]["batch_size"]
    views = cfg["augment"]["views"]
    images = read_idx_images(cfg["data"]["root"], batch).float().div(255)
    x = images.repeat_interleave(views, 0)  # [B*V, 1, H, W] image-major
    x = (x - cfg["augment"]["mean"]) / cfg["augment"]["std"]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    temperature = cfg["loss"]["temperature"]

    def step():
        opt.zero_grad(set_to_none=True)
        z = F.normalize(model(x), dim=1)
        loss = nt_xent(z, views, temperature)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "batch": batch, "views": views, "steps": args.steps,
                      "images_per_s": batch * args.steps / seconds}))


if __name__ == "__main__":
    main()
