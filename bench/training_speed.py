"""Benchmark: one ResNet18 training epoch and one scoring pass on CIFAR-shaped data, and the
extrapolated time of the paper's full CIFAR-10 run (200 epochs, a scoring pass after each).

It times, in one process on the same device:

1. our training loop (:func:`memorization_curvature.training.train`: data kept on the device,
   augmentation on the device, channels_last and bf16 autocast on CUDA), one epoch, and apart from
   it the per-epoch evaluation passes it makes for the metrics CSV; once more with the images
   streamed from host memory by loader workers (how ImageNet-size data is trained);
2. a plain torchvision loop: a DataLoader with torchvision's RandomCrop(32, padding=4) and
   RandomHorizontalFlip on each sample, fp32, the model in the default memory format;
3. one curvature scoring pass over the same samples (n = 10, h = 1e-3).

Random tensors of CIFAR's real size stand in for the images (timing does not depend on content).

    python bench/training_speed.py --device cuda --samples 50000          # the GPU figure
    python bench/training_speed.py --samples 512 --score-samples 128      # a CPU smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from memorization_curvature import curvature_scores
from memorization_curvature.batches import ImageSet
from memorization_curvature.models import resnet18_cifar
from memorization_curvature.training import TrainConfig, train


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class RawCifar(torch.utils.data.Dataset):
    """uint8 CHW images transformed per sample, as a torchvision CIFAR10 dataset would be."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.transform = v2.Compose([
            v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.49, 0.48, 0.45], [0.25, 0.24, 0.26]),
        ])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def plain_epoch(images, labels, device, batch_size, workers):
    model = resnet18_cifar(3, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(RawCifar(images, labels), batch_size=batch_size, shuffle=True,
                                         num_workers=workers, pin_memory=device.type == "cuda", drop_last=False)
    model.train()
    sync(device)
    started = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x.to(device, non_blocking=True)), y.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - started


def our_epoch(images, labels, device, batch_size, placement="device", workers=8):
    pixels = ImageSet(images.numpy(), np.full(3, 0.5), np.full(3, 0.25), 255.0)
    config = TrainConfig(epochs=1, batch_size=batch_size, lr=0.1, momentum=0.9, weight_decay=1e-4,
                         lr_milestones=(0.6, 0.8), lr_gamma=0.1, augment_shift=4, augment_flip=True)
    model = resnet18_cifar(3, 10)
    timings = {}

    def done(epoch, net, metrics, *_):
        timings.update(metrics)

    train(model, pixels, labels, pixels.subset(np.arange(min(1000, len(labels)))), labels[:1000], config, device=device,
          on_epoch_end=done, placement=placement, workers=workers)
    return timings["seconds"], timings["eval_seconds"], model, pixels.normalize(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--score-samples", type=int, default=None, help="default: --samples")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--score-batch", type=int, default=512)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.samples, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (args.samples,), generator=g)

    our_epoch(images[: 2 * args.batch], labels[: 2 * args.batch], device, args.batch)  # warm-up: kernels, allocator
    ours, ours_eval, model, x = our_epoch(images, labels, device, args.batch)
    streamed, _, _, _ = our_epoch(images, labels, device, args.batch, "stream", args.workers)
    plain = plain_epoch(images, labels, device, args.batch, args.workers)
    n_score = args.score_samples or args.samples
    sync(device)
    started = time.perf_counter()
    curvature_scores(model, x[:n_score], labels[:n_score], n_probes=10, h=1e-3, batch_size=args.score_batch,
                     device=device)
    sync(device)
    score = (time.perf_counter() - started) * args.samples / n_score
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n### ResNet18 (CIFAR form), {args.samples} CIFAR-shaped samples, batch {args.batch}, {name}\n")
    print("| what | seconds |")
    print("|---|---|")
    print(f"| our training epoch | {ours:.1f} |")
    print(f"| its evaluation passes (training set and 1,000 test samples, for the metrics CSV) | {ours_eval:.1f} |")
    print(f"| our training epoch, images streamed by {args.workers} loader workers | {streamed:.1f} |")
    print(f"| plain torchvision loop epoch ({args.workers} loader workers) | {plain:.1f} |")
    print(f"| one scoring pass, n = 10 (from {n_score} samples) | {score:.1f} |")
    full = 200 * (ours + ours_eval + score) * 50000 / args.samples
    print(f"| extrapolated CIFAR-10 run: 200 epochs + 200 scoring passes | {full / 3600:.2f} h |")
    print(f"\nour epoch / plain epoch: {ours / plain:.2f}x; scoring / our epoch: {score / ours:.2f}x")


if __name__ == "__main__":
    main()
