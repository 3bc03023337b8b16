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


# Each writer returns what it wrote, {"train": (images, labels), "test": (images, labels)}, images as
# uint8 (N, C, H, W) in the order of the files: what the reader must give back.
Written = dict[str, tuple[np.ndarray, np.ndarray]]


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 120, n_test: int = 40) -> Written:
    """``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (folder FashionMNIST for Fashion-MNIST)."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n, offset in (("train", "train", n_train, 0), ("test", "t10k", n_test, n_train)):
        images, labels = digit_images(n, 28, offset)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[split] = images[:, None], labels
    return written


def _rgb(images: np.ndarray) -> np.ndarray:
    """Gray (N, H, W) -> colour (N, 3, H, W), each channel a different tint."""
    return np.stack([images, (images * 0.7).astype(np.uint8), 255 - images], axis=1)


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def write_cifar10(root: Path, per_batch: int = 24, n_test: int = 40) -> Written:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train = [digit_images(per_batch, 32, b * per_batch) for b in range(5)]
    for b, (images, labels) in enumerate(train):
        _pickle(folder / f"data_batch_{b + 1}", {"data": _rgb(images).reshape(per_batch, -1), "labels": labels.tolist()})
    images, labels = digit_images(n_test, 32, 5 * per_batch)
    _pickle(folder / "test_batch", {"data": _rgb(images).reshape(n_test, -1), "labels": labels.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)]})
    return {"train": (np.concatenate([_rgb(i) for i, _ in train]), np.concatenate([lab for _, lab in train])),
            "test": (_rgb(images), labels)}


def write_cifar100(root: Path, n_train: int = 120, n_test: int = 40) -> Written:
    """``root/cifar-100-python/{train, test, meta}`` (only the first 10 of the 100 classes used; the
    coarse labels differ from the fine ones, which are the labels)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n, offset in (("train", n_train, 0), ("test", n_test, n_train)):
        images, labels = digit_images(n, 32, offset)
        _pickle(folder / name, {"data": _rgb(images).reshape(n, -1), "fine_labels": labels.tolist(),
                                "coarse_labels": (labels // 5).tolist()})
        written[name] = _rgb(images), labels
    _pickle(folder / "meta", {"fine_label_names": [f"fine{c:02d}" for c in range(100)],
                              "coarse_label_names": [f"coarse{c:02d}" for c in range(20)]})
    return written


def write_imagefolder(root: Path, per_class: int = 12, size: int = 20, test_per_class: int = 0) -> Written:
    """``root/train/<class>/<i>.png`` (and ``root/test/...`` when test_per_class > 0), RGB PNGs; returned
    in the order torchvision's ImageFolder lists them (classes, then files, sorted by name)."""
    images, labels = digit_images(10 * (per_class + test_per_class) * 4, size)
    files: dict[tuple[str, int], list[np.ndarray]] = {}
    for image, label in zip(_rgb(images), labels):
        for split, limit in (("train", per_class), ("test", test_per_class)):
            kept = files.setdefault((split, int(label)), [])
            if len(kept) < limit:
                folder = Path(root) / split / f"digit_{label}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{len(kept):03d}.png")
                kept.append(image)
                break
    return {split: (np.stack([i for c in range(10) for i in files[(split, c)]]),
                    np.repeat(np.arange(10), [len(files[(split, c)]) for c in range(10)]))
            for split in ("train", "test") if any(files.get((split, c)) for c in range(10))}
