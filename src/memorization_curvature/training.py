"""Plain supervised training with SGD, a step schedule and optional on-device augmentation."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .batches import DeviceImages, ImageSet

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


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def augment(x: torch.Tensor, shift: int, flip: bool, pad_value: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random per-sample translation (zero-pixel padding) and horizontal flip of a batch (B, C, H, W)."""
    if shift > 0:
        b, c, hgt, wid = x.shape
        padded = pad_value.view(1, c, 1, 1).expand(b, c, hgt + 2 * shift, wid + 2 * shift).clone()
        padded[:, :, shift : shift + hgt, shift : shift + wid] = x
        dy = torch.randint(0, 2 * shift + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * shift + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(hgt, device=x.device)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(wid, device=x.device)[None, :])[:, None, None, :]
        batch_idx = torch.arange(b, device=x.device)[:, None, None, None]
        chan_idx = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch_idx, chan_idx, rows, cols]
    if flip:
        mask = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


@torch.no_grad()
def predict_logits(model: nn.Module, images: DeviceImages, batch_size: int = 1024) -> torch.Tensor:
    """Eval-mode logits (N, K) of ``model`` on the un-augmented ``images``, float32 on the CPU."""
    model.eval()
    logits = [model(x).float().cpu() for _, x in images.in_order(batch_size)]
    return torch.cat(logits) if logits else torch.empty(0, 0)


EpochCallback = Callable[[int, nn.Module, dict, torch.Tensor], None]


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
) -> None:
    """Train ``model`` on (train_images, train_y); after each epoch call ``on_epoch_end(epoch, model,
    metrics, train_logits)``, with the eval-mode logits (N, K) of the un-augmented training samples.

    ``metrics`` holds the epoch's mean training loss, eval-mode accuracy on the given training labels,
    (when ``corrupted`` marks the corrupted samples) the fraction of corrupted samples fitted to their
    wrong label, test accuracy, learning rate, the seconds of training and those of the evaluation
    passes. The images are held on ``device`` or streamed to it (``placement``, see
    :class:`memorization_curvature.batches.DeviceImages`); either way the batches, and so the
    trained weights, are the same. Augmentation (shifts padded with black, flips) runs on the device.

    Resuming: after ``on_epoch_end``, ``on_state`` receives the complete training state (epoch, model,
    optimizer, learning-rate schedule, random generator); passing such a state back as ``resume``
    continues with the next epoch exactly as the uninterrupted run would have.
    """
    generator = torch.Generator().manual_seed(config.seed)
    on_gpu = device.type == "cuda"
    # GPU speed: images on the device (or streamed ahead), NHWC convolutions, bf16 autocast. The CPU
    # path stays plain fp32 so that CPU runs are deterministic.
    memory_format = torch.channels_last if on_gpu else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    train_x = DeviceImages(train_images, device, placement, workers)
    test_x = DeviceImages(test_images, device, placement, workers)
    train_y = train_y.to(device)
    # the value a black (zero) pixel has after normalization, used to pad shifted images
    pad_value = torch.from_numpy(-train_images.mean / train_images.std).to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_epochs(), config.lr_gamma)
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])  # holds the current learning rate
        scheduler.last_epoch = resume["epoch"]
        generator.set_state(resume["generator"])
        first_epoch = resume["epoch"] + 1
    n = len(train_x)
    for epoch in range(first_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum = torch.zeros((), device=device)
        lr = optimizer.param_groups[0]["lr"]
        for idx, x in train_x.iterate(order, config.batch_size):
            x = augment(x, config.augment_shift, config.augment_flip, pad_value, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu and config.bf16):
                loss = F.cross_entropy(model(x.contiguous(memory_format=memory_format)), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(idx)
        scheduler.step()
        if on_gpu:
            torch.cuda.synchronize()
        trained = time.perf_counter()
        train_logits = predict_logits(model, train_x)
        fitted = train_logits.argmax(1) == train_y.cpu()
        metrics = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": float(loss_sum) / n,
            "train_acc_given": float(fitted.float().mean()),
            "corrupted_fitted": float(fitted[corrupted].float().mean()) if corrupted is not None and corrupted.any() else float("nan"),
            "test_acc": float((predict_logits(model, test_x).argmax(1) == test_y).float().mean())
            if len(test_y) else float("nan"),
            "seconds": trained - started,
            "eval_seconds": time.perf_counter() - trained,
        }
        log.info(
            "epoch %d/%d loss %.4f train-acc(given) %.4f corrupted-fitted %.4f test-acc %.4f (%.1fs)",
            epoch, config.epochs, metrics["train_loss"], metrics["train_acc_given"],
            metrics["corrupted_fitted"], metrics["test_acc"], metrics["seconds"],
        )
        on_epoch_end(epoch, model, metrics, train_logits)
        if on_state is not None:
            on_state({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "generator": generator.get_state()})
    model.to(memory_format=torch.contiguous_format)
