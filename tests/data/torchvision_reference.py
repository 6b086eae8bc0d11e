#!/usr/bin/env python3
"""torchvision reference for tests/data/augment_test.cpp.

Applies torchvision.transforms.functional steps with fixed parameters to float32 images and prints
the results, so that the C++ augmentation can be compared with them.

Usage: torchvision_reference.py CASES.json
  CASES.json: {"cases": [{"image": [C][H][W] floats in [0, 1], "steps": [STEP, ...]}, ...]}
  STEP: ["brightness", f] | ["contrast", f] | ["saturation", f] | ["hue", f] | ["grayscale"]
        | ["solarize", threshold] | ["blur", kernel_size, sigma]
Prints {"results": [[C][H][W] floats, ...]} on stdout. Exits 77 when torch or torchvision is
missing (Debian: python3-torchvision), which the test reports as skipped.

Only torchvision's tensor functions are loaded (the module torchvision.transforms.functional
dispatches to for tensors), by file: importing the whole torchvision package (datasets, io, the C
extension) would double the start-up time of the test.
"""
import importlib.util
import json
import os
import sys


def load_functional_tensor():
    spec = importlib.util.find_spec("torchvision")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "transforms")
    for name in ("_functional_tensor.py", "functional_tensor.py"):  # renamed in torchvision 0.15
        path = os.path.join(folder, name)
        if os.path.exists(path):
            module_spec = importlib.util.spec_from_file_location("functional_tensor", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return module
    return None


try:
    import torch
except ImportError as error:
    print(f"torchvision_reference.py: {error}", file=sys.stderr)
    sys.exit(77)
F = load_functional_tensor()
if F is None:
    print("torchvision_reference.py: no torchvision", file=sys.stderr)
    sys.exit(77)


def apply(image, step):
    name, args = step[0], step[1:]
    if name == "brightness":
        return F.adjust_brightness(image, args[0])
    if name == "contrast":
        return F.adjust_contrast(image, args[0])
    if name == "saturation":
        return F.adjust_saturation(image, args[0])
    if name == "hue":
        return F.adjust_hue(image, args[0])
    if name == "grayscale":
        return F.rgb_to_grayscale(image, num_output_channels=image.shape[0])
    if name == "solarize":
        return F.solarize(image, args[0])
    if name == "blur":
        return F.gaussian_blur(image, [args[0], args[0]], [args[1], args[1]])
    raise ValueError(f"unknown step {name}")


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)["cases"]
    results = []
    for case in cases:
        image = torch.tensor(case["image"], dtype=torch.float32)
        for step in case["steps"]:
            image = apply(image, step)
        results.append(image.tolist())
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
