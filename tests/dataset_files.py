"""Tiny datasets written in each dataset's real on-disk format, from scikit-learn's real digits.

The files are read by the same torchvision readers users run: IDX files for MNIST and
Fashion-MNIST, the pickled batch files for CIFAR-10/100, class folders of PNGs for imagefolder.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def digit_images(n: int, size: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n real digits, upscaled to size x size uint8 (0..255), and their labels."""
    bunch = load_digits()
    index = np.arange(offset, offset + n) % len(bunch.target)
    images = np.stack([
        np.asarray(Image.fromarray((bunch.images[i] * 255 / 16).astype(np.uint8)).resize((size, size)))
        for i in index
    ])
    return images, bunch.target[index].astype(np.int64)


def _write_idx(path: Path, array: np.ndarray) -> None:
    # IDX: two zero bytes, type 0x08 (uint8), number of dimensions, big-endian sizes, then the data
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 120, n_test: int = 40) -> None:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (folder FashionMNIST for Fashion-MNIST)."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, n_train)):
        images, labels = digit_images(n, 28, offset)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def _rgb(images: np.ndarray) -> np.ndarray:
    """Gray (N, H, W) -> colour (N, 3, H, W), each channel a different tint."""
    return np.stack([images, (images * 0.7).astype(np.uint8), 255 - images], axis=1)


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def write_cifar10(root: Path, per_batch: int = 24, n_test: int = 40) -> None:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(5):
        images, labels = digit_images(per_batch, 32, b * per_batch)
        _pickle(folder / f"data_batch_{b + 1}", {"data": _rgb(images).reshape(per_batch, -1), "labels": labels.tolist()})
    images, labels = digit_images(n_test, 32, 5 * per_batch)
    _pickle(folder / "test_batch", {"data": _rgb(images).reshape(n_test, -1), "labels": labels.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)]})


def write_cifar100(root: Path, n_train: int = 120, n_test: int = 40) -> None:
    """``root/cifar-100-python/{train, test, meta}`` (only the first 10 of the 100 classes used)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, offset in (("train", n_train, 0), ("test", n_test, n_train)):
        images, labels = digit_images(n, 32, offset)
        _pickle(folder / name, {"data": _rgb(images).reshape(n, -1), "fine_labels": labels.tolist(),
                                "coarse_labels": (labels // 5).tolist()})
    _pickle(folder / "meta", {"fine_label_names": [f"fine{c:02d}" for c in range(100)],
                              "coarse_label_names": [f"coarse{c:02d}" for c in range(20)]})


def write_imagefolder(root: Path, per_class: int = 12, size: int = 20, test_per_class: int = 0) -> None:
    """``root/train/<class>/<i>.png`` (and ``root/test/...`` when test_per_class > 0), RGB PNGs."""
    images, labels = digit_images(10 * (per_class + test_per_class) * 4, size)
    counts: dict[tuple[str, int], int] = {}
    for image, label in zip(_rgb(images), labels):
        for split, limit in (("train", per_class), ("test", test_per_class)):
            key = (split, int(label))
            if counts.get(key, 0) < limit:
                folder = Path(root) / split / f"digit_{label}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{counts.get(key, 0):03d}.png")
                counts[key] = counts.get(key, 0) + 1
                break
