"""The GPU check: one short script for a machine with a GPU (a few minutes on an H200).

1. The probes are the same bits on the GPU as on the CPU (pure integer arithmetic).
2. Curvature scores on the GPU equal the CPU's to float32 rounding (same probes, TF32 off).
3. Measured throughput against the FLOP-count estimates of bench/host_overhead.py: a CIFAR-10-size
   training epoch (ResNet18 CIFAR form, batch 128, images held on the device, bf16 autocast), the same
   epoch recording the training pass's logits (`baselines.statistics: training_pass`), the eval pass
   over the training set in float32 and in bf16 autocast (`eval_pass`) and scoring (n = 10, batch
   512), and the same at ImageNet size (torchvision ResNet18, 224 x 224).
4. `curvature.precision`: samples/s of the float32 finite difference and of the bf16 difference
   propagation on ResNet18 CIFAR (n = 10, batch 512), each one's Spearman against float64 on the
   GPU, and the speed-up, beside bench/precision.py's estimate (6.6x at the data sheet's rates).
   This decides whether bf16 becomes the default on GPUs.
5. The device's start-up in a fresh process (CUDA context, first convolution): the part of a scoring
   job's fixed cost that bench/job_startup.py cannot measure without a GPU.

    python bench/gpu_check.py                      # on the GPU machine
    python bench/gpu_check.py --device cpu --quick # a smoke run of the script itself
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

from memorization_curvature import models, training
from memorization_curvature.batches import DeviceImages, ImageSet, LabelledBatches
from memorization_curvature.curvature import curvature_scores, rademacher_probes

from host_overhead import H200_BF16, H200_FP32, H200_TF32, SIZES, flops_per_sample  # the estimates it compares with


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_probes(device: torch.device) -> None:
    for shape in ((3, 32, 32), (3, 224, 224)):
        ids = torch.tensor([0, 1, 7, 49_999, 1_281_166, 2**33 + 1])
        cpu = rademacher_probes(ids, 10, shape, seed=3)
        other = rademacher_probes(ids.to(device), 10, shape, seed=3).cpu()
        assert torch.equal(cpu, other), f"probes differ between cpu and {device} at shape {shape}"
    print(f"probes: identical bits on cpu and {device}")


def check_scores(device: torch.device) -> None:
    torch.manual_seed(0)
    model = models.build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    x, y = torch.randn(512, 1, 8, 8), torch.randint(0, 10, (512,))
    cpu = curvature_scores(model, x, y, n_probes=10, device="cpu")
    other = curvature_scores(model.to(device), x, y, n_probes=10, device=device)
    model.cpu()
    relative = float(((other - cpu).abs() / cpu.abs().clamp_min(1e-12)).median())
    ranks = lambda s: s.argsort().argsort().double()  # noqa: E731
    spearman = float(np.corrcoef(ranks(cpu), ranks(other))[0, 1])
    print(f"scores on {device} vs cpu: median relative difference {relative:.2e}, Spearman {spearman:.6f}")
    assert spearman > 0.999, spearman


def throughput(name: str, device: torch.device, quick: bool) -> list[str]:
    size = SIZES[name]
    model_name, shape, classes, batch, shift = (size[k] for k in ("model", "shape", "classes", "train_batch", "shift"))
    flops = flops_per_sample(size)
    train_flops, score_flops = flops["training"], flops["scoring"]
    samples = {"CIFAR-10": 50_000, "ImageNet": 5_120}[name] // (50 if quick else 1)
    pixels = np.random.default_rng(0).integers(0, 256, (samples, *shape), dtype=np.uint8)
    images = ImageSet(pixels, np.full(3, 120.0), np.full(3, 60.0), 255.0)
    labels = torch.randint(0, classes, (samples,), device=device)
    model = models.build_model(model_name, in_channels=3, num_classes=classes, image_size=shape[1])
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    config = training.TrainConfig(epochs=1, batch_size=batch, lr=0.1, momentum=0.9, weight_decay=1e-4,
                                  lr_milestones=(0.6, 0.8), lr_gamma=0.1, augment_shift=shift, augment_flip=True)
    train_x = DeviceImages(images, device, "device")
    optimizer = training.sgd(model, config, device)
    generator = torch.Generator().manual_seed(0)
    training.train_epoch(model, optimizer, train_x, labels, config, generator, memory_format)  # warm-up
    sync(device)
    started = time.perf_counter()
    training.train_epoch(model, optimizer, train_x, labels, config, generator, memory_format)
    sync(device)
    train_rate = samples / (time.perf_counter() - started)
    # the same epoch recording each sample's logits from its step (`baselines.statistics: training_pass`)
    started = time.perf_counter()
    _, recorded = training.train_epoch(model, optimizer, train_x, labels, config, generator, memory_format,
                                       record_logits=True)
    recorded.cpu()  # the one read-back of an epoch
    sync(device)
    recording_rate = samples / (time.perf_counter() - started)
    # the evaluation pass over the training set (`baselines.statistics: eval_pass`), float32 and bf16 autocast
    eval_rates = {}
    for bf16 in (False, True):
        training.predict_logits(model, train_x, bf16=bf16, memory_format=memory_format)  # warm-up
        sync(device)
        started = time.perf_counter()
        training.predict_logits(model, train_x, bf16=bf16, memory_format=memory_format)
        sync(device)
        eval_rates[bf16] = samples / (time.perf_counter() - started)
    score_n = min(samples, 4096 if name == "CIFAR-10" else 512) // (8 if quick else 1)
    data = LabelledBatches(images.subset(np.arange(score_n)), np.zeros(score_n, dtype=np.int64), 512 if
                           name == "CIFAR-10" else 128, device=device)
    curvature_scores(model, data, n_probes=10, device=device)  # warm-up
    sync(device)
    started = time.perf_counter()
    curvature_scores(model, data, n_probes=10, device=device)
    sync(device)
    score_rate = score_n / (time.perf_counter() - started)
    forward_flops = flops["forward"]
    return [f"| {name} | training epoch ({samples} samples, batch {batch}) | {train_rate:,.0f} | "
            f"{H200_BF16 / 2 / train_flops:,.0f} | {train_rate * train_flops / 1e12:.1f} |",
            f"| {name} | training epoch recording the training pass's logits | {recording_rate:,.0f} | "
            f"{H200_BF16 / 2 / train_flops:,.0f} | {recording_rate * train_flops / 1e12:.1f} |",
            f"| {name} | eval pass, float32 (TF32 convolutions, cuDNN's default; {samples} samples) | "
            f"{eval_rates[False]:,.0f} | {H200_TF32 / 2 / forward_flops:,.0f} | {eval_rates[False] * forward_flops / 1e12:.1f} |",
            f"| {name} | eval pass, bf16 autocast | {eval_rates[True]:,.0f} | "
            f"{H200_BF16 / 2 / forward_flops:,.0f} | {eval_rates[True] * forward_flops / 1e12:.1f} |",
            f"| {name} | scoring, n = 10 ({score_n} samples) | {score_rate:,.0f} | "
            f"{H200_FP32 / 2 / score_flops:,.0f} | {score_rate * score_flops / 1e12:.1f} |"]


def check_precision(device: torch.device, quick: bool) -> list[str]:
    """float32 finite difference against bf16 difference propagation: speed and agreement with float64."""
    torch.manual_seed(0)
    model = models.build_model("resnet18_cifar", in_channels=3, num_classes=10, image_size=32)
    with torch.no_grad():  # BatchNorm statistics of real batches, so the folded BatchNorm is not the identity
        model.train()(torch.randn(256, 3, 32, 32))
    model.to(device)
    samples, compared, batch = (32, 16, 16) if quick else (8192, 512, 512)
    x, y = torch.randn(samples, 3, 32, 32, device=device), torch.randint(0, 10, (samples,), device=device)
    reference = curvature_scores(model.double(), x[:compared].double(), y[:compared], n_probes=10, device=device)
    model.float()
    rows = []
    ranks = lambda s: s.argsort().argsort().double()  # noqa: E731
    rates = {}
    for precision in ("float32", "bf16"):
        scores = curvature_scores(model, x[:compared], y[:compared], n_probes=10, device=device, precision=precision)
        spearman = float(np.corrcoef(ranks(scores), ranks(reference))[0, 1])
        curvature_scores(model, x[:batch], y[:batch], n_probes=10, batch_size=batch, device=device,
                         precision=precision)  # warm-up
        sync(device)
        started = time.perf_counter()
        curvature_scores(model, x, y, n_probes=10, batch_size=batch, device=device, precision=precision)
        sync(device)
        rates[precision] = samples / (time.perf_counter() - started)
        rows.append(f"| {precision} | {rates[precision]:,.0f} | {spearman:.6f} |")
    rows.append(f"| speed-up of bf16 | {rates['bf16'] / rates['float32']:.2f}x | |")
    return rows


DEVICE_START = """
import sys, time, torch
device = torch.device(sys.argv[1])
started = time.perf_counter()
x = torch.zeros(1, 3, 32, 32, device=device)
torch.nn.functional.conv2d(x, torch.zeros(8, 3, 3, 3, device=device)).sum().item()
print(time.perf_counter() - started)
"""


def device_start(device: torch.device, repeats: int = 3) -> float:
    """Median seconds from `import torch` done to a first convolution's result, in fresh processes."""
    times = [float(subprocess.run([sys.executable, "-c", DEVICE_START, str(device)], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(repeats)]
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(torch.cuda.get_device_name(device), "torch", torch.__version__)
    check_probes(device)
    check_scores(device)
    rows = [row for name in SIZES for row in throughput(name, device, args.quick)]
    print(f"\n| size | work | measured samples/s on {device} | H200 estimate at 50 % of the data sheet | "
          "achieved TFLOP/s |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n| curvature.precision (ResNet18 CIFAR, random weights, n = 10) | measured samples/s on "
          f"{device} | Spearman vs float64 |")
    print("|---|---|---|")
    print("\n".join(check_precision(device, args.quick)))
    print(f"\n{device} start-up in a fresh process (context, first convolution), median of 3: "
          f"{device_start(device):.2f} s, to add to bench/job_startup.py's fixed cost of a scoring job")


if __name__ == "__main__":
    main()
