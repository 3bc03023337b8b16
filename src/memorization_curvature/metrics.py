"""How well a score finds the corrupted samples, and the per-sample score table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def detection_metrics(corrupted: np.ndarray, score: np.ndarray) -> dict[str, float | None]:
    """AUROC and average precision of ``score`` (higher = more suspect) for the boolean ``corrupted``.

    Both are ``None`` when only one class is present (no noise, or everything corrupted), where
    they are undefined.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score  # here: light steps skip sklearn's import

    corrupted = np.asarray(corrupted, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    if not np.isfinite(score).all():
        raise ValueError("scores contain NaN or infinity")
    if corrupted.all() or not corrupted.any():
        return {"auroc": None, "average_precision": None}
    return {
        "auroc": float(roc_auc_score(corrupted, score)),
        "average_precision": float(average_precision_score(corrupted, score)),
    }


def average_over_epochs(labels: pd.DataFrame, per_epoch: dict[int, np.ndarray]) -> pd.DataFrame:
    """Per-sample table: index, given_label, true_label, corrupted, curvature (mean over epochs), rank.

    ``rank`` is 1 for the highest mean curvature.
    """
    if not per_epoch:
        raise ValueError("no scored epochs to average")
    stacked = np.stack([per_epoch[e] for e in sorted(per_epoch)])
    if stacked.shape[1] != len(labels):
        raise ValueError(f"scores have {stacked.shape[1]} samples but the labels table has {len(labels)}")
    table = labels[["index", "given_label", "true_label", "corrupted"]].copy()
    table["curvature"] = stacked.mean(axis=0)
    table["rank"] = table["curvature"].rank(ascending=False, method="first").astype(int)
    return table


def summarize_runs(runs: list[dict]) -> pd.DataFrame:
    """One row per run, sorted by dataset, noise rate and seed."""
    columns = ["dataset", "variant", "noise_rate", "injected_duplicates", "seed", "auroc", "average_precision",
               "n_train", "n_corrupted", "epochs_scored", "final_test_acc"]
    frame = pd.DataFrame([{c: run.get(c) for c in columns} for run in runs], columns=columns)
    frame["epochs_scored"] = frame["epochs_scored"].map(lambda e: len(e) if isinstance(e, list) else e)
    frame["auroc"] = frame["auroc"].map(lambda v: math.nan if v is None else v)
    return frame.sort_values(["dataset", "variant", "seed"], ignore_index=True)
