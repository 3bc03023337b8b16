"""Agreement of curvature with the memorization scores of Feldman & Zhang (2020).

Their published score files (e.g. ``cifar100_infl_matrix.npz``) hold ``tr_mem`` (the memorization
estimate of every training image) and ``tr_labels`` (its label), one entry per training image in the
dataset's order.
"""

from __future__ import annotations

import numpy as np

from .io import BadInput


class ScoreFileMismatch(BadInput, ValueError):
    """A memorization score file does not describe this dataset's training set."""


def check_score_file(tr_mem: np.ndarray, tr_labels: np.ndarray, true_labels: np.ndarray, path: str,
                     compared: np.ndarray | None = None) -> None:
    """Refuse a file whose length or labels do not match the training set (labels checked where
    ``compared``, a boolean mask: a run's replaced images carry another image's label)."""
    if len(tr_mem) != len(true_labels) or len(tr_labels) != len(true_labels):
        raise ScoreFileMismatch(f"{path}: {len(tr_mem)} memorization scores and {len(tr_labels)} labels for "
                                f"a training set of {len(true_labels)} images; expected one entry per training image")
    differs = np.asarray(tr_labels) != np.asarray(true_labels)
    mismatched = np.flatnonzero(differs if compared is None else differs & compared)
    if len(mismatched):
        raise ScoreFileMismatch(f"{path}: tr_labels differ from the dataset's labels at {len(mismatched)} of "
                                f"{len(true_labels)} images (first at index {mismatched[0]}); expected the "
                                "dataset's training images in their original order")


def agreement(curvature: np.ndarray, memorization: np.ndarray, top_k: int) -> dict[str, float]:
    """Cosine similarity and Pearson correlation on all samples and on the ``top_k`` most memorized."""
    curvature, memorization = np.asarray(curvature, float), np.asarray(memorization, float)
    top = np.argsort(-memorization, kind="stable")[:top_k]

    def cosine(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    return {
        "cosine_all": cosine(curvature, memorization),
        "pearson_all": float(np.corrcoef(curvature, memorization)[0, 1]),
        f"cosine_top{top_k}": cosine(curvature[top], memorization[top]),
        f"pearson_top{top_k}": float(np.corrcoef(curvature[top], memorization[top])[0, 1]),
        "samples": len(curvature),
        "top_k": int(min(top_k, len(curvature))),
    }
