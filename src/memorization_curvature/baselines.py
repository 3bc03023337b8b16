"""Peer methods for finding mislabeled samples, from the same training run.

Every score is oriented like curvature, **higher = more likely mislabeled**, in the direction each
method's authors use it to find mislabeled samples (e.g. data maps' hard-to-learn region: low
confidence and low variability). Most are computed from
per-epoch statistics of each training sample at its given label, from the training pass or an eval-mode
pass after each epoch (:func:`memorization_curvature.epoch_statistics.epoch_statistics`); the histories are
arrays of shape (E, N), epochs in order.
"""

from __future__ import annotations

import numpy as np

from .choices import HISTORY_METHODS


def csl(loss: np.ndarray) -> np.ndarray:
    """Cumulative sample loss (Ravikumar et al. 2025): the sum over epochs of the training loss."""
    return loss.sum(axis=0)


def final_loss(loss: np.ndarray) -> np.ndarray:
    """The training loss at the last epoch."""
    return loss[-1]


def in_confidence(p_given: np.ndarray) -> np.ndarray:
    """1 - the probability of the given label at the end of training."""
    return 1.0 - p_given[-1]


def learning_time(correct: np.ndarray) -> np.ndarray:
    """The first epoch (1-based) from which the sample stays correctly classified; E + 1 if never."""
    epochs = correct.shape[0]
    # stays correct from epoch e on <=> every epoch from e to E is correct: a reversed running AND
    stays = np.flip(np.logical_and.accumulate(np.flip(correct, axis=0), axis=0), axis=0)
    first = np.where(stays.any(axis=0), stays.argmax(axis=0) + 1, epochs + 1)
    return first.astype(np.float64)


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Forgetting events (Toneva et al. 2019): how often a sample goes from correct to incorrect.

    A sample never classified correctly counts, as its authors count it, as forgotten the most (they
    write infinitely often): here E, more than the at most E / 2 events any learned sample can have,
    so it ranks above every learned one instead of with the samples learned at once and kept (0)."""
    epochs = correct.shape[0]
    events = (correct[:-1] & ~correct[1:]).sum(axis=0).astype(np.float64)
    return np.where(correct.any(axis=0), events, float(epochs))


def aum(margin: np.ndarray) -> np.ndarray:
    """Area under the margin (Pleiss et al. 2020), negated: -mean over epochs of the margin."""
    return -margin.mean(axis=0)


def el2n(el2n_history: np.ndarray, epoch: int) -> np.ndarray:
    """EL2N (Paul et al. 2021) at ``epoch`` (1-based; early in training, as the paper uses it)."""
    if not 1 <= epoch <= len(el2n_history):
        raise ValueError(f"EL2N epoch must be in [1, {len(el2n_history)}], got {epoch}")
    if np.isnan(el2n_history[epoch - 1]).any():  # statistics from the training pass: evaluated at some epochs only
        raise ValueError(f"EL2N at epoch {epoch} was not evaluated: the training recorded its statistics from the "
                         f"training pass and evaluated at epoch(s) {(np.flatnonzero(~np.isnan(el2n_history).any(axis=1)) + 1).tolist()} only")
    return el2n_history[epoch - 1]


def datamap_confidence(p_given: np.ndarray) -> np.ndarray:
    """Data maps (Swayamdipta et al. 2020): 1 - the mean probability of the given label."""
    return 1.0 - p_given.mean(axis=0)


def datamap_variability(p_given: np.ndarray) -> np.ndarray:
    """Data maps: the standard deviation over epochs of the probability of the given label, negated.

    Swayamdipta et al. find mislabeled samples in the hard-to-learn region, low confidence and *low*
    variability (high variability marks ambiguous samples), so low variability ranks first.
    """
    return -p_given.std(axis=0)


def evaluated(history: dict[str, np.ndarray], key: str) -> np.ndarray:
    """The history of ``key`` from evaluation passes: ``eval_<key>`` where the statistics came from the
    training pass (evaluated at some epochs, the last among them), else ``key`` itself."""
    values = history.get(f"eval_{key}", history[key])
    if np.isnan(values[-1]).any():
        raise ValueError(f"{key} at the last epoch was not evaluated")
    return values


def history_scores(history: dict[str, np.ndarray], methods, *, el2n_epoch: int) -> dict[str, np.ndarray]:
    """The chosen history-based methods, from histories (E, N) named as in :func:`.epoch_statistics.epoch_statistics`."""
    compute = {
        "csl": lambda: csl(history["loss"]),
        # the trained network's: from its evaluation pass when the statistics come from the training pass
        "final_loss": lambda: final_loss(evaluated(history, "loss")),
        "in_confidence": lambda: in_confidence(evaluated(history, "p_given")),
        "learning_time": lambda: learning_time(history["correct"].astype(bool)),
        "forgetting_events": lambda: forgetting_events(history["correct"].astype(bool)),
        "aum": lambda: aum(history["margin"]),
        "el2n": lambda: el2n(history["el2n"], el2n_epoch),
        "datamap_confidence": lambda: datamap_confidence(history["p_given"]),
        "datamap_variability": lambda: datamap_variability(history["p_given"]),
    }
    unknown = set(methods) - set(compute)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; expected some of {HISTORY_METHODS}")
    return {name: compute[name]() for name in methods}


def self_confidence(labels: np.ndarray, out_of_sample_probs: np.ndarray) -> np.ndarray:
    """1 - cleanlab's label quality score (self-confidence: the out-of-sample probability (N, K) of
    the given label), as ``cleanlab.rank.get_label_quality_scores`` computes it."""
    from cleanlab.rank import get_label_quality_scores

    return 1.0 - get_label_quality_scores(np.asarray(labels), np.asarray(out_of_sample_probs),
                                          method="self_confidence")


def confident_learning(labels: np.ndarray, out_of_sample_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident Learning (Northcutt et al. 2021) as cleanlab applies it: the samples that
    ``cleanlab.filter.find_label_issues`` flags (confident joint, pruned by noise rate) rank above
    every other sample, each group in cleanlab's own order (by self-confidence).

    Returns (score, flagged): score = flagged + (1 - self-confidence), so in [1, 2] when flagged,
    [0, 1] otherwise.
    """
    from cleanlab.filter import find_label_issues

    labels, probs = np.asarray(labels), np.asarray(out_of_sample_probs)
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    return flagged + self_confidence(labels, probs), flagged


def fold_assignment(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each sample's fold in 0..k-1: scikit-learn's StratifiedKFold on the given labels, shuffled and
    seeded (Confident Learning's out-of-sample probabilities are made this way)."""
    from sklearn.model_selection import StratifiedKFold

    if k < 2:
        raise ValueError(f"cross-validation needs k >= 2 folds, got {k}")
    labels = np.asarray(labels)
    folds = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros((len(labels), 1)), labels)):
        folds[held_out] = fold
    return folds


def ssft_score(first_forgotten: np.ndarray, epochs: int) -> np.ndarray:
    """SSFT (Maini et al. 2022): samples forgotten early when fine-tuning on the other half are suspect.

    ``first_forgotten``: the first fine-tuning epoch (1-based) at which the sample is misclassified,
    ``epochs + 1`` if never. Returns ``epochs + 1 - first_forgotten`` (0 for never forgotten).
    """
    return (epochs + 1 - first_forgotten).astype(np.float64)


def tpr_at_fpr(corrupted: np.ndarray, score: np.ndarray, fpr: float = 0.05) -> float:
    """True positive rate at the given false positive rate (interpolated on the ROC curve)."""
    from sklearn.metrics import roc_curve

    fprs, tprs, _ = roc_curve(corrupted, score)
    return float(np.interp(fpr, fprs, tprs))
