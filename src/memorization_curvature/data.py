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
import functools
import logging
import os
import socket
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .choices import DATASETS
from .io import BadInput, load_npz

log = logging.getLogger(__name__)

# The files each torchvision dataset needs under data.root, in torchvision's layout.
DATA_FILES = {
    "mnist": tuple(f"MNIST/raw/{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")),
    "fashion_mnist": tuple(f"FashionMNIST/raw/{p}-{k}-ubyte" for p in ("train", "t10k")
                           for k in ("images-idx3", "labels-idx1")),
    "cifar10": tuple(f"cifar-10-batches-py/{f}" for f in
                     ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                      "batches.meta")),
    "cifar100": tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
}


def _expected_files(name: str, root: str) -> str:
    """Where torchvision expects the dataset's files under the data root, for the error message."""
    return ", ".join(os.path.join(root, f) for f in DATA_FILES[name])


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


def load_prepared(path) -> PreparedData:
    """A prepared dataset file; its images are memory-mapped, read only where a step needs them."""
    return PreparedData.from_arrays(load_npz(path, mmap=("train_images", "test_images")))


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
    """torchvision's CIFAR reader with no MD5 sums in its file lists: torchvision then checks that the
    files exist, not their sums. For copies that are not the official files (a subset, a test
    fixture); the reader is the same."""
    unsummed = {name: [[file, None] for file, _ in getattr(cls, name)] for name in ("train_list", "test_list")}
    return type(f"Unverified{cls.__name__}", (cls,), {**unsummed, "meta": {**cls.meta, "md5": None}})


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
            f"{_expected_files(name, root)} ({hint}; torchvision said: {error})"
        ) from None
    images = np.asarray(dataset.data, dtype=np.uint8)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)  # -> (N, C, H, W)
    return np.ascontiguousarray(images), np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes)


@functools.cache
def _resize_and_crop(image_size: int):
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(image_size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
                       v2.CenterCrop(image_size)])


def _load_image(file: str, image_size: int) -> np.ndarray:
    """One image as RGB uint8 (3, S, S): the shorter side resized to S, then the centre S x S cut out
    (torchvision's v2 Resize and CenterCrop, on the PIL image)."""
    from PIL import Image

    with Image.open(file) as image:
        return np.asarray(_resize_and_crop(image_size)(image.convert("RGB"))).transpose(2, 0, 1)


def _load_images(files: list[str], image_size: int) -> np.ndarray:
    return np.stack([_load_image(f, image_size) for f in files]) if files else np.empty((0, 3, image_size, image_size),
                                                                                          np.uint8)


def new_image_array(shape: tuple[int, ...], scratch: str | None, name: str) -> np.ndarray:
    """uint8 array in memory, or (with a scratch folder) in a file there, for image sets larger than memory."""
    if scratch is None:
        return np.empty(shape, dtype=np.uint8)
    return np.lib.format.open_memmap(os.path.join(scratch, f"{name}.npy"), mode="w+", dtype=np.uint8, shape=shape)


_CHUNK = 256  # images per decoding task


def _image_folder(path: str, image_size: int, workers: int = 1, scratch: str | None = None, name: str = "images"):
    """Every image under ``path/<class>/`` (see :func:`_load_image`), decoded by ``workers`` processes."""
    from torchvision.datasets import ImageFolder

    if not os.path.isdir(path):
        raise DatasetNotFound(f"imagefolder: no folder {path!r}; expected one sub-folder of images per class there")
    try:
        dataset = ImageFolder(path)
    except (FileNotFoundError, RuntimeError) as error:
        raise DatasetNotFound(f"imagefolder: {error}") from None
    files = [file for file, _ in dataset.samples]
    images = new_image_array((len(files), 3, image_size, image_size), scratch, name)
    chunks = [files[i : i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    decode = functools.partial(_load_images, image_size=image_size)
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(chunks) > 1:
            import multiprocessing

            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            decoded = pool.imap(decode, chunks)
        else:
            decoded = map(decode, chunks)
        for k, block in enumerate(decoded):
            images[k * _CHUNK : k * _CHUNK + len(block)] = block
            if len(chunks) >= 20 and (k + 1) % (len(chunks) // 10) == 0:
                log.info("%s: decoded %d/%d images", path, min((k + 1) * _CHUNK, len(files)), len(files))
    return images, np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes)


def _take(images: np.ndarray, index: np.ndarray, scratch: str | None, name: str) -> np.ndarray:
    """``images[index]``, copied a chunk at a time (into a scratch file when there is one)."""
    out = new_image_array((len(index), *images.shape[1:]), scratch, name)
    for start in range(0, len(index), 4096):
        out[start : start + 4096] = images[index[start : start + 4096]]
    return out


def _channel_statistics(images: np.ndarray, pixel_max: float, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the images scaled to [0, 1], two passes a chunk at a time in float64
    (for up to ``chunk`` images the very numbers of numpy's mean and std over the whole array)."""
    def blocks():
        for start in range(0, len(images), chunk):
            yield images[start : start + chunk].astype(np.float64) / pixel_max

    count = len(images) * images.shape[2] * images.shape[3]
    mean = sum(block.sum(axis=(0, 2, 3)) for block in blocks()) / count
    centred = mean.reshape(1, -1, 1, 1)
    variance = sum(np.square(block - centred).sum(axis=(0, 2, 3)) for block in blocks()) / count
    return mean.astype(np.float32), np.maximum(np.sqrt(variance), 1e-6).astype(np.float32)


def prepare(
    name: str,
    *,
    test_fraction: float,
    split_seed: int,
    root: str = "data",
    download: bool = False,
    verify_checksums: bool = True,
    image_size: int = 32,
    workers: int = 1,
    scratch: str | None = None,
) -> PreparedData:
    """Load a dataset with its train/test split.

    digits: scikit-learn's bundled 8x8 digits, split stratified by ``test_fraction`` and ``split_seed``.
    mnist, fashion_mnist, cifar10, cifar100: torchvision's readers of the official files under
    ``root`` (fetched there first if ``download``), with the official train/test split.
    imagefolder: ``root/train/<class>/*`` (and ``root/test/<class>/*`` or ``root/val/<class>/*`` if
    present, else a stratified split of train), the shorter side resized to ``image_size`` and the
    centre square kept, decoded by ``workers`` processes. With a ``scratch`` folder the images are
    written to files there as they are decoded, never held in memory (ImageNet: 1.28 million images).
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
    elif name in DATA_FILES:
        pixel_max = 255.0
        *train, class_names = _torchvision_split(name, root, True, download, verify_checksums)
        *test, _ = _torchvision_split(name, root, False, download, verify_checksums)
        train_idx = np.arange(len(train[1]), dtype=np.int64)
    elif name == "imagefolder":
        pixel_max = 255.0
        held_out = [os.path.join(root, d) for d in ("test", "val") if os.path.isdir(os.path.join(root, d))]
        *train, class_names = _image_folder(os.path.join(root, "train"), image_size, workers, scratch,
                                            "all" if not held_out else "train")
        if held_out:
            *test, test_classes = _image_folder(held_out[0], image_size, workers, scratch, "test")
            if test_classes != class_names:
                raise DatasetNotFound(f"imagefolder: the classes of {held_out[0]} ({test_classes}) differ from "
                                      f"those of train ({class_names}); expected the same class folders")
            train_idx = np.arange(len(train[1]), dtype=np.int64)
        else:
            train_idx, test_idx = _split(*train, test_fraction, split_seed)
            test = _take(train[0], test_idx, scratch, "test"), train[1][test_idx]
            train = _take(train[0], train_idx, scratch, "train"), train[1][train_idx]
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    mean, std = _channel_statistics(train[0], pixel_max)
    return PreparedData(
        train_images=train[0],
        train_labels=train[1],
        test_images=test[0],
        test_labels=test[1],
        train_source_index=train_idx,
        mean=mean,
        std=std,
        pixel_max=pixel_max,
        class_names=np.asarray(class_names),
    )
