"""Benchmark: our curvature engine against a loop written the way the official code works.

For the same model, data, n, h and probes, in one process, it measures

1. the reference loop (per probe: forward on x and on x + h v, one backward through both,
   parameters left requiring gradients, probes one at a time), as in the authors' released scorer;
2. our engine (:func:`memorization_curvature.curvature_scores`), with its variants;

and prints samples/second, the speed-up over the reference, the Spearman correlation of the scores
(same probes), the Spearman correlation with a float64 run of our engine, and the cost of scoring
one checkpoint divided by the cost of one training epoch of the same model and data size. Timings
are medians over repeats, reference and engine interleaved so that machine noise hits both.

    python bench/curvature_speed.py                       # CPU: digits CNN and CIFAR-shaped ResNet18
    python bench/curvature_speed.py --device cuda --resnet-samples 4096 --resnet-batch 512
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from memorization_curvature import curvature_scores
from memorization_curvature.curvature import rademacher_probes
from memorization_curvature.batches import normalize_images as normalize
from memorization_curvature.data import prepare
from memorization_curvature.models import SmallCNN, resnet18_cifar


def reference_scores(model, x, y, *, n_probes, h, seed, batch_size, device):
    """The released code's loop (paper form, per-sample losses so that values compare with ours)."""
    model.eval()  # parameters keep requires_grad=True, as in the released code
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        ids = torch.arange(start, start + len(xb))
        probes = rademacher_probes(ids, n_probes, tuple(xb.shape[1:]), seed).to(device)
        total = torch.zeros(len(xb), device=device)
        xb = xb.clone().requires_grad_(True)
        for k in range(n_probes):
            loss_pos = F.cross_entropy(model(xb + h * probes[:, k]), yb, reduction="sum")
            loss_orig = F.cross_entropy(model(xb), yb, reduction="sum")
            (diff,) = torch.autograd.grad(loss_pos - loss_orig, xb)
            total += diff.flatten(1).pow(2).sum(1)
            model.zero_grad()
        out.append((total / n_probes).detach().cpu().double())
    return torch.cat(out)


def training_epoch_seconds(model, x, y, *, batch_size, device, steps):
    """Seconds for one training epoch over len(x) samples, from ``steps`` timed SGD steps."""
    model = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(0, len(x), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    per_sample = (time.perf_counter() - started) / (steps * batch_size)
    return per_sample * len(x)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    started = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - started, result


def bench_case(name, model, x, y, *, args, batch_size, train_batch, train_steps):
    device = args.device
    model = model.to(device)
    common = dict(n_probes=args.n, h=args.h, seed=0, batch_size=batch_size, device=device)
    variants = {
        "engine, default (BatchNorm folded, 1 probe/pass)": lambda: curvature_scores(model, x, y, **common),
        "engine, BatchNorm not folded": lambda: curvature_scores(model, x, y, fold_bn=False, **common),
        "engine, 5 probes/pass": lambda: curvature_scores(model, x, y, probes_per_pass=5, **common),
    }
    if args.hvp:
        variants["engine, exact HVP"] = lambda: curvature_scores(model, x, y, method="hvp", **common)
    times = {"reference loop": []} | {k: [] for k in variants}
    scores = {}
    for _ in range(args.repeats):
        seconds, scores["reference loop"] = timed(
            lambda: reference_scores(model, x, y, n_probes=args.n, h=args.h, seed=0, batch_size=batch_size,
                                     device=device), device)
        times["reference loop"].append(seconds)
        for label, fn in variants.items():
            seconds, scores[label] = timed(fn, device)
            times[label].append(seconds)
    fp64 = curvature_scores(copy.deepcopy(model).double(), x.double(), y, **common)
    epoch = training_epoch_seconds(model, x, y, batch_size=train_batch, device=device, steps=train_steps)
    ref_time = statistics.median(times["reference loop"])
    print(f"\n### {name}: {len(x)} samples, scoring batch {batch_size}, n = {args.n}, h = {args.h}, "
          f"device {device}, {torch.get_num_threads()} threads, {args.repeats} repeats (median)\n")
    print("| scorer | samples/s | speed-up vs reference | Spearman vs reference | Spearman vs fp64 | "
          "one checkpoint / one training epoch |")
    print("|---|---|---|---|---|---|")
    for label, values in times.items():
        median = statistics.median(values)
        rho_ref = spearmanr(scores[label], scores["reference loop"]).statistic
        rho_64 = spearmanr(scores[label], fp64).statistic
        print(f"| {label} | {len(x) / median:.1f} | {ref_time / median:.2f}x | {rho_ref:.6f} | {rho_64:.6f} | "
              f"{median / epoch:.2f}x |")
    print(f"\none training epoch over {len(x)} samples (batch {train_batch}): {epoch:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=10, help="probes per sample")
    parser.add_argument("--h", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--resnet-samples", type=int, default=64)
    parser.add_argument("--resnet-batch", type=int, default=32)
    parser.add_argument("--hvp", action="store_true", help="also time method='hvp'")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if not args.skip_digits:
        data = prepare("digits", test_fraction=0.2, split_seed=0)
        x, y = normalize(data.train_images, data), torch.from_numpy(data.train_labels)
        torch.manual_seed(0)
        model = SmallCNN(1, 10)
        # a few epochs, so that the scores have the spread of a trained network
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for _ in range(3):
            for idx in torch.randperm(len(x)).split(16):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        bench_case("digits, small CNN", model, x, y, args=args, batch_size=256, train_batch=16, train_steps=40)

    if not args.skip_resnet:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.resnet_samples, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (args.resnet_samples,), generator=g)
        torch.manual_seed(0)
        bench_case("CIFAR-shaped ResNet18 (random weights and data)", resnet18_cifar(3, 10), x, y, args=args,
                   batch_size=args.resnet_batch, train_batch=128, train_steps=2 if args.device == "cpu" else 20)


if __name__ == "__main__":
    main()
