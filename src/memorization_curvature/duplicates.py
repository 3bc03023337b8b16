"""Exact and near-duplicate training images, and the pairs among them whose labels differ.

Similarity is the cosine similarity of small, standardized copies of the images: each image is
area-downsampled to ``size`` x ``size`` (which forgives shifts of a pixel or two at full size), then
centred and scaled to unit norm (which forgives changes of brightness and contrast). All pairs are
compared with blocked matrix products, so 50,000 images take seconds, not an O(N^2) Python loop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def image_features(images: np.ndarray, size: int = 8, chunk: int = 4096) -> np.ndarray:
    """Raw images (N, C, H, W) -> unit vectors (N, C * size * size), float32; ``chunk`` images at a
    time, so that memory-mapped image sets larger than memory are read through once."""
    import torch
    import torch.nn.functional as F

    def features(block: np.ndarray):
        x = torch.from_numpy(block.astype(np.float32))
        x = F.adaptive_avg_pool2d(x, min(size, x.shape[-1])).flatten(1)
        x = x - x.mean(dim=1, keepdim=True)
        return F.normalize(x, dim=1, eps=1e-8).numpy()

    side = min(size, images.shape[-1])
    parts = [features(images[start : start + chunk]) for start in range(0, len(images), chunk)]
    return np.concatenate(parts) if parts else np.empty((0, images.shape[1] * side * side), np.float32)


def similar_pairs(features: np.ndarray, threshold: float, block: int = 4096) -> pd.DataFrame:
    """Every pair (i < j) whose cosine similarity is at least ``threshold``: columns i, j, similarity.

    ``block`` rows are compared at a time, fewer when the set is large (at most 2^27 similarities,
    512 MB, at once).
    """
    import torch

    f = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    block = max(1, min(block, (1 << 27) // max(len(f), 1)))
    found = []
    for start in range(0, len(f), block):
        sims = f[start : start + block] @ f.T  # (b, N)
        rows, cols = torch.nonzero(sims >= threshold, as_tuple=True)
        keep = cols > rows + start  # each pair once, never a sample with itself
        rows, cols = rows[keep], cols[keep]
        found.append(pd.DataFrame({"i": (rows + start).numpy(), "j": cols.numpy(),
                                   "similarity": sims[rows, cols].numpy()}))
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
