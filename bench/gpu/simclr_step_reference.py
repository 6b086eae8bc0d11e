#!/usr/bin/env python3
"""One SimCLR training step in plain PyTorch, timed: the reference that selfsup's step benchmark
is compared against (bench/gpu/step_bench.sh runs both on the same machine).

Model: a torchvision-layout ResNet-18/34/50 encoder (fc removed, global average pool) and an MLP
projection head; loss: NT-Xent over two views in fp32; optimizer: SGD with momentum and LARS.
Inputs are fixed random tensors on the device, so the figure is the step alone (no data loading).
torchvision is not needed: the GPU machine may not have it.

Modes:
  (default)    time --steps training steps after --warmup, print a summary (or one JSON line)
  --self-test  CPU only, no training: FLOP counts against the published ResNet figures, NT-Xent
               against a naive loop, the vectorised LARS against a per-tensor loop
  --peak-bf16  the device's dense bf16 matmul rate, the denominator of model FLOP utilisation

Runs on PyTorch 1.13 (Debian, CPU) and 2.x (CUDA): only APIs present in both are used, and
torch.compile only when it exists.
"""
import argparse
import contextlib
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VIEWS = 2  # SimCLR: every image is seen as two views; the step runs on 2*batch views

# ----------------------------------------------------------------------------------------- model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # ResNet v1.5 (torchvision): the stride sits on the 3x3 convolution, not the first 1x1.
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


LAYOUTS = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNetEncoder(nn.Module):
    """torchvision's ResNet without fc: [N,3,H,W] -> [N, 512 or 2048] after global average pool."""

    def __init__(self, name, stem):
        super().__init__()
        block, counts = LAYOUTS[name]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:  # "small" (CIFAR-sized images): keep the resolution, as SimCLR does for 32x32
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = 64
        self.layer1 = self._layer(block, 64, counts[0], 1)
        self.layer2 = self._layer(block, 128, counts[1], 2)
        self.layer3 = self._layer(block, 256, counts[2], 2)
        self.layer4 = self._layer(block, 512, counts[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 512 * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _layer(self, block, planes, count, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        blocks = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes) for _ in range(1, count)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def projection_head(in_dim, hidden, out_dim, layers):
    """Linear(no bias) -> BN -> ReLU, (layers-1) times, then Linear(hidden, out_dim) with bias:
    with layers=2 this is selfsup's ProjectionHead (fc1, bn1, fc2)."""
    if layers < 1:
        raise ValueError("--head-layers must be >= 1")
    mods, dim = [], in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        dim = hidden
    mods.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*mods)


class SimCLRModel(nn.Module):
    def __init__(self, name, stem, head_layers=2, head_hidden=2048, proj_dim=128):
        super().__init__()
        self.encoder = ResNetEncoder(name, stem)
        self.head = projection_head(self.encoder.feature_dim, head_hidden, proj_dim, head_layers)

    def forward(self, x):
        return self.head(self.encoder(x))


# ------------------------------------------------------------------------------------------ loss


def nt_xent(z, temperature):
    """NT-Xent (InfoNCE) over 2N projections, rows i and i+N being two views of one image. fp32
    whatever the autocast precision: bf16 logits divided by 0.1 lose too much to be the same loss."""
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    logits = (z @ z.t()) / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = (torch.arange(n, device=z.device) + n // 2) % n
    return F.cross_entropy(logits, targets)


# ------------------------------------------------------------------------------------- optimizer


def _norms(tensors):
    if hasattr(torch, "_foreach_norm"):
        return list(torch._foreach_norm(tensors))
    return [t.norm() for t in tensors]


class LARS(torch.optim.Optimizer):
    """SGD with momentum where each weight's update is scaled by the trust ratio
    eta * ||w|| / ||g + wd * w|| (You et al.; SimCLR's recipe). Groups with lars=False (batch-norm
    parameters and biases) get plain momentum SGD: no weight decay, no adaptation.
    The foreach kernels and the on-device trust ratios keep the step free of host syncs and of
    per-tensor Python overhead, so the reference is not slowed by its own optimizer."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=1e-6, trust_coefficient=0.001):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]  # overwritten in place: zero_grad follows anyway
            if group["lars"]:
                if group["weight_decay"]:
                    torch._foreach_add_(grads, params, alpha=group["weight_decay"])
                p_norm = torch.stack(_norms(params))
                g_norm = torch.stack(_norms(grads))
                trust = torch.where((p_norm > 0) & (g_norm > 0),
                                    group["trust_coefficient"] * p_norm / g_norm,
                                    torch.ones_like(p_norm))
                for g, t in zip(grads, trust.unbind()):
                    g.mul_(t)
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            torch._foreach_add_(params, bufs, alpha=-group["lr"])


def lars_param_groups(model):
    adapted, plain = [], []
    for p in model.parameters():
        # 1-d parameters are exactly the batch-norm weights/biases and the Linear biases.
        (plain if p.ndim <= 1 else adapted).append(p)
    return [{"params": adapted, "lars": True},
            {"params": plain, "lars": False, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------- FLOPs


def count_macs(model, image_size):
    """Forward multiply-accumulates for one image (one view), by module: {"encoder": .., "head": ..}.
    Convolutions: output elements * in_channels/groups * kh * kw; Linear: in * out per row.
    Batch norm, ReLU, pooling, additions and bias are not counted (the usual convention, the one
    behind ResNet-50's published 4.1 G). Runs a batch of 1 on the CPU in eval mode."""
    totals = {"encoder": 0, "head": 0}
    hooks = []

    def hook_for(part):
        def hook(module, inputs, output):
            per_sample = output.numel() // output.shape[0]
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                totals[part] += per_sample * (module.in_channels // module.groups) * kh * kw
            else:
                totals[part] += per_sample * module.in_features
        return hook

    for part in totals:
        for m in getattr(model, part).modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                hooks.append(m.register_forward_hook(hook_for(part)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return totals


def train_flops_per_image(macs_per_view):
    # 2 FLOPs per MAC; backward ~ 2x forward (grad wrt input + grad wrt weights); 2 views per image.
    return 2 * macs_per_view * 3 * VIEWS


# ---------------------------------------------------------------------------------------- timing


def autocast_context(device, precision):
    if precision == "bf16":
        # torch.autocast(device_type, dtype) has this signature in 1.10+ and 2.x alike.
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class StepTimer:
    """Per-step milliseconds: CUDA events on the GPU (no sync inside the loop; they are read after
    one synchronize at the end), perf_counter on the CPU (where ops are synchronous)."""

    def __init__(self, device):
        self.cuda = device == "cuda"
        self.method = "cuda_events" if self.cuda else "perf_counter"
        self.marks = []

    def start(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def stop(self, begin):
        self.marks.append((begin, self.start()))

    def milliseconds(self):
        if self.cuda:
            torch.cuda.synchronize()
            return [b.elapsed_time(e) for b, e in self.marks]
        return [(e - b) * 1e3 for b, e in self.marks]


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def run_benchmark(args):
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("simclr_step_reference: --device cuda but torch.cuda.is_available() is False")
    torch.manual_seed(0)
    if device == "cuda":
        # Autotuned convolution algorithms; the C++ side should set the same
        # (at::globalContext().setBenchmarkCuDNN(true)) for a like-for-like comparison.
        torch.backends.cudnn.benchmark = args.cudnn_benchmark

    model = SimCLRModel(args.model, args.stem, args.head_layers, args.head_hidden, args.proj_dim)
    macs = count_macs(model, args.image_size)  # before the move: counted on the CPU, batch 1
    macs_per_view = macs["encoder"] + macs["head"]
    flops_train = train_flops_per_image(macs_per_view)

    model = model.to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    model.train()
    lr = 0.3 * args.batch / 256  # SimCLR's LARS scaling; the value does not change the timing
    optimizer = LARS(lars_param_groups(model), lr=lr, momentum=0.9, weight_decay=1e-6,
                     trust_coefficient=0.001)

    compiled = False
    if args.compile:
        if hasattr(torch, "compile"):
            model = torch.compile(model)
            compiled = True
        else:
            print(f"simclr_step_reference: torch {torch.__version__} has no torch.compile; "
                  "running eager", file=sys.stderr)

    views = torch.randn(VIEWS * args.batch, 3, args.image_size, args.image_size, device=device)
    views = views.contiguous(memory_format=memory_format)

    def step():
        with autocast_context(device, args.precision):
            z = model(views)
        loss = nt_xent(z, args.temperature)  # outside autocast: fp32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        loss = step()
    sync(device)

    timer = StepTimer(device)
    wall_start = time.perf_counter()
    for _ in range(args.steps):
        begin = timer.start()
        loss = step()
        timer.stop(begin)
    sync(device)
    wall_ms = (time.perf_counter() - wall_start) * 1e3
    step_ms = timer.milliseconds()
    median_ms = statistics.median(step_ms)
    final_loss = float(loss.detach())

    peak_mem = None
    peak_reserved = None
    gpu_name = None
    if device == "cuda":
        peak_mem = torch.cuda.max_memory_allocated() / 2**30
        peak_reserved = torch.cuda.max_memory_reserved() / 2**30
        gpu_name = torch.cuda.get_device_name()

    return {
        "impl": "pytorch",
        "model": args.model,
        "stem": args.stem,
        "image_size": args.image_size,
        "batch": args.batch,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "device": device,
        "images_per_s": args.batch * 1e3 / median_ms,
        "step_ms_median": median_ms,
        "peak_mem_gib": peak_mem,
        "torch_version": torch.__version__,
        "gpu_name": gpu_name,
        "flops_per_image_train": flops_train,
        # extras, for reading the figures
        "views_per_image": VIEWS,
        "macs_per_view_forward": macs_per_view,
        "macs_encoder_forward": macs["encoder"],
        "macs_head_forward": macs["head"],
        "step_ms_mean": wall_ms / args.steps,
        "timing": timer.method,
        "steps": args.steps,
        "warmup": args.warmup,
        "head_layers": args.head_layers,
        "head_hidden": args.head_hidden,
        "proj_dim": args.proj_dim,
        "temperature": args.temperature,
        "cudnn_benchmark": bool(args.cudnn_benchmark and device == "cuda"),
        "compiled": compiled,
        "peak_reserved_gib": peak_reserved,
        "final_loss": final_loss,
    }


def measure_peak_bf16(args):
    """Dense bf16 matmul rate: median over timed repetitions of an n x n x n product (2 n^3
    FLOPs), after warmups. This is what the MFU figures divide by, rather than a datasheet number."""
    device, n = args.device, args.peak_size
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("simclr_step_reference: --peak-bf16 on cuda but no GPU is visible")
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(args.peak_warmup):
        torch.matmul(a, b, out=c)
    sync(device)
    timer = StepTimer(device)
    for _ in range(args.peak_iters):
        begin = timer.start()
        torch.matmul(a, b, out=c)
        timer.stop(begin)
    ms = statistics.median(timer.milliseconds())
    return {
        "impl": "peak",
        "bf16_tflops": 2 * n**3 / (ms * 1e-3) / 1e12,
        "matmul_size": n,
        "matmul_ms_median": ms,
        "device": device,
        "gpu_name": torch.cuda.get_device_name() if device == "cuda" else None,
        "torch_version": torch.__version__,
    }


# ------------------------------------------------------------------------------------- self-test


def self_test():
    failures = []

    def check(ok, message):
        print(("ok   " if ok else "FAIL ") + message)
        if not ok:
            failures.append(message)

    # Published forward MACs of the torchvision encoders (fc excluded: its 0.5-2 M do not matter)
    # and of the CIFAR-stem ResNet-18 commonly quoted for SimCLR on 32x32.
    expected = [("resnet50", "imagenet", 224, 4.09e9), ("resnet34", "imagenet", 224, 3.66e9),
                ("resnet18", "imagenet", 224, 1.82e9), ("resnet18", "small", 32, 0.56e9)]
    for name, stem, size, want in expected:
        model = SimCLRModel(name, stem)
        macs = count_macs(model, size)
        feat = model.encoder.feature_dim
        head_want = feat * 2048 + 2048 * 128
        rel = macs["encoder"] / want - 1
        check(abs(rel) < 0.03,
              f"{name} {stem} {size}: encoder {macs['encoder'] / 1e9:.4f} GMACs "
              f"(want {want / 1e9:.2f} +-3%, off {rel * 100:+.2f}%), head {macs['head'] / 1e6:.3f} M, "
              f"train {train_flops_per_image(macs['encoder'] + macs['head']) / 1e9:.2f} GFLOP/image")
        check(macs["head"] == head_want, f"{name} head MACs {macs['head']} == {head_want}")
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, 3, size, size))
        check(tuple(out.shape) == (2, 128), f"{name} {stem} output shape {tuple(out.shape)}")

    # Head layouts: 1 layer is a single Linear; 3 layers add a second hidden block.
    check(len(projection_head(512, 64, 16, 1)) == 1, "head-layers 1: one Linear")
    check(len(projection_head(512, 64, 16, 3)) == 7, "head-layers 3: 2 x (Linear, BN, ReLU) + Linear")

    # NT-Xent against the textbook sum, on fp32 and on bf16 input (the loss casts to fp32).
    torch.manual_seed(1)
    z = torch.randn(8, 16)
    zn = F.normalize(z, dim=1)
    n, t = 8, 0.1
    naive = 0.0
    for i in range(n):
        j = (i + n // 2) % n
        denom = sum(math.exp(float(zn[i] @ zn[k]) / t) for k in range(n) if k != i)
        naive += -math.log(math.exp(float(zn[i] @ zn[j]) / t) / denom)
    naive /= n
    got = float(nt_xent(z, t))
    check(abs(got - naive) < 1e-4 * max(1.0, abs(naive)), f"NT-Xent {got:.6f} == naive {naive:.6f}")
    check(nt_xent(z.bfloat16(), t).dtype == torch.float32, "NT-Xent of bf16 projections is fp32")

    # LARS (foreach, on-device trust ratios) against a per-tensor loop, two steps.
    torch.manual_seed(2)
    shapes = [(6, 4), (5,), (3, 3, 2, 2), (7,)]
    ref = [torch.randn(s) for s in shapes] + [torch.zeros(4, 4)]  # a zero weight: trust ratio 1
    params = [p.clone().requires_grad_() for p in ref]
    lr, m, wd, eta = 0.5, 0.9, 1e-2, 0.001
    opt = LARS([{"params": [p for p in params if p.ndim > 1], "lars": True},
                {"params": [p for p in params if p.ndim <= 1], "lars": False,
                 "weight_decay": 0.0}], lr=lr, momentum=m, weight_decay=wd, trust_coefficient=eta)
    bufs = [torch.zeros_like(p) for p in ref]
    for _ in range(2):
        grads = [torch.randn(p.shape) for p in ref]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for k, (p, g) in enumerate(zip(ref, grads)):
            if p.ndim > 1:
                g = g + wd * p
                pn, gn = float(p.norm()), float(g.norm())
                g = g * (eta * pn / gn if pn > 0 and gn > 0 else 1.0)
            bufs[k] = m * bufs[k] + g
            ref[k] = p - lr * bufs[k]
    err = max(float((p.detach() - r).abs().max()) for p, r in zip(params, ref))
    check(err < 1e-6, f"LARS matches a per-tensor loop (max error {err:.2e})")
    groups = lars_param_groups(SimCLRModel("resnet18", "small"))
    check(all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"]),
          f"LARS groups: {len(groups[0]['params'])} adapted weights, "
          f"{len(groups[1]['params'])} batch-norm/bias parameters excluded")

    print("self-test: " + ("passed" if not failures else f"{len(failures)} FAILED"))
    return 0 if not failures else 1


# ------------------------------------------------------------------------------------------- cli


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(LAYOUTS), default="resnet50")
    p.add_argument("--stem", choices=["imagenet", "small"], default="imagenet")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=256, help="images per GPU; the step sees 2x views")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    # Both spellings by hand: argparse.BooleanOptionalAction needs Python 3.9.
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=True)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--head-layers", type=int, default=2)
    p.add_argument("--head-hidden", type=int, default=2048)
    p.add_argument("--proj-dim", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (2.x only)")
    p.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false",
                   default=True, help="do not autotune convolutions (on by default)")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a summary")
    p.add_argument("--self-test", action="store_true", help="CPU checks, no training")
    p.add_argument("--peak-bf16", action="store_true", help="measure the dense bf16 matmul rate")
    p.add_argument("--peak-size", type=int, default=8192)
    p.add_argument("--peak-warmup", type=int, default=3)
    p.add_argument("--peak-iters", type=int, default=10)
    args = p.parse_args(argv)
    for name in ("image_size", "batch", "steps", "head_layers", "head_hidden", "proj_dim",
                 "peak_size", "peak_iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.peak_warmup < 0:
        p.error("--warmup and --peak-warmup must be >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        return self_test()
    if args.peak_bf16:
        result = measure_peak_bf16(args)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"peak dense bf16 matmul ({args.peak_size}^3) on {result['gpu_name'] or 'cpu'}: "
                  f"{result['bf16_tflops']:.1f} TFLOP/s")
        return 0
    result = run_benchmark(args)
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        mem = "n/a" if result["peak_mem_gib"] is None else f"{result['peak_mem_gib']:.2f} GiB"
        print(f"pytorch {args.model}/{args.stem} {args.image_size}px batch {args.batch} "
              f"{args.precision} channels_last={args.channels_last} on {args.device}: "
              f"{result['images_per_s']:.1f} images/s (median step {result['step_ms_median']:.2f} ms, "
              f"{result['timing']}), peak memory {mem}, "
              f"{result['flops_per_image_train'] / 1e9:.2f} GFLOP/image trained "
              f"({result['macs_per_view_forward'] / 1e9:.3f} GMACs forward per view), "
              f"loss {result['final_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
