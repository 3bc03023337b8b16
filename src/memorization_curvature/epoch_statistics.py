"""What training records of every sample after each epoch: the statistics the peer methods rank by.

From the logits of the training pass (each sample's own step) or of an eval-mode pass over the
un-augmented input after the epoch (``baselines.statistics``), always at the sample's given label. Its
own module because the training job runs it: the peer methods' code (:mod:`.baselines`) can change
without retraining.
"""

from __future__ import annotations

import numpy as np


def epoch_statistics(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample statistics of one epoch from logits (N, K) and given labels (N,).

    loss: cross-entropy; correct: argmax == label; margin: logit of the label minus the largest
    other logit (Pleiss et al.); p_given: softmax probability of the label; el2n: ||softmax - onehot||.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    given_logit = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    onehot = np.zeros_like(probs)
    onehot[rows, labels] = 1.0
    return {
        "loss": -log_probs[rows, labels],
        "correct": logits.argmax(axis=1) == labels,
        "margin": given_logit - others.max(axis=1),
        "p_given": probs[rows, labels],
        "el2n": np.linalg.norm(probs - onehot, axis=1),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, K) of logits (N, K), in float64."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
