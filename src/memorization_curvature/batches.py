"""How images reach the network: held on the device when they fit, else streamed from the file.

Images stay uint8 until they are on the device and are normalized there: a quarter of the memory and
of the transfers of float32. A dataset whose pixels fit (by default: at most half the device's free
memory; CIFAR-10 takes 150 MB) is copied to the device once and batches are gathered there. A larger
one (ImageNet at full size) is read batch by batch from the memory-mapped prepared file by DataLoader
worker processes, in pinned memory, a few batches ahead of the network.

Nothing in the per-batch path waits for the device or copies fresh host data to it, except the
streamed pixels themselves: batch positions are slices of an order that went to the device once per
pass, and augmentation is read from per-sample parameters drawn once per epoch (see
:mod:`memorization_curvature.training`). Held images are gathered, augmented and normalized a chunk of
batches at a time, so a small batch costs the host a slice, not a dozen operations.
"""

from __future__ import annotations

import logging
import mmap
import os
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from .choices import PLACEMENTS

log = logging.getLogger(__name__)



class ImageSet:
    """uint8 images (N, C, H, W), in memory or memory-mapped, with the normalization networks see.

    ``index`` selects and orders the images used (a cross-validation fold, a half for SSFT) without
    copying them.
    """

    def __init__(self, images: np.ndarray, mean: np.ndarray, std: np.ndarray, pixel_max: float,
                 index: np.ndarray | None = None):
        self.images = images
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.pixel_max = float(pixel_max)
        self.index = np.arange(len(images)) if index is None else np.asarray(index, dtype=np.int64)

    def __getstate__(self) -> dict:
        # a memory map pickles as a full copy of its data: send its file's name and layout instead, so
        # that a loader worker started by spawn or forkserver maps the file itself
        state = dict(self.__dict__)
        if isinstance(self.images, np.memmap) and isinstance(self.images.base, mmap.mmap):
            order = "F" if self.images.flags.f_contiguous and not self.images.flags.c_contiguous else "C"
            state["images"] = _MappedFile(self.images.filename, self.images.offset, self.images.shape,
                                          self.images.dtype.str, order)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], _MappedFile):
            state["images"] = state["images"].open()
        self.__dict__.update(state)

    @classmethod
    def of(cls, prepared, which: str = "train") -> "ImageSet":
        """The training (or test) images of a :class:`memorization_curvature.data.PreparedData`."""
        return cls(getattr(prepared, f"{which}_images"), prepared.mean, prepared.std, prepared.pixel_max)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.images.shape[1:])) * self.images.itemsize

    def subset(self, positions) -> "ImageSet":
        return ImageSet(self.images, self.mean, self.std, self.pixel_max, self.index[np.asarray(positions)])

    def pixels(self, positions) -> np.ndarray:
        """uint8 images at ``positions`` (in that order); a mapped file is read in ascending order."""
        rows = self.index[np.asarray(positions, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.images.shape[1:]), dtype=self.images.dtype)
        out[order] = self.images[rows[order]]
        return out

    def normalization(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, offset) float32 tensors on ``device``, shaped to broadcast over (B, C, H, W):
        normalized = pixel * scale + offset = (pixel / white - mean) / std."""
        std = self.std.astype(np.float64)
        scale = 1.0 / (self.pixel_max * std)
        offset = -self.mean.astype(np.float64) / std
        return tuple(torch.from_numpy(v.astype(np.float32)).to(device).view(1, -1, 1, 1) for v in (scale, offset))

    def normalize(self, pixels: torch.Tensor, normalization: tuple | None = None) -> torch.Tensor:
        """uint8 (B, C, H, W) on any device -> the float32 tensor the network sees, on that device
        (``normalization``: :meth:`normalization` for that device, made once for many batches); two
        operations, whatever the batch."""
        scale, offset = normalization or self.normalization(pixels.device)
        return torch.addcmul(offset, pixels.to(torch.float32), scale)


class _MappedFile(NamedTuple):
    """Where a memory-mapped array lives, to map it again in another process."""

    filename: str
    offset: int
    shape: tuple
    dtype: str
    order: str

    def open(self) -> np.memmap:
        return np.memmap(self.filename, dtype=np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape,
                         order=self.order)


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


class _BatchReader(torch.utils.data.Dataset):
    """Item k = the uint8 pixels of the k-th batch of positions (read in a worker process)."""

    def __init__(self, images: ImageSet, batches: list[np.ndarray]):
        self.images, self.batches = images, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> torch.Tensor:
        return torch.from_numpy(self.pixels(k))

    def pixels(self, k: int) -> np.ndarray:
        return self.images.pixels(self.batches[k])


# Held images are prepared this many bytes of float32 at a time (a chunk of whole batches).
CHUNK_BYTES = 64 << 20
Augment = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (uint8 pixels, positions) -> pixels


class DeviceImages:
    """An :class:`ImageSet` served to ``device`` in batches of normalized float32 images.

    ``placement``: ``device`` copies all pixels to the device once; ``stream`` reads each batch from
    the (memory-mapped) array in ``workers`` background processes (``context``: their start method,
    default the platform's); ``auto`` picks ``device`` when the pixels take at most half the device's
    free memory.
    """

    def __init__(self, images: ImageSet, device: torch.device, placement: str = "auto", workers: int = 2,
                 context: str | None = None):
        if placement not in PLACEMENTS:
            raise ValueError(f"placement {placement!r}; expected one of {', '.join(PLACEMENTS)}")
        self.images, self.device, self.workers, self.context = images, torch.device(device), workers, context
        if placement == "auto":
            placement = "device" if images.nbytes <= _free_bytes(self.device) // 2 else "stream"
        self.placement = placement
        self.normalization = images.normalization(self.device)
        self.resident = None
        if placement == "device":
            self.resident = torch.from_numpy(images.pixels(np.arange(len(images)))).to(self.device)
        log.info("%d images (%.1f MB of pixels): %s", len(images), images.nbytes / 1e6,
                 "held on the device" if self.resident is not None else f"streamed by {workers} worker(s)")

    def __len__(self) -> int:
        return len(self.images)

    def _chunk(self, batch_size: int) -> int:
        """Samples prepared at once from held images: whole batches, about CHUNK_BYTES of float32."""
        sample_bytes = 4 * int(np.prod(self.images.images.shape[1:]))
        return batch_size * max(1, min(64, CHUNK_BYTES // (sample_bytes * batch_size)))

    def iterate(self, order: torch.Tensor, batch_size: int, augment: Augment | None = None,
                memory_format: torch.memory_format = torch.contiguous_format
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(positions on the device, normalized images in ``memory_format``) for consecutive
        ``batch_size`` slices of ``order``; ``augment`` transforms the uint8 pixels of each batch
        (given their positions) first."""
        on_device = order.to(self.device)  # once per pass
        if self.resident is not None:
            chunk = self._chunk(batch_size)
            for start in range(0, len(order), chunk):
                positions = on_device[start : start + chunk]
                pixels = self.resident[positions]
                if augment is not None:
                    pixels = augment(pixels, positions)
                x = self.images.normalize(pixels, self.normalization).contiguous(memory_format=memory_format)
                for offset in range(0, len(positions), batch_size):  # views: no work per batch
                    yield positions[offset : offset + batch_size], x[offset : offset + batch_size]
            return
        host_order = order.cpu()  # once per pass
        batches = list(torch.split(host_order, batch_size))
        reader = _BatchReader(self.images, [b.numpy() for b in batches])
        if self.workers == 0:
            pixels_per_batch = (torch.from_numpy(reader.pixels(k)) for k in range(len(batches)))
        else:
            pixels_per_batch = torch.utils.data.DataLoader(
                reader, batch_size=None, shuffle=False, num_workers=self.workers,
                pin_memory=self.device.type == "cuda", prefetch_factor=4, persistent_workers=False,
                multiprocessing_context=self.context)
        for start, pixels in zip(range(0, len(order), batch_size), pixels_per_batch):
            positions = on_device[start : start + batch_size]
            pixels = pixels.to(self.device, non_blocking=True)
            if augment is not None:
                pixels = augment(pixels, positions)
            yield positions, self.images.normalize(pixels, self.normalization).contiguous(memory_format=memory_format)

    def in_order(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate(torch.arange(len(self), device=self.device), batch_size)


class LabelledBatches:
    """(normalized images, labels, sample ids) in data order, all on ``device``: scoring's input.

    The images reach the device as uint8 and are normalized there (:class:`DeviceImages`, with its
    ``placement`` and ``workers``). Sample ids start at ``first_id`` (the test set's follow the
    training set's, so that no two samples share probes). ``num_samples`` lets the scorer report its
    progress.
    """

    def __init__(self, images: ImageSet, labels: np.ndarray, batch_size: int, first_id: int = 0,
                 device: torch.device | str = "cpu", placement: str = "auto", workers: int = 2):
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
        self.images = DeviceImages(images, torch.device(device), placement, workers)
        self.labels = torch.tensor(np.asarray(labels), dtype=torch.long).to(self.images.device)  # a copy: labels may be read-only
        self.batch_size, self.first_id = batch_size, first_id
        self.num_samples = len(images)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for positions, x in self.images.in_order(self.batch_size):
            yield x, self.labels[positions], positions + self.first_id


def normalize_images(images: np.ndarray, data) -> torch.Tensor:
    """Raw uint8 images (N, C, H, W) of a PreparedData ``data`` -> the float32 tensor the network sees."""
    return ImageSet(images, data.mean, data.std, data.pixel_max).normalize(torch.from_numpy(np.array(images)))
