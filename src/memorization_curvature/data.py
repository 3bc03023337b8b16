"""Datasets as arrays: raw images, labels, a fixed train/test split and the normalization.

A prepared dataset is one ``.npz`` file holding

- ``train_images``, ``test_images``: uint8, shape (N, C, H, W), raw pixel values in [0, pixel_max];
- ``train_labels``, ``test_labels``: int64, shape (N,), the dataset's own (true) labels;
- ``train_source_index``: int64, shape (N_train,), each training image's index in the source dataset;
- ``mean``, ``std``: float32, shape (C,), per-channel statistics of the training images scaled to [0, 1];
- ``pixel_max``: the value of a white pixel (16 for digits, 255 for 8-bit images);
- ``class_names``: str, shape (K,).

Networks always see :func:`normalize` of the raw images: ``(image / pixel_max - mean) / std``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DATASETS = ("digits",)


@dataclass(frozen=True)
class PreparedData:
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_source_index: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    pixel_max: float
    class_names: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {name: getattr(self, name) for name in self.__dataclass_fields__}
        arrays["pixel_max"] = np.asarray(self.pixel_max, dtype=np.float32)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "PreparedData":
        fields = {name: arrays[name] for name in cls.__dataclass_fields__}
        fields["pixel_max"] = float(fields["pixel_max"])
        return cls(**fields)


def load_source(name: str) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Return (images uint8 (N, C, H, W), labels int64 (N,), pixel_max, class names) of a dataset."""
    if name == "digits":
        bunch = load_digits()
        images = bunch.images.astype(np.uint8)[:, None, :, :]  # values 0..16
        return images, bunch.target.astype(np.int64), 16.0, [str(c) for c in bunch.target_names]
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")


def prepare(name: str, *, test_fraction: float, split_seed: int) -> PreparedData:
    """Load a dataset and split it, stratified by class, into a fixed train and test set."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    images, labels, pixel_max, class_names = load_source(name)
    source_index = np.arange(len(labels), dtype=np.int64)
    train_idx, test_idx = train_test_split(
        source_index, test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    scaled = images[train_idx].astype(np.float64) / pixel_max
    channel_axes = (0, 2, 3)
    return PreparedData(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
        train_source_index=train_idx,
        mean=scaled.mean(axis=channel_axes).astype(np.float32),
        std=scaled.std(axis=channel_axes).astype(np.float32),
        pixel_max=pixel_max,
        class_names=np.asarray(class_names),
    )


def normalize(images: np.ndarray, data: PreparedData) -> torch.Tensor:
    """Raw uint8 images (N, C, H, W) -> float32 tensor the network sees."""
    x = torch.from_numpy(images.astype(np.float32) / np.float32(data.pixel_max))
    mean = torch.from_numpy(data.mean).view(1, -1, 1, 1)
    std = torch.from_numpy(data.std).view(1, -1, 1, 1)
    return (x - mean) / std
