"""Plain supervised training with SGD, a step schedule and optional on-device augmentation."""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .batches import DeviceImages, ImageSet
from .choices import TRAINING_STATISTICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    lr_milestones: tuple[float, ...]  # fractions of ``epochs`` after which lr is multiplied by lr_gamma
    lr_gamma: float
    augment_shift: int = 0  # random translation by up to this many pixels; 0 = none
    augment_flip: bool = False  # random horizontal flip
    seed: int = 0
    bf16: bool = True  # bf16 autocast for training on CUDA (never for scoring); ignored on the CPU

    def milestone_epochs(self) -> list[int]:
        return sorted({max(1, round(f * self.epochs)) for f in self.lr_milestones})

    @classmethod
    def from_recipe(cls, recipe: dict, seed: int) -> "TrainConfig":
        """The training configuration of a recipe (a dataset's ``recipes`` entry with ``bf16``: the
        ``recipe`` parameter of every training rule), trained with ``seed``. The one path from a recipe
        to training: a key it does not know is refused, never dropped."""
        fields = {name for name in cls.__dataclass_fields__ if name != "seed"}
        given = {key: value for key, value in recipe.items() if key != "model"}
        unknown, missing = sorted(set(given) - fields), sorted(fields - set(given))
        if unknown or missing:
            raise ValueError(f"training recipe {recipe}: unknown key(s) {unknown}, missing {missing}; expected "
                             f"model and {sorted(fields)}")
        return cls(**{**given, "lr_milestones": tuple(given["lr_milestones"])}, seed=seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def draw_augmentation(n: int, config: TrainConfig, generator: torch.Generator) -> torch.Tensor | None:
    """One epoch's augmentation of each of ``n`` training samples, int64 (n, 3): the shifts dy, dx in
    [0, 2 * shift] and the flip (0 or 1), drawn on the CPU in one go: the same on every device, sent
    to it once an epoch. None when the recipe does not augment."""
    if not (config.augment_shift or config.augment_flip):
        return None
    span = 2 * config.augment_shift + 1
    dy = torch.randint(0, span, (n,), generator=generator)
    dx = torch.randint(0, span, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator) if config.augment_flip else torch.zeros(n, dtype=torch.int64)
    return torch.stack((dy, dx, flip), 1)


class Augmentation:
    """Translation (black padding, as a random crop with zero padding) and horizontal flip of uint8
    images (B, C, H, W), each sample by its own parameters from :func:`draw_augmentation`.

    Sample b moves by (dy - shift, dx - shift) pixels and is flipped if ``flip``, with the parameters
    of its training position ``positions[b]``. One gather with clamped source indices does both, and
    pixels from outside the image are zeroed: no padded copy, and a dozen small operations per batch,
    the index tables being made once an epoch.
    """

    def __init__(self, params: torch.Tensor, shift: int, shape: tuple[int, int, int], device: torch.device):
        channels, height, width = shape
        self.params, self.shift, self.height, self.width = params.to(device), shift, height, width
        self.rows = torch.arange(height, device=device) - shift  # (H,) sources before dy
        columns = torch.arange(width, device=device)
        self.columns = torch.stack((columns, width - 1 - columns)) - shift  # (2, W): as is, flipped
        self.channels = torch.arange(channels, device=device)[None, :, None, None]
        self.samples = torch.arange(len(params), device=device)[:, None, None, None]

    def __call__(self, pixels: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        dy, dx, flip = self.params[positions].T  # views of one gather
        rows = self.rows + dy[:, None]  # (B, H) source rows
        columns = self.columns[flip] + dx[:, None]  # (B, W) source columns
        inner_rows, inner_columns = rows.clamp(0, self.height - 1), columns.clamp(0, self.width - 1)
        out = pixels[self.samples[: len(pixels)], self.channels, inner_rows[:, None, :, None],
                     inner_columns[:, None, None, :]]
        if self.shift:
            inside = (inner_rows == rows)[:, :, None] & (inner_columns == columns)[:, None, :]
            out = out * inside[:, None]
        return out


# bf16 evaluation passes: a sample whose top two logits are closer than this multiple of the bf16 error
# measured on the pass's first samples (relative to the sample's largest logit) is evaluated again in
# float32, so that the argmax (correctness, forgetting events) rarely depends on bf16 rounding. A
# heuristic, not a bound: a sample whose error is larger, relative to its logits, than the first
# samples' can still flip. On the default digits run bf16's error is at most 1.8 % and flips 6 of
# 17,244 argmaxes (their gaps within 0.7 %); 4x the error measured covers them (2x does, 1x does not:
# tests/test_training_statistics.py), at 0.2-1.0 % of the samples evaluated again (median 0.7 %).
NEAR_TIE_SAFETY = 4.0
# how many samples of the first batch measure it
CALIBRATION_SAMPLES = 128


@torch.no_grad()
def predict_logits(model: nn.Module, images: DeviceImages, batch_size: int = 1024, *, bf16: bool = False,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Eval-mode logits (N, K) of ``model`` on the un-augmented ``images``, float32 on the CPU.

    ``bf16``: under bf16 autocast on the images' device (training's fast lane on CUDA; the CPU has
    autocast too, which is how the tests compare it with float32), near ties evaluated again without
    autocast (float32; on CUDA with the TF32 convolutions cuDNN allows outside scoring): the first
    :data:`CALIBRATION_SAMPLES` samples are evaluated both ways, which measures bf16's error, and the
    samples whose top two logits are within :data:`NEAR_TIE_SAFETY` times that error again (one host
    synchronisation per pass to find them; streamed images read them once more). A NaN in the
    measurement (a diverged network) sends every sample back to float32."""
    model.eval()
    device = images.device.type
    logits, tie_ratio = [], None
    for _, x in images.iterate(torch.arange(len(images), device=images.device), batch_size,
                               memory_format=memory_format):
        if not bf16:
            logits.append(model(x).float())
            continue
        with torch.autocast(device, dtype=torch.bfloat16):
            fast = model(x).float()
        if tie_ratio is None:  # the first samples in float32 as well, which measures bf16's error
            exact = model(x[:CALIBRATION_SAMPLES]).float()
            error = _relative_error(fast[: len(exact)], exact).max()
            tie_ratio = NEAR_TIE_SAFETY * torch.nan_to_num(error, nan=float("inf"))
            fast[: len(exact)] = exact
        logits.append(fast)
    if not logits:
        return torch.empty(0, 0)
    logits = torch.cat(logits)
    if bf16 and logits.shape[1] > 1:
        top = logits.topk(2, dim=1).values
        close = torch.nonzero(top[:, 0] - top[:, 1] <= tie_ratio * logits.abs().amax(1)).squeeze(1)  # syncs
        if len(close):
            logits[close] = torch.cat([model(x).float() for _, x in images.iterate(
                close, batch_size, memory_format=memory_format)])
    return logits.cpu()  # one copy at the end


def _relative_error(approximate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Per row, the largest difference of ``approximate`` from ``exact`` relative to the row's largest |logit|."""
    scale = exact.abs().amax(1).clamp_min(torch.finfo(exact.dtype).tiny)
    return (approximate - exact).abs().amax(1) / scale


def eval_lane(device: torch.device, config: TrainConfig) -> dict:
    """How evaluation passes of a training run (``predict_logits`` arguments): on CUDA in training's
    fast lane, bf16 autocast (the recipe's ``bf16``) and channels_last; on the CPU float32, as training."""
    on_gpu = device.type == "cuda"
    return {"bf16": on_gpu and config.bf16,
            "memory_format": torch.channels_last if on_gpu else torch.contiguous_format}


def epoch_batches(train_x: DeviceImages, train_y: torch.Tensor, config: TrainConfig, generator: torch.Generator,
                  memory_format: torch.memory_format = torch.contiguous_format
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """An epoch's (positions, augmented normalized images, labels) batches in a random order, on the
    device (positions: each sample's place in ``train_x``).

    The order and the augmentation are drawn on the CPU with ``generator`` and sent to the device
    once; per batch nothing is copied to the device (but streamed pixels) nor read back from it.
    """
    device, n = train_x.device, len(train_x)
    order = torch.randperm(n, generator=generator)
    params = draw_augmentation(n, config, generator)
    shape = tuple(train_x.images.images.shape[1:])
    transform = None if params is None else Augmentation(params, config.augment_shift, shape, device)
    for idx, x in train_x.iterate(order, config.batch_size, augment=transform, memory_format=memory_format):
        yield idx, x, train_y[idx]


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, train_x: DeviceImages, train_y: torch.Tensor,
                config: TrainConfig, generator: torch.Generator,
                memory_format: torch.memory_format = torch.contiguous_format,
                record_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One epoch of SGD over :func:`epoch_batches`. Returns the summed training loss and, with
    ``record_logits``, each sample's logits from its own training step (N, K) (augmented input, train
    mode, the weights before that step: what the step computes anyway, gathered by position), both on
    the device: read once the epoch is done, the loop never waits for the device."""
    model.train()
    loss_sum = torch.zeros((), device=train_x.device)
    recorded = None
    bf16 = train_x.device.type == "cuda" and config.bf16
    for positions, x, y in epoch_batches(train_x, train_y, config, generator, memory_format):
        with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach(), alpha=len(y))
        if record_logits:
            if recorded is None:  # the number of classes is the network's: known from its first output
                recorded = torch.empty(len(train_x), logits.shape[1], device=logits.device)
            recorded.index_copy_(0, positions, logits.detach().float())
    return loss_sum, recorded


def sgd(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """The recipe's SGD; on CUDA the fused kernel (a few launches per step, not a few per tensor)."""
    fused = device.type == "cuda" and "fused" in inspect.signature(torch.optim.SGD).parameters
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, **({"fused": True} if fused else {}))


EpochCallback = Callable[[int, nn.Module, dict, torch.Tensor, "torch.Tensor | None"], None]

# Where a training's per-sample statistics of each epoch come from (`baselines.statistics`): an eval-mode
# pass over the un-augmented training set after the epoch, or the training pass's own logits (free).
STATISTICS = TRAINING_STATISTICS


def train(
    model: nn.Module,
    train_images: ImageSet,
    train_y: torch.Tensor,
    test_images: ImageSet,
    test_y: torch.Tensor,
    config: TrainConfig,
    *,
    device: torch.device,
    on_epoch_end: EpochCallback,
    corrupted: torch.Tensor | None = None,
    resume: dict | None = None,
    on_state: Callable[[dict], None] | None = None,
    placement: str = "auto",
    workers: int = 2,
    statistics: str = "eval_pass",
    eval_epochs: Collection[int] = (),
    test_epochs: Collection[int] | None = None,
) -> None:
    """Train ``model`` on (train_images, train_y); after each epoch call ``on_epoch_end(epoch, model,
    metrics, train_logits, eval_logits)`` with the training samples' logits (N, K), float32 on the CPU:
    with ``statistics`` "eval_pass" those of an eval-mode pass over the un-augmented samples after the
    epoch (``eval_logits`` the same), with "training_pass" those each sample's training step computed
    (no pass of its own; ``eval_logits`` then only at ``eval_epochs``, None at the others).

    ``metrics`` holds the epoch's mean training loss, accuracy on the given training labels (from the
    epoch's evaluation pass where it has one, else from the training pass: ``fitted_from`` says which),
    (when ``corrupted`` marks the corrupted samples) the fraction of corrupted samples fitted to their
    wrong label, test accuracy (at ``test_epochs`` only where given, NaN at the others), learning rate,
    the seconds of training and those of the evaluation passes. The images are held on ``device`` or
    streamed to it (``placement``, see :class:`memorization_curvature.batches.DeviceImages`); either
    way the batches, and so the trained weights, are the same. Augmentation (shifts padded with black,
    flips) runs on the device.

    Resuming: after ``on_epoch_end``, ``on_state`` receives the complete training state (epoch, model,
    optimizer, learning-rate schedule, random generators); passing such a state back as ``resume``
    continues with the next epoch exactly as the uninterrupted run would have.
    """
    if statistics not in STATISTICS:
        raise ValueError(f"statistics {statistics!r}: expected one of {STATISTICS}")
    generator = torch.Generator().manual_seed(config.seed)
    on_gpu = device.type == "cuda"
    lane = eval_lane(device, config)  # the evaluation passes in training's fast lane on CUDA
    # GPU speed: images on the device (or streamed ahead), NHWC convolutions, bf16 autocast. The CPU
    # path stays plain fp32 so that CPU runs are deterministic.
    memory_format = torch.channels_last if on_gpu else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    train_x = DeviceImages(train_images, device, placement, workers)
    test_x = DeviceImages(test_images, device, placement, workers)
    train_y = train_y.to(device)
    optimizer = sgd(model, config, device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_epochs(), config.lr_gamma)
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])  # what a model drawing random numbers (dropout) continues from
        first_epoch = resume["epoch"] + 1
    n = len(train_x)
    for epoch in range(first_epoch, config.epochs + 1):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, recorded = train_epoch(model, optimizer, train_x, train_y, config, generator, memory_format,
                                         record_logits=statistics == "training_pass")
        scheduler.step()
        if on_gpu:
            torch.cuda.synchronize()
        trained = time.perf_counter()
        evaluate = recorded is None or epoch in eval_epochs
        eval_logits = predict_logits(model, train_x, **lane) if evaluate else None
        train_logits = eval_logits if recorded is None else recorded.cpu()
        # what the network fits: from an evaluation pass where there is one (the last epoch has one)
        fitted = (train_logits if eval_logits is None else eval_logits).argmax(1) == train_y.cpu()
        metrics = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": float(loss_sum) / n,
            "train_acc_given": float(fitted.float().mean()),
            "corrupted_fitted": float(fitted[corrupted].float().mean()) if corrupted is not None and corrupted.any() else float("nan"),
            "fitted_from": "training_pass" if eval_logits is None else "eval_pass",
            "test_acc": float((predict_logits(model, test_x, **lane).argmax(1) == test_y).float().mean())
            if len(test_y) and (test_epochs is None or epoch in test_epochs) else float("nan"),
            "seconds": trained - started,
            "eval_seconds": time.perf_counter() - trained,
        }
        log.info(
            "epoch %d/%d loss %.4f train-acc(given) %.4f corrupted-fitted %.4f test-acc %.4f (%.1fs)",
            epoch, config.epochs, metrics["train_loss"], metrics["train_acc_given"],
            metrics["corrupted_fitted"], metrics["test_acc"], metrics["seconds"],
        )
        on_epoch_end(epoch, model, metrics, train_logits, eval_logits)
        if on_state is not None:
            on_state({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                      "torch_rng": torch.get_rng_state(), "epoch_seconds": time.perf_counter() - started})
    model.to(memory_format=torch.contiguous_format)


def train_subset(model: nn.Module, prepared, labels: torch.Tensor, index, config: TrainConfig, *,
                 device: torch.device, placement: str = "auto", workers: int = 2,
                 on_epoch_end: EpochCallback | None = None, resume: dict | None = None,
                 on_state: Callable[[dict], None] | None = None, test_epochs: Collection[int] | None = None) -> None:
    """Train ``model`` on the training samples of ``prepared`` at ``index`` with ``labels`` (one per
    training sample), tested on its test set (after the ``test_epochs``; None: every epoch): the extra
    trainings (cross-validation folds, SSFT's halves, retraining after cleaning, shadow models),
    resumable like :func:`train`. Their callers read the test accuracy and evaluate what they need
    themselves, so the training samples' statistics come from the training pass: no evaluation pass
    over them (the weights are the same either way, also whatever the epochs tested)."""
    train(model, ImageSet.of(prepared, "train").subset(index), labels[index], ImageSet.of(prepared, "test"),
          torch.from_numpy(prepared.test_labels), config, device=device, placement=placement, workers=workers,
          on_epoch_end=on_epoch_end or (lambda *args: None), resume=resume, on_state=on_state,
          statistics="training_pass", test_epochs=test_epochs)
