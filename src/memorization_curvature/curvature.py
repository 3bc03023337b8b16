"""Input-loss curvature of each sample (Garg, Ravikumar & Roy, ICML 2024).

For a classifier f, a sample x with its given label y and the loss L(x) = CE(f(x), y), the score is
the Hutchinson estimate

    Curv(x) = (1/n) * sum_i || grad_x L(x + h v_i) - grad_x L(x) ||^2,   v_i Rademacher (+-1),

which estimates h^2 * tr(H^2) for H the Hessian of the loss with respect to the *input*. Higher
curvature means the sample sits in a sharper part of the loss surface: more likely memorized,
mislabeled or duplicated with a conflicting label.

The clean gradient grad_x L(x) is computed once per batch and shared by all n probes, and
gradients are taken with respect to the input only (parameters are frozen while scoring).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1


def _probe_seed(seed: int, sample_id: int) -> int:
    """A well-mixed 63-bit seed for one sample's probes (SplitMix64 of seed and sample id)."""
    z = (seed * 0x9E3779B97F4A7C15 + sample_id + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


def rademacher_probes(sample_ids: torch.Tensor, n_probes: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Probes v with entries +-1, shape (B, n_probes, *shape), float32 on the CPU.

    Sample ``i``'s probes depend only on ``(seed, sample_ids[i])``, never on the batch it is in, so a
    score does not change with the batch size or the order of the data.
    """
    probes = torch.empty((len(sample_ids), n_probes, *shape), dtype=torch.float32)
    generator = torch.Generator()
    for row, sample_id in enumerate(sample_ids.tolist()):
        generator.manual_seed(_probe_seed(seed, int(sample_id)))
        bits = torch.randint(0, 2, (n_probes, *shape), generator=generator, dtype=torch.int8)
        probes[row] = bits.to(torch.float32).mul_(2).sub_(1)
    return probes


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, parameters not requiring gradients; both restored afterwards."""
    was_training = model.training
    requires = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_x of each sample's own cross-entropy loss, shape of ``x``.

    Summing the per-sample losses gives each sample its own gradient because, in eval mode, no
    sample's output depends on another's input.
    """
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def curvature_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_probes: int = 10,
    h: float = 1e-3,
    seed: int = 0,
    sample_ids: torch.Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Curvature score of every sample, float64 tensor (N,) on the CPU; higher = more memorized.

    Args:
        model: any classifier returning logits (N, K). Scored in eval mode; left as it was.
        inputs: (N, ...) the normalized, un-augmented inputs the model was trained on.
        labels: (N,) int, the labels the model was trained with (possibly wrong).
        n_probes: number of Rademacher probes n per sample (paper: 10).
        h: finite-difference step (paper: 1e-3). The score scales as h^2.
        seed: seeds the probes; with ``sample_ids`` it fixes every sample's probes.
        sample_ids: (N,) int ids that seed each sample's probes; default 0..N-1.
        batch_size: samples per forward pass; does not change the result.
        device: where to compute; default the model's device.
    """
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h}")
    if len(inputs) != len(labels):
        raise ValueError(f"inputs and labels differ in length: {len(inputs)} vs {len(labels)}")
    if sample_ids is None:
        sample_ids = torch.arange(len(inputs))
    first_param = next(model.parameters(), None)
    if device is None:
        device = first_param.device if first_param is not None else torch.device("cpu")
    dtype = first_param.dtype if first_param is not None else inputs.dtype
    scores = torch.empty(len(inputs), dtype=torch.float64)
    n_batches = (len(inputs) + batch_size - 1) // batch_size
    with frozen_eval(model):
        for b, start in enumerate(range(0, len(inputs), batch_size)):
            stop = min(start + batch_size, len(inputs))
            x = inputs[start:stop].to(device=device, dtype=dtype)
            y = labels[start:stop].to(device=device, dtype=torch.long)
            probes = rademacher_probes(sample_ids[start:stop], n_probes, tuple(x.shape[1:]), seed)
            probes = probes.to(device=device, dtype=dtype)
            clean = input_gradient(model, x, y)
            total = torch.zeros(len(x), dtype=dtype, device=device)
            for k in range(n_probes):
                diff = input_gradient(model, x + h * probes[:, k], y) - clean
                total += diff.pow(2).flatten(1).sum(1)
            scores[start:stop] = (total / n_probes).to("cpu", torch.float64)
            if (b + 1) % max(1, n_batches // 10) == 0 or b + 1 == n_batches:
                log.info("scored %d/%d samples", stop, len(inputs))
    return scores
