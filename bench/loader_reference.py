#!/usr/bin/env python3
"""The Python side of bench/loader.sh: the image folder it measures, and torchvision's loader on it.

  loader_reference.py make  --root DIR --count N --side S [--classes K] [--seed X]
      writes N JPEG files of S x S pixels as DIR/train/<class>/<n>.jpg: smooth coloured blobs and
      stripes over a gradient, with some noise (so that they decode and compress like photographs
      rather than flat colour), quality 90.

  loader_reference.py bench --case ROOT SIZE BLUR [--case ...] --workers W [W ...]
                            [--recipes rgb gray] [--batch B] [--epochs E]
      for each case and worker count (one process, so torch is imported once): images/s of
      torchvision's ImageFolder + DataLoader on ROOT/train with the SimCLR recipe for 2 views
      (RandomResizedCrop(SIZE, scale=(0.2, 1)), flip 0.5, ColorJitter(0.4, 0.4, 0.4, 0.1) with p
      0.8, grayscale 0.2, Gaussian blur with p BLUR and a kernel of about 10 % of SIZE, ToTensor,
      Normalize), num_workers = W, torch.set_num_threads(1) in every worker; one warm-up epoch,
      then E timed epochs. Prints one JSON line per run. Recipe "gray": the same on the image
      converted to grayscale after decoding, with brightness and contrast jitter only (what
      selfsup's CPU path does on grayscale images).

Uses Debian's python3-torch, python3-torchvision, python3-pil and numpy only.
"""

import argparse
import json
import os
import time

import numpy as np


def make(args):
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    side = args.side
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for n in range(args.count):
        label = n % args.classes
        folder = os.path.join(args.root, "train", f"class{label:02d}")
        os.makedirs(folder, exist_ok=True)
        base = rng.uniform(0, 255, size=3)
        slope = rng.uniform(-120, 120, size=(2, 3))
        image = base + x[..., None] * slope[0] + y[..., None] * slope[1]
        for _ in range(4):  # blobs
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            mask = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
            image += mask[..., None] * rng.uniform(-150, 150, size=3)
        frequency = 2 + 4 * label  # stripes whose frequency depends on the class
        image += 30 * np.sin(2 * np.pi * frequency * (x + y))[..., None]
        image += rng.normal(0, 8, size=image.shape)
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(os.path.join(folder, f"{n:06d}.jpg"), quality=90)


def blur_kernel_size(side):
    """Odd, about 10 % of the side, at least 3 (the same rule as selfsup)."""
    size = int(round(0.1 * side))
    if size % 2 == 0:
        size += 1
    return max(3, size)


def bench(args):
    for root, size, blur_prob in args.case:
        for workers in args.workers:
            for recipe in args.recipes:
                bench_one(root, int(size), float(blur_prob), workers, recipe, args)


def bench_one(root, size, blur_prob, workers, recipe_name, args):
    import torch
    import torchvision
    from torchvision import transforms as T

    torch.set_num_threads(1)
    gray = recipe_name == "gray"
    steps = [T.Grayscale(1)] if gray else []
    steps += [
        T.RandomResizedCrop(size, scale=(0.2, 1.0)),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.0, 0.0) if gray else
                       T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
    ]
    if not gray:
        steps.append(T.RandomGrayscale(0.2))
    if blur_prob > 0:
        steps.append(T.RandomApply([T.GaussianBlur(blur_kernel_size(size), (0.1, 2.0))],
                                   p=blur_prob))
    channels = 1 if gray else 3
    steps += [T.ToTensor(), T.Normalize((0.5,) * channels, (0.25,) * channels)]
    recipe = T.Compose(steps)

    def two_views(image):
        return torch.stack([recipe(image), recipe(image)])

    dataset = torchvision.datasets.ImageFolder(os.path.join(root, "train"), two_views)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, shuffle=True, num_workers=workers,
        worker_init_fn=lambda _: torch.set_num_threads(1), persistent_workers=True,
        prefetch_factor=2)
    images = 0
    checksum = 0.0
    for epoch in range(args.epochs + 1):  # epoch 0 warms up (and starts the workers)
        if epoch == 1:
            start = time.perf_counter()
        for views, _ in loader:
            if epoch > 0:
                images += views.shape[0]
            checksum += float(views[0, 0, 0, 0, 0])
    seconds = time.perf_counter() - start
    del loader  # stops the persistent workers before the next run
    print(json.dumps({"impl": "torchvision", "channels": channels,
                      "recipe": ("grayscale: crop, flip, brightness/contrast jitter, blur (PIL)"
                                 if gray else "RGB: full recipe (PIL)"),
                      "size": size, "workers": workers, "images": images,
                      "seconds": seconds, "images_per_s": images / seconds,
                      "checksum": checksum, "torch": torch.__version__,
                      "torchvision": torchvision.__version__}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write the JPEG image folder")
    m.add_argument("--root", required=True)
    m.add_argument("--count", type=int, required=True)
    m.add_argument("--side", type=int, required=True)
    m.add_argument("--classes", type=int, default=4)
    m.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bench", help="time torchvision's loader on the folder")
    b.add_argument("--case", nargs=3, action="append", required=True,
                   metavar=("ROOT", "SIZE", "BLUR"), help="image folder, view side, blur prob")
    b.add_argument("--workers", type=int, nargs="+", required=True)
    b.add_argument("--recipes", nargs="+", choices=("rgb", "gray"), default=["rgb"])
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    make(args) if args.command == "make" else bench(args)


if __name__ == "__main__":
    main()
