"""Symmetric label noise: a fraction of the training labels moved to another class."""

from __future__ import annotations

import numpy as np


def corrupt_labels(
    true_labels: np.ndarray, num_classes: int, rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt ``round(rate * N)`` labels, chosen uniformly without replacement.

    Each chosen sample gets a label drawn uniformly from the ``num_classes - 1`` classes other than
    its true one, so a corrupted label is never correct.

    Args:
        true_labels: int array (N,) with values in [0, num_classes).
        num_classes: K >= 2.
        rate: fraction in [0, 1).
        seed: the same seed gives the same corruption.

    Returns:
        given_labels: int64 (N,), the labels training sees.
        corrupted: bool (N,), True where the given label differs from the true one.
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must be in [0, 1), got {rate!r}")
    if true_labels.size and (true_labels.min() < 0 or true_labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{true_labels.min()}, {true_labels.max()}]")
    rng = np.random.default_rng(seed)
    n_corrupt = int(round(rate * len(true_labels)))
    chosen = rng.choice(len(true_labels), size=n_corrupt, replace=False)
    # An offset in 1..K-1 added modulo K is uniform over the other K-1 classes.
    offsets = rng.integers(1, num_classes, size=n_corrupt)
    given = true_labels.copy()
    given[chosen] = (true_labels[chosen] + offsets) % num_classes
    corrupted = np.zeros(len(true_labels), dtype=bool)
    corrupted[chosen] = True
    return given, corrupted


def inject_duplicates(
    images: np.ndarray, labels: np.ndarray, num_classes: int, copies: int, seed: int, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Replace ``copies`` training images by copies of other training images with a conflicting label.

    Targets and sources are distinct samples chosen uniformly without replacement (seeded); each
    target becomes an exact copy of its source image and gets a label drawn uniformly from the
    classes other than its source's label.

    ``out``, if given, receives the new images (an array of the same shape, e.g. file-backed for an
    image set larger than memory); else they are a copy in memory.

    Returns:
        images: the new images (the input is not modified).
        given_labels: the labels training sees.
        true_labels: for a copy, its source's label (the class of what it shows); else the label.
        injected: bool (N,), True for the copies.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not 1 <= copies <= len(labels) // 2:
        raise ValueError(f"injected duplicates must be in [1, {len(labels) // 2}] for {len(labels)} images, "
                         f"got {copies}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(labels), size=2 * copies, replace=False)
    targets, sources = chosen[:copies], chosen[copies:]
    if out is None:
        out = images.copy()
    else:
        for start in range(0, len(images), 4096):
            out[start : start + 4096] = images[start : start + 4096]
    out[targets] = images[sources]
    images = out
    true = labels.copy()
    true[targets] = labels[sources]
    given = true.copy()
    given[targets] = (labels[sources] + rng.integers(1, num_classes, size=copies)) % num_classes
    injected = np.zeros(len(labels), dtype=bool)
    injected[targets] = True
    return images, given, true, injected
