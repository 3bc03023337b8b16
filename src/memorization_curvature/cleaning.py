"""From a ranking to a better model: the labels a cleaning retrains on.

Every method's score is oriented so that the most suspicious sample scores highest (as the method
tables hold them). Cleaning takes the top ``fraction`` of a ranking and either removes those samples
(``remove``) or gives them the label the network itself suggested (``relabel``): the class with the
highest probability averaged over the training epochs' evaluation passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .choices import CLEANING_ACTIONS as ACTIONS
from .suspects import ranks

def top(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Positions of the round(fraction x N) highest scores, most suspicious first."""
    count = int(round(fraction * len(scores)))
    return np.argsort(ranks(scores), kind="stable")[:count]


def cleaned(labels: pd.DataFrame, scores: np.ndarray, fraction: float, action: str,
            suggested: np.ndarray) -> pd.DataFrame:
    """The training labels after cleaning by ``scores`` (per sample, in ``labels``' order): ``labels``
    (index, given_label, true_label, corrupted) with ``label`` (the label trained on), ``keep``
    (trained on), ``flagged`` (among the top ``fraction``) and ``cleaned`` (what the cleaning changed:
    removed, or relabelled to another label; a flagged sample whose suggested label is its given
    label is not changed)."""
    if action not in ACTIONS:
        raise ValueError(f"cleaning action {action!r}: expected one of {', '.join(ACTIONS)}")
    given = labels["given_label"].to_numpy()
    flagged = np.zeros(len(given), dtype=bool)
    flagged[top(scores, fraction)] = True
    label = np.where(flagged & (action == "relabel"), np.asarray(suggested), given)
    keep = ~flagged if action == "remove" else np.ones(len(given), dtype=bool)
    return labels[["index", "given_label", "true_label", "corrupted"]].assign(
        label=label, keep=keep, flagged=flagged, cleaned=~keep | (label != given))


def oracle(labels: pd.DataFrame) -> pd.DataFrame:
    """The training labels of the oracle: every sample, with its true label."""
    wrong = labels["given_label"] != labels["true_label"]
    return labels[["index", "given_label", "true_label", "corrupted"]].assign(
        label=labels["true_label"], keep=True, flagged=wrong, cleaned=wrong)


def unchanged(labels: pd.DataFrame) -> pd.DataFrame:
    """The training labels of the control: every sample with its given label, nothing flagged. Retrained,
    it is the run's own training on the noisy labels by the retraining path (equal on the CPU)."""
    return labels[["index", "given_label", "true_label", "corrupted"]].assign(
        label=labels["given_label"], keep=True, flagged=False, cleaned=False)


def result_row(table: pd.DataFrame) -> dict[str, int]:
    """How many samples a cleaning flagged, how many it changed (removed, or relabelled to another
    label), how many of those were truly corrupted, and how many it trained on."""
    cleaned, corrupted = table["cleaned"].to_numpy(bool), table["corrupted"].to_numpy(bool)
    return {"flagged": int(table["flagged"].to_numpy(bool).sum()), "changed": int(cleaned.sum()),
            "changed_corrupted": int((cleaned & corrupted).sum()), "trained_on": int(table["keep"].sum())}
