"""Benchmark: curvature in bf16 by difference propagation, against float32 and float64.

1. Agreement, on the default workflow's trained digits checkpoints (run `make run` first): Spearman of
   each scorer's scores against the float64 finite difference (same probes, n = 10, h = 1e-3), and
   each one's AUROC for finding the corrupted labels:
   finite difference in float64, float32 and bf16 (the whole computation in bf16), and difference
   propagation (memorization_curvature.difference) in float64 and with the convolutions and linear
   layers in bf16 (`curvature.precision: bf16`).
2. Cost of scoring one CIFAR-10 checkpoint (50,000 samples, ResNet18 CIFAR form, n = 10) on an H200,
   an ESTIMATE from FLOP counts (torch.utils.flop_counter's formulas) at the data sheet's dense rates,
   67 TFLOP/s float32 and 989 TFLOP/s bf16: float32 finite difference (all in float32), bf16 difference
   propagation (the clean pass in float32, each probe's pass in bf16), and the share of FLOPs in bf16.
3. CPU seconds of both on this machine for a few CIFAR-size samples: reported, not judged (the CPU
   has no bf16 tensor cores).

    python bench/precision.py
    python bench/precision.py --run results/digits/noise0.1/seed0 --data results/digits/data.npz
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from memorization_curvature import curvature, difference, io, models
from memorization_curvature.batches import normalize_images
from memorization_curvature.data import PreparedData

sys.path.insert(0, str(Path(__file__).parent))
from host_overhead import H200_BF16, H200_FP32, Counter, median_time  # noqa: E402  rates, FLOP counter, timer

N, H, SEED = 10, 1e-3, 0


def load_checkpoint(path: Path):
    checkpoint = io.load_torch(path)
    model = models.build_model(checkpoint["model_name"], **checkpoint["model_kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model


def bf16_finite_difference(model, x, y, *, batch_size=512):
    """The finite difference with everything in bf16 (what plain mixed precision would do)."""
    model = copy.deepcopy(model).to(torch.bfloat16).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scores = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        ids = torch.arange(start, start + len(xb))
        clean = curvature.input_gradient(model, xb.to(torch.bfloat16), yb)[0].float()
        total = torch.zeros(len(xb), dtype=torch.float64)
        for k in range(N):
            v = curvature.rademacher_probes(ids, 1, tuple(xb.shape[1:]), SEED, first=k)[:, 0]
            shifted = curvature.input_gradient(model, (xb + H * v).to(torch.bfloat16), yb)[0].float()
            total += (shifted - clean).double().flatten(1).pow(2).sum(1)
        scores.append(total / N)
    return torch.cat(scores)


def propagated_float64(model, x, y):
    """Difference propagation with everything in float64 (memorization_curvature.difference directly)."""
    folded = curvature.fold_batchnorm(copy.deepcopy(model).double().eval())
    for p in folded.parameters():
        p.requires_grad_(False)
    propagation, why = difference.build(folded, torch.float64)
    assert propagation is not None, why
    x = x.double()
    state = propagation.clean(x, y)
    total = torch.zeros(len(x), dtype=torch.float64)
    for k in range(N):
        v = curvature.rademacher_probes(torch.arange(len(x)), 1, tuple(x.shape[1:]), SEED, first=k,
                                        dtype=torch.float64)[:, 0]
        total += propagation.squared_norms(state, H * v)
    return total / N


def agreement(run: Path, data: Path, epochs: list[int]) -> None:
    prepared = PreparedData.from_arrays(io.load_npz(data))
    labels = pd.read_csv(run / "labels.csv")
    x, y = normalize_images(prepared.train_images, prepared), torch.tensor(labels["given_label"].to_numpy())
    corrupted = labels["corrupted"].to_numpy(bool)
    print(f"Agreement with the float64 finite difference: {run}, {len(x)} samples, n = {N}, h = {H}\n")
    print("| scorer | " + " | ".join(f"Spearman vs float64, epoch {e}" for e in epochs) + " | "
          + " | ".join(f"AUROC epoch {e}" for e in epochs) + " |")
    print("|---|" + "---|" * (2 * len(epochs)))
    rows: dict[str, list] = {}
    for epoch in epochs:
        model = load_checkpoint(run / f"checkpoints/epoch{epoch}.pt")
        options = dict(n_probes=N, h=H, seed=SEED)
        scores = {
            "finite difference, float64": curvature.curvature_scores(copy.deepcopy(model).double(), x.double(), y,
                                                                     **options),
            "finite difference, float32": curvature.curvature_scores(model, x, y, **options),
            "finite difference, bf16": bf16_finite_difference(model, x, y),
            "difference propagation, float64": propagated_float64(model, x, y),
            "difference propagation, bf16 linear ops": curvature.curvature_scores(model, x, y, precision="bf16",
                                                                                  **options),
        }
        reference = scores["finite difference, float64"].numpy()
        for name, s in scores.items():
            rows.setdefault(name, [[], []])
            rows[name][0].append(f"{spearmanr(s.numpy(), reference)[0]:.6f}")
            rows[name][1].append(f"{roc_auc_score(corrupted, s.numpy()):.4f}")
    for name, (spearman, auroc) in rows.items():
        print(f"| {name} | " + " | ".join(spearman) + " | " + " | ".join(auroc) + " |")


def count_flops(fn) -> dict[str, float]:
    """FLOPs of fn() by the dtype they run in."""
    class ByDtype(Counter):
        def __init__(self):
            super().__init__()
            self.by_dtype: dict[torch.dtype, float] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            before = self.flops
            out = super().__torch_dispatch__(func, types, args, kwargs)
            tensor = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if self.flops > before and tensor is not None:
                self.by_dtype[tensor.dtype] = self.by_dtype.get(tensor.dtype, 0) + self.flops - before
            return out

    with ByDtype() as counter:
        fn()
    return counter.by_dtype


def cifar_estimates() -> tuple[float, float, float, float, float]:
    """One CIFAR-10 checkpoint's scoring (50,000 samples, n = N) on an H200 at 100 % of peak, ESTIMATED
    from FLOP counts: (float32 finite difference s, bf16 difference propagation s, its GFLOP per
    sample, of which bf16, the finite difference's GFLOP per sample)."""
    torch.manual_seed(0)
    batch = 4
    model = models.build_model("resnet18_cifar", in_channels=3, num_classes=10, image_size=32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    folded = curvature.fold_batchnorm(model)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    dx = H * curvature.rademacher_probes(torch.arange(batch), 1, (3, 32, 32), SEED)[:, 0]
    propagation, why = difference.build(folded, torch.bfloat16)
    assert propagation is not None, why

    def finite_difference():
        curvature.input_gradient(folded, x, y)
        for _ in range(N):
            curvature.input_gradient(folded, x + dx, y)

    def propagated():
        state = propagation.clean(x, y)
        for _ in range(N):
            propagation.squared_norms(state, dx)

    fd = count_flops(finite_difference)
    dp = count_flops(propagated)
    samples = 50_000
    fd_total = sum(fd.values()) / batch
    dp_fp32, dp_bf16 = dp.get(torch.float32, 0) / batch, dp.get(torch.bfloat16, 0) / batch
    fd_time = samples * fd_total / H200_FP32
    dp_time = samples * (dp_fp32 / H200_FP32 + dp_bf16 / H200_BF16)
    return fd_time, dp_time, (dp_fp32 + dp_bf16) / 1e9, dp_bf16 / (dp_fp32 + dp_bf16), fd_total / 1e9


def cifar_costs(repeats: int) -> None:
    fd_time, dp_time, dp_total, dp_bf16_share, fd_total = cifar_estimates()
    print("\nOne CIFAR-10 checkpoint (50,000 samples, ResNet18 CIFAR form, n = 10) on an H200, ESTIMATED from "
          f"FLOP counts at {H200_FP32 / 1e12:.0f} TFLOP/s float32 and {H200_BF16 / 1e12:.0f} TFLOP/s bf16 (dense, "
          "data sheet; 100 % of peak):\n")
    print("| scorer | GFLOP per sample | of which bf16 | estimated H200 time at 100 % / 50 % of peak |")
    print("|---|---|---|---|")
    print(f"| finite difference, float32 | {fd_total:.1f} | 0 % | {fd_time:.0f} s / {2 * fd_time:.0f} s |")
    print(f"| difference propagation, bf16 linear ops | {dp_total:.1f} | "
          f"{dp_bf16_share:.0%} | {dp_time:.0f} s / {2 * dp_time:.0f} s |")
    print(f"\nestimated speed-up of scoring: {fd_time / dp_time:.1f}x")

    model = models.build_model("resnet18_cifar", in_channels=3, num_classes=10, image_size=32).eval()
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    fd_cpu = median_time(lambda: curvature.curvature_scores(model, x, y, n_probes=N), repeats)
    dp_cpu = median_time(lambda: curvature.curvature_scores(model, x, y, n_probes=N, precision="bf16"), repeats)
    print(f"\nThis CPU ({torch.get_num_threads()} threads), 32 CIFAR-size samples, n = {N}, median of {repeats}: "
          f"float32 finite difference {fd_cpu:.2f} s, bf16 difference propagation {dp_cpu:.2f} s "
          "(reported, not judged: no bf16 tensor cores here)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("results/digits/noise0.1/seed0"))
    parser.add_argument("--data", type=Path, default=Path("results/digits/data.npz"))
    parser.add_argument("--epochs", type=int, nargs="+", default=[12, 3])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    missing = [p for p in (args.run / "labels.csv", args.data) if not p.exists()]
    if missing:
        raise SystemExit(f"no {', '.join(map(str, missing))}: run the default workflow first (make run)")
    agreement(args.run, args.data, args.epochs)
    cifar_costs(args.repeats)


if __name__ == "__main__":
    main()
