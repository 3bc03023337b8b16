"""Exact and near-duplicate training images, and the pairs among them whose labels differ.

Similarity is the cosine similarity of small, standardized copies of the images: each image is
area-downsampled to ``size`` x ``size`` (which forgives shifts of a pixel or two at full size), then
centred and scaled to unit norm (which forgives changes of brightness and contrast). All pairs are
compared with blocked matrix products, so 50,000 images take seconds, not an O(N^2) Python loop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def area_downsample(images: np.ndarray, side: int) -> np.ndarray:
    """(N, C, H, W) -> (N, C, side, side) float32 means over the same windows as torch's
    ``adaptive_avg_pool2d`` (rows floor(i H / side) to ceil((i + 1) H / side)), in numpy: the
    duplicate finder is a light step and starts without torch."""
    n, c, height, width = images.shape
    out = np.empty((n, c, side, side), dtype=np.float32)
    for i in range(side):
        top, bottom = i * height // side, -(-(i + 1) * height // side)
        for j in range(side):
            left, right = j * width // side, -(-(j + 1) * width // side)
            out[:, :, i, j] = images[:, :, top:bottom, left:right].mean(axis=(2, 3), dtype=np.float32)
    return out


def image_features(images: np.ndarray, size: int = 8, chunk: int = 4096) -> np.ndarray:
    """Raw images (N, C, H, W) -> unit vectors (N, C * size * size), float32; ``chunk`` images at a
    time, so that memory-mapped image sets larger than memory are read through once."""
    side = min(size, images.shape[-1])

    def features(block: np.ndarray) -> np.ndarray:
        x = area_downsample(block.astype(np.float32), side).reshape(len(block), -1)
        x -= x.mean(axis=1, keepdims=True)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)

    parts = [features(images[start : start + chunk]) for start in range(0, len(images), chunk)]
    return np.concatenate(parts) if parts else np.empty((0, images.shape[1] * side * side), np.float32)


def similar_pairs(features: np.ndarray, threshold: float, block: int = 4096) -> pd.DataFrame:
    """Every pair (i < j) whose cosine similarity is at least ``threshold``: columns i, j, similarity.

    ``block`` rows are compared at a time, fewer when the set is large (at most 2^27 similarities,
    512 MB, at once).
    """
    f = np.ascontiguousarray(features, dtype=np.float32)
    block = max(1, min(block, (1 << 27) // max(len(f), 1)))
    found = []
    for start in range(0, len(f), block):
        sims = f[start : start + block] @ f.T  # (b, N)
        rows, cols = np.nonzero(sims >= threshold)
        keep = cols > rows + start  # each pair once, never a sample with itself
        rows, cols = rows[keep], cols[keep]
        found.append(pd.DataFrame({"i": rows + start, "j": cols, "similarity": sims[rows, cols]}))
    pairs = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["i", "j", "similarity"])
    return pairs.sort_values("similarity", ascending=False, ignore_index=True)


def conflicting_pairs(pairs: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """The pairs whose two labels differ, with both labels."""
    labels = np.asarray(labels)
    out = pairs.assign(label_i=labels[pairs["i"].to_numpy()], label_j=labels[pairs["j"].to_numpy()])
    return out[out["label_i"] != out["label_j"]].reset_index(drop=True)


def top_k_fraction(pairs: pd.DataFrame, ranks: np.ndarray, k: int) -> float:
    """The fraction of the k highest-curvature samples (rank <= k) that belong to one of ``pairs``."""
    in_pairs = np.zeros(len(ranks), dtype=bool)
    in_pairs[pairs["i"].to_numpy(dtype=int)] = True
    in_pairs[pairs["j"].to_numpy(dtype=int)] = True
    top = np.asarray(ranks) <= k
    return float(in_pairs[top].mean()) if top.any() else float("nan")
