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

import contextlib
import os
import socket
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .io import BadInput

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder")

# Where torchvision expects each dataset's files under the data root, for the error message.
_EXPECTED_FILES = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashion_mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "cifar100": "cifar-100-python/{train,test,meta}",
}


class DatasetNotFound(BadInput, FileNotFoundError):
    """The dataset's files are not where they must be, and could not be downloaded."""


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


def _split(images, labels, test_fraction: float, split_seed: int):
    """Stratified train/test split; returns train and test index arrays, sorted."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    index = np.arange(len(labels), dtype=np.int64)
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=split_seed, stratify=labels)
    return np.sort(train_idx), np.sort(test_idx)


@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    """A download without a network fails after ``seconds`` instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _without_checksums(cls):
    """torchvision's CIFAR reader, checking that the files exist but not their MD5 sums.

    For copies that are not the official files (a subset, a test fixture); the reader is the same.
    """

    def files_exist(self) -> bool:
        names = [name for name, _ in self.train_list + self.test_list]
        return all(os.path.isfile(os.path.join(self.root, self.base_folder, n)) for n in names)

    return type(f"Unverified{cls.__name__}", (cls,), {"_check_integrity": files_exist,
                                                       "meta": {**cls.meta, "md5": None}})


def _torchvision_split(name: str, root: str, train: bool, download: bool, verify_checksums: bool):
    """(images uint8 (N, C, H, W), labels int64, class names) of one split of a torchvision dataset."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST,
           "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    if name.startswith("cifar") and not verify_checksums:
        cls = _without_checksums(cls)
    try:
        with _network_timeout(60):
            dataset = cls(root, train=train, download=download)
    except (RuntimeError, OSError) as error:
        hint = ("the download failed" if download else
                "set data.download: true where a network is reachable, or copy the files there")
        raise DatasetNotFound(
            f"{name}: dataset files not found or corrupted under data.root={root!r}; expected "
            f"{os.path.join(root, _EXPECTED_FILES[name])} ({hint}; torchvision said: {error})"
        ) from None
    images = np.asarray(dataset.data, dtype=np.uint8)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)  # -> (N, C, H, W)
    return np.ascontiguousarray(images), np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes)


def _image_folder(path: str, image_size: int):
    """Every image under ``path/<class>/``, as RGB resized to image_size x image_size."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    if not os.path.isdir(path):
        raise DatasetNotFound(f"imagefolder: no folder {path!r}; expected one sub-folder of images per class there")
    try:
        dataset = ImageFolder(path)
    except (FileNotFoundError, RuntimeError) as error:
        raise DatasetNotFound(f"imagefolder: {error}") from None
    images = np.empty((len(dataset), 3, image_size, image_size), dtype=np.uint8)
    for i, (file, _) in enumerate(dataset.samples):
        with Image.open(file) as image:
            resized = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
        images[i] = np.asarray(resized).transpose(2, 0, 1)
    return images, np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes)


def prepare(
    name: str,
    *,
    test_fraction: float,
    split_seed: int,
    root: str = "data",
    download: bool = False,
    verify_checksums: bool = True,
    image_size: int = 32,
) -> PreparedData:
    """Load a dataset with its train/test split.

    digits: scikit-learn's bundled 8x8 digits, split stratified by ``test_fraction`` and ``split_seed``.
    mnist, fashion_mnist, cifar10, cifar100: torchvision's readers of the official files under
    ``root`` (fetched there first if ``download``), with the official train/test split.
    imagefolder: ``root/train/<class>/*`` (and ``root/test/<class>/*`` or ``root/val/<class>/*`` if
    present, else a stratified split of train), resized to ``image_size``.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = bunch.images.astype(np.uint8)[:, None, :, :]  # values 0..16
        labels, pixel_max = bunch.target.astype(np.int64), 16.0
        class_names = [str(c) for c in bunch.target_names]
        train_idx, test_idx = _split(images, labels, test_fraction, split_seed)
        train = images[train_idx], labels[train_idx]
        test = images[test_idx], labels[test_idx]
    elif name in _EXPECTED_FILES:
        pixel_max = 255.0
        *train, class_names = _torchvision_split(name, root, True, download, verify_checksums)
        *test, _ = _torchvision_split(name, root, False, download, verify_checksums)
        train_idx = np.arange(len(train[1]), dtype=np.int64)
    elif name == "imagefolder":
        pixel_max = 255.0
        *train, class_names = _image_folder(os.path.join(root, "train"), image_size)
        held_out = [os.path.join(root, d) for d in ("test", "val") if os.path.isdir(os.path.join(root, d))]
        if held_out:
            *test, test_classes = _image_folder(held_out[0], image_size)
            if test_classes != class_names:
                raise ValueError(f"imagefolder: classes of {held_out[0]} ({test_classes}) differ from train ({class_names})")
            train_idx = np.arange(len(train[1]), dtype=np.int64)
        else:
            train_idx, test_idx = _split(*train, test_fraction, split_seed)
            test = train[0][test_idx], train[1][test_idx]
            train = train[0][train_idx], train[1][train_idx]
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    scaled = train[0].astype(np.float64) / pixel_max
    channel_axes = (0, 2, 3)
    return PreparedData(
        train_images=train[0],
        train_labels=train[1],
        test_images=test[0],
        test_labels=test[1],
        train_source_index=train_idx,
        mean=scaled.mean(axis=channel_axes).astype(np.float32),
        std=np.maximum(scaled.std(axis=channel_axes), 1e-6).astype(np.float32),
        pixel_max=pixel_max,
        class_names=np.asarray(class_names),
    )


def normalize(images: np.ndarray, data: PreparedData):
    """Raw uint8 images (N, C, H, W) -> float32 tensor the network sees."""
    import torch  # here, not at the top: light steps need no torch
    x = torch.from_numpy(images.astype(np.float32) / np.float32(data.pixel_max))
    mean = torch.from_numpy(data.mean).view(1, -1, 1, 1)
    std = torch.from_numpy(data.std).view(1, -1, 1, 1)
    return (x - mean) / std
