"""The samples to review: highest averaged curvature first, with the label the network suggests.

The suggested label is the class with the highest softmax probability averaged over the training
epochs' evaluation passes; a relabelling cleaning (:mod:`.cleaning`) trains on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def suggested_labels(mean_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class, its mean probability) per sample from the softmax probabilities averaged over the
    training epochs, (N, K); ties go to the lower class."""
    mean_probs = np.asarray(mean_probs)
    suggested = mean_probs.argmax(axis=1)
    return suggested, mean_probs[np.arange(len(suggested)), suggested]


def ranks(scores: np.ndarray) -> np.ndarray:
    """1 for the highest score; ties in sample order (as the curvature table ranks)."""
    return pd.Series(np.asarray(scores, dtype=float)).rank(ascending=False, method="first").to_numpy(int)


def suspects(table: pd.DataFrame, methods: pd.DataFrame, suggested: np.ndarray, suggested_prob: np.ndarray,
             conflicting: set[int] | None, review_top: int | None) -> pd.DataFrame:
    """Training samples by averaged curvature, most suspicious first (the top ``review_top``, or all):
    given and suggested label with its mean probability, curvature and its rank, every peer method's
    rank, membership of a conflicting-duplicate pair (``conflicting``: sample indices, None when not
    searched) and, for the reviewer's check, the true label and whether it was corrupted."""
    table = table.sort_values("index", ignore_index=True)
    methods = methods.sort_values("index", ignore_index=True)
    out = pd.DataFrame({
        "index": table["index"], "given_label": table["given_label"], "suggested_label": suggested,
        "suggested_probability": suggested_prob, "curvature": table["curvature"],
        "curvature_rank": ranks(table["curvature"].to_numpy()),
    })
    peers = [c for c in methods.columns if c not in ("index", "given_label", "true_label", "corrupted", "curvature")]
    for peer in peers:
        out[f"{peer}_rank"] = ranks(methods[peer].to_numpy())
    if conflicting is not None:
        out["in_conflicting_pair"] = out["index"].isin(conflicting)
    out["true_label"] = table["true_label"]
    out["corrupted"] = table["corrupted"].astype(bool)
    out = out.sort_values("curvature_rank", ignore_index=True)
    return out if review_top is None else out.head(review_top)


def suggestion_accuracy(table: pd.DataFrame) -> dict[str, float | int | None]:
    """How often the suggested label is the true one, over the corrupted samples of ``table`` (the
    suspects) and over all of its samples."""
    corrupted = table["corrupted"].to_numpy(bool)
    right = (table["suggested_label"] == table["true_label"]).to_numpy()
    return {"suspects": int(len(table)), "corrupted_suspects": int(corrupted.sum()),
            "suggested_is_true_on_corrupted_suspects": float(right[corrupted].mean()) if corrupted.any() else None,
            "suggested_is_true_on_suspects": float(right.mean()) if len(table) else None}


def review_list(table: pd.DataFrame, methods: pd.DataFrame, mean_probs: np.ndarray, review_top: int | str,
                conflicting: set[int] | None = None) -> pd.DataFrame:
    """:func:`suspects` with the labels suggested by ``mean_probs`` (N, K); ``review_top``: a count or
    ``all`` (``cleaning.review_top``)."""
    suggested, probability = suggested_labels(mean_probs)
    return suspects(table, methods, suggested, probability, conflicting,
                    None if review_top == "all" else int(review_top))
