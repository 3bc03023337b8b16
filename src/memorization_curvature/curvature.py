"""Input-loss curvature of each sample (Garg, Ravikumar & Roy, ICML 2024).

For a classifier f, a sample x with its given label y and the loss L(x) = CE(f(x), y), the paper's
score is the Hutchinson estimate

    Curv(x) = (1/n) * sum_i || grad_x L(x + h v_i) - grad_x L(x) ||^2,   v_i Rademacher (+-1),

which estimates h^2 * tr(H^2) for H the Hessian of the loss with respect to the *input*. Higher
curvature means the sample sits in a sharper part of the loss surface: more likely memorized,
mislabeled or duplicated with a conflicting label.

Variants (all rank samples alike up to estimator noise):

- ``form="official"``: what the authors' released code computes, (1/n) * sum_i ||g(x + h v_i) - g(x)||,
  the plain L2 norm, not squared (an estimate of h * E||H v||). Their code also takes the gradient of the
  batch-*mean* loss, which divides every score by the batch size; we use per-sample losses, so the scores
  do not depend on the batch size (a constant factor within one of their runs, so rankings agree).
- ``method="hvp"``: the exact Hessian-vector product H v (double backward) instead of the finite
  difference, scaled by h so that it estimates the same quantity as the default.

Cost: the clean gradient g(x) is computed once per batch and shared by all n probes, and gradients
are taken with respect to the input only (parameters are frozen while scoring): n + 1 forward and
backward passes per sample, where the released code runs 2n of each. In eval mode BatchNorm is a
fixed affine map, so by default it is folded into the preceding convolution of a scoring copy of the
model, which makes every pass cheaper without changing the function.

Precision: the finite difference subtracts two gradients that differ by about h times their size, so
it needs at least float32 arithmetic. Scoring refuses half-precision models and turns TF32 off on
CUDA for its duration (TF32 keeps 10 mantissa bits, which would drown the difference at h = 1e-3).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .choices import CURVATURE_FORMS, CURVATURE_METHODS, CURVATURE_PRECISIONS

log = logging.getLogger(__name__)

_MASK32 = 0xFFFFFFFF
_BITS = 32  # probe entries drawn from one 32-bit hash word


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32, exactly, for int64 ``x`` in [0, 2**32) and a 32-bit constant ``c``.

    A constant of 2**31 or more is applied as its two 16-bit halves, so that no intermediate
    exceeds 2**63: int64 never overflows, and every backend computes the same bits.
    """
    if c < 2**31:
        return (x * c) & _MASK32
    low, high = c & 0xFFFF, c >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with full avalanche (C. Wellons' "lowbias32"), elementwise on int64."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def probe_keys(sample_ids: torch.Tensor, n_probes: int, seed: int, first: int = 0) -> torch.Tensor:
    """Two 32-bit keys per (sample, probe), int64 (B, n_probes, 2): a hash of (seed, id, probe number).

    Computed once per batch, on the device of ``sample_ids``; :func:`probes_from_keys` expands them.
    """
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    ids = sample_ids.to(torch.int64)[:, None]
    number = torch.arange(first, first + n_probes, device=ids.device, dtype=torch.int64)[None, :]
    key = _mix32(((ids >> 32) & _MASK32) ^ 0x243F6A88)
    key = _mix32(key ^ (ids & _MASK32))
    key = _mix32(key ^ (seed & _MASK32))
    key = _mix32(key ^ (seed >> 32))
    key = _mix32(key ^ number)  # (B, n)
    return torch.stack((key, _mix32(key ^ 0x85A308D3)), -1)


def probes_from_keys(keys: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The +-1 probes (B, p, *shape) of the keys (B, p, 2) of :func:`probe_keys`, on their device.

    Entry j of a probe is bit j % 32 of the hash of (its keys, j // 32): 32 entries per hash.
    """
    size = math.prod(shape)
    words = torch.arange(-(-size // _BITS), device=keys.device, dtype=torch.int64)
    shifts = torch.arange(_BITS, device=keys.device, dtype=torch.int64)
    hashed = _mix32(_mix32(words ^ keys[..., :1]) ^ keys[..., 1:])  # (B, p, words)
    bits = ((hashed[..., None] >> shifts) & 1).flatten(2)[..., :size]
    return bits.to(dtype).mul_(2).sub_(1).reshape(*keys.shape[:2], *shape)


def rademacher_probes(sample_ids: torch.Tensor, n_probes: int, shape: tuple[int, ...], seed: int, *,
                      first: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Probes number ``first`` to ``first + n_probes - 1`` of each sample: entries exactly +-1, shape
    (B, n_probes, *shape), on the device of ``sample_ids``.

    Counter-based: entry j of probe k of sample i is a pure integer function of (seed,
    sample_ids[i], k, j), evaluated with tensor operations where the scoring runs. A sample's probes
    therefore never depend on the batch it is in, the order of the data or how many probes are made
    at once, and they are the same bits on the CPU and on CUDA.
    """
    return probes_from_keys(probe_keys(sample_ids, n_probes, seed, first), shape, dtype)


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


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """No TF32 in matmuls and convolutions (CUDA) while inside; the previous settings are restored."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.set_float32_matmul_precision(precision)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm folded into the convolution before it.

    In eval mode BatchNorm is a fixed affine map, so folding it into the convolution's weights gives
    the same function with fewer operations in every forward and backward pass. Uses torch.fx's
    fusion pass; a model that torch.fx cannot trace is returned unchanged (a copy, in eval mode).
    """
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        return fuse(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure: score the model as it is
        log.info("BatchNorm not folded (%s: %s); scoring the model as it is", type(error).__name__, error)
        return model


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False):
    """grad_x of each sample's own cross-entropy loss; returns (gradient, x with requires_grad).

    Summing the per-sample losses gives each sample its own gradient because, in eval mode, no
    sample's output depends on another's input.
    """
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x, create_graph=create_graph)
    return grad, x


def _batches(
    data: torch.Tensor | Iterable, labels: torch.Tensor | None, sample_ids: torch.Tensor | None, batch_size: int,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, y, ids) batches from tensors, or from an iterable (a DataLoader) of (x, y) or (x, y, ids).

    Default ids are made on ``device`` (no per-batch copy); batches already on the device (the
    workflow's :class:`memorization_curvature.batches.LabelledBatches`) pass through untouched.
    """
    if isinstance(data, torch.Tensor):
        if labels is None:
            raise ValueError("labels are required when data is a tensor")
        if len(data) != len(labels):
            raise ValueError(f"inputs and labels differ in length: {len(data)} vs {len(labels)}")
        if sample_ids is None:
            ids = torch.arange(len(data), device=device)
        else:
            ids = torch.as_tensor(sample_ids).to(device)
        if len(ids) != len(data):
            raise ValueError(f"sample_ids has {len(ids)} entries for {len(data)} inputs")
        labels = torch.as_tensor(labels).to(device)
        for start in range(0, len(data), batch_size):
            stop = start + batch_size
            yield data[start:stop], labels[start:stop], ids[start:stop]
        return
    if labels is not None or sample_ids is not None:
        raise ValueError("with a DataLoader, labels and sample ids come from its batches: (x, y) or (x, y, ids)")
    seen = 0
    for batch in data:
        x, y, *rest = batch
        ids = torch.as_tensor(rest[0]) if rest else torch.arange(seen, seen + len(x), device=device)
        seen += len(x)
        yield x, y, ids


def _score_batch(model, x, y, ids, *, n_probes, seed, h, form, method, probes_per_pass, propagation=None):
    """Curvature of one batch, on x's device and dtype; the probes are made there, a chunk at a time.

    With ``propagation`` (a :class:`memorization_curvature.difference.DifferencePropagation` of the
    model), the gradient differences are propagated instead of subtracted (``precision: bf16``).
    """
    keys = probe_keys(ids, n_probes, seed)  # (B, n, 2): all that is kept of the n probes
    shape = tuple(x.shape[1:])
    total = torch.zeros(len(x), dtype=torch.float64 if propagation else x.dtype, device=x.device)

    def accumulate(diff_sq: torch.Tensor) -> None:  # (B, p) squared norms of the gradient differences
        total.add_((diff_sq if form == "paper" else diff_sq.sqrt()).sum(1))

    if propagation is not None:
        state, stacked = propagation.clean(x, y), {}
        for k0 in range(0, n_probes, probes_per_pass):
            v = probes_from_keys(keys[:, k0 : k0 + probes_per_pass], shape, x.dtype)  # (B, p, ...)
            p = v.shape[1]
            if p > 1 and p not in stacked:
                stacked[p] = propagation.repeat(state, p)
            accumulate(propagation.squared_norms(stacked.get(p, state), v.mul_(h).flatten(0, 1)).view(len(x), p))
        return total / n_probes

    if method == "hvp":
        grad, x_leaf = input_gradient(model, x, y, create_graph=True)
        for k in range(n_probes):
            v = probes_from_keys(keys[:, k : k + 1], shape, x.dtype)[:, 0]
            (hv,) = torch.autograd.grad(grad, x_leaf, grad_outputs=v, retain_graph=k < n_probes - 1)
            accumulate((h * hv).pow(2).flatten(1).sum(1, keepdim=True))
        return total / n_probes
    clean, _ = input_gradient(model, x, y)
    clean = clean.flatten(1)[:, None]  # (B, 1, D)
    for k0 in range(0, n_probes, probes_per_pass):
        v = probes_from_keys(keys[:, k0 : k0 + probes_per_pass], shape, x.dtype)  # (B, p, ...)
        p = v.shape[1]
        shifted = v.mul_(h).add_(x[:, None]).flatten(0, 1)  # x + h v, (B * p, ...), sample-major
        if shifted.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            shifted = shifted.contiguous(memory_format=torch.channels_last)
        grad, _ = input_gradient(model, shifted, y.repeat_interleave(p) if p > 1 else y)
        accumulate((grad.reshape(len(x), p, -1) - clean).pow(2).sum(-1))
    return total / n_probes


def curvature_scores(
    model: nn.Module,
    data: torch.Tensor | Iterable,
    labels: torch.Tensor | None = None,
    *,
    n_probes: int = 10,
    h: float = 1e-3,
    seed: int = 0,
    sample_ids: torch.Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    form: str = "paper",
    method: str = "finite_difference",
    probes_per_pass: int = 1,
    channels_last: bool | None = None,
    fold_bn: bool = True,
    precision: str = "float32",
) -> torch.Tensor:
    """Curvature score of every sample, float64 tensor (N,) on the CPU; higher = more memorized.

    Args:
        model: any classifier returning logits (N, K). Scored in eval mode with frozen parameters;
            its mode and ``requires_grad`` flags are restored afterwards (with channels_last, its
            parameters are returned to the contiguous format).
        data: either a tensor (N, ...) of the normalized, un-augmented inputs the model was trained
            on, or an iterable such as a ``DataLoader`` yielding ``(x, y)`` or ``(x, y, ids)``.
            Scores come back in the order of the data.
        labels: (N,) int, the labels the model was trained with (possibly wrong); only with a tensor.
        n_probes: number of Rademacher probes n per sample (paper: 10).
        h: finite-difference step (paper: 1e-3). The paper-form score scales as h^2.
        seed: seeds the probes; with the sample ids it fixes every sample's probes.
        sample_ids: (N,) int ids that seed each sample's probes; default 0..N-1 in data order.
        batch_size: samples per forward pass (tensor data only); does not change the result.
        device: where to compute; default the model's device.
        form: ``"paper"`` (mean squared norm, the default) or ``"official"`` (mean norm).
        method: ``"finite_difference"`` (default) or ``"hvp"`` (exact Hessian-vector products).
        probes_per_pass: probes stacked into one forward pass (finite difference only); results
            do not depend on it, speed does (1 was fastest on CPU, see the README's benchmark).
        channels_last: NHWC memory format for 4-D inputs; default on for CUDA, off elsewhere.
        fold_bn: score a copy of the model with BatchNorm folded into the convolutions
            (:func:`fold_batchnorm`): the same function, fewer operations per pass (default; the
            benchmark in the README measures the gain and the agreement with float64).
        precision: ``"float32"`` (default): the finite difference as a subtraction of two float32
            gradients. ``"bf16"``: the same finite difference by difference propagation
            (:mod:`memorization_curvature.difference`), the convolutions and linear layers of the probe
            passes in bf16 (tensor cores), the rest in float32; a model with an operation it does not
            know is scored in float32, with a log line saying why. Finite difference only.
    """
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h}")
    if form not in CURVATURE_FORMS:
        raise ValueError(f"form must be one of {CURVATURE_FORMS}, got {form!r}")
    if method not in CURVATURE_METHODS:
        raise ValueError(f"method must be one of {CURVATURE_METHODS}, got {method!r}")
    if probes_per_pass < 1:
        raise ValueError(f"probes_per_pass must be >= 1, got {probes_per_pass}")
    if precision not in CURVATURE_PRECISIONS:
        raise ValueError(f"precision must be one of {CURVATURE_PRECISIONS}, got {precision!r}")
    if precision != "float32" and method != "finite_difference":
        raise ValueError(f"precision {precision!r} applies to the finite difference; method {method!r} runs in float32")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    first_param = next(model.parameters(), None)
    dtype = first_param.dtype if first_param is not None else torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"scoring needs a float32 or float64 model, got {dtype}: the finite difference "
                         "of gradients is lost in lower precision")
    if device is None:
        device = first_param.device if first_param is not None else torch.device("cpu")
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cuda"
    if fold_bn:
        model = fold_batchnorm(model)
    propagation = None
    if precision == "bf16":
        from . import difference

        propagation, why = difference.build(model, torch.bfloat16)
        if propagation is None:
            log.info("precision bf16: the difference cannot be propagated through this model (%s); scoring with "
                     "the float32 finite difference", why)
    total_samples = len(data) if isinstance(data, torch.Tensor) else getattr(data, "num_samples", None)
    chunks: list[torch.Tensor] = []  # stay on the device until the end: no synchronisation per batch
    done = 0
    next_report = 0.1
    with frozen_eval(model), strict_float32():
        if channels_last:
            model.to(memory_format=torch.channels_last)
        try:
            batches = _batches(data, labels, sample_ids, batch_size, device)
            for scores in score_batches(model, batches, device=device, dtype=dtype, channels_last=channels_last,
                                        n_probes=n_probes, seed=seed, h=h, form=form, method=method,
                                        probes_per_pass=probes_per_pass, propagation=propagation):
                chunks.append(scores)
                done += len(scores)
                if total_samples and done / total_samples >= next_report:
                    log.info("scored %d/%d samples", done, total_samples)  # queued on a GPU: no wait here
                    next_report = done / total_samples + 0.1
        finally:
            if channels_last:
                model.to(memory_format=torch.contiguous_format)
    if total_samples is None:
        log.info("scored %d samples", done)
    return torch.cat(chunks).to("cpu", torch.float64) if chunks else torch.empty(0, dtype=torch.float64)


def score_batches(model: nn.Module, batches: Iterable, *, device: torch.device, dtype: torch.dtype,
                  channels_last: bool, **options) -> Iterator[torch.Tensor]:
    """The per-batch loop of :func:`curvature_scores`: the scores of each (x, y, ids) batch, left on
    the device. Nothing here waits for the device or copies to it what is already there.

    ``model`` is prepared by the caller (eval mode, frozen, folded); ``options``: n_probes, seed, h,
    form, method, probes_per_pass, propagation (see :func:`_score_batch`).
    """
    for x, y, ids in batches:
        x = x.to(device=device, dtype=dtype, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device=device, dtype=torch.long, non_blocking=True)
        ids = ids.to(device=device, non_blocking=True)
        yield _score_batch(model, x, y, ids, **options).detach()
