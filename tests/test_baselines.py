"""Each peer method against values worked out by hand on small per-epoch histories."""

import numpy as np
import pytest

from memorization_curvature import baselines, epoch_statistics

T, F = True, False
# columns: samples a..e; rows: epochs 1..4
CORRECT = np.array([
    [F, T, T, T, T],
    [T, F, T, T, F],
    [T, T, T, T, T],
    [T, T, F, T, F],
])


def test_learning_time_is_the_epoch_from_which_it_stays_correct():
    assert baselines.learning_time(CORRECT).tolist() == [2, 3, 5, 1, 5]  # never stays correct: E + 1


def test_forgetting_events_count_correct_to_incorrect():
    assert baselines.forgetting_events(CORRECT).tolist() == [0, 1, 1, 0, 2]


def test_a_sample_never_learned_is_forgotten_the_most():
    # columns: learned at once and kept, never learned, forgotten twice, learned late, never learned
    correct = np.array([
        [T, F, T, F, F],
        [T, F, F, F, F],
        [T, F, T, F, F],
        [T, F, F, F, F],
        [T, F, T, T, F],
    ])
    events = baselines.forgetting_events(correct)
    assert events.tolist() == [0, 5, 2, 0, 5]  # never learned: E = 5 epochs, above any count (at most 2)
    # the ranking their authors use: never learned first, then by how often forgotten
    order = np.argsort(-events, kind="stable")
    assert order.tolist() == [1, 4, 2, 0, 3]


def test_loss_confidence_margin_methods():
    loss = np.array([[1.0, 0.2], [0.5, 0.1], [0.25, 3.0]])
    assert baselines.csl(loss).tolist() == [1.75, 3.3]
    assert baselines.final_loss(loss).tolist() == [0.25, 3.0]
    p = np.array([[0.2, 0.9], [0.4, 0.7]])
    assert baselines.in_confidence(p).tolist() == pytest.approx([0.6, 0.3])
    assert baselines.datamap_confidence(p).tolist() == pytest.approx([0.7, 0.2])
    # data maps' hard-to-learn region (where Swayamdipta et al. find mislabeled samples) has low variability
    p = np.array([[0.1, 0.2, 0.9], [0.1, 0.8, 0.9], [0.1, 0.2, 0.95]])
    variability = baselines.datamap_variability(p)
    assert variability.tolist() == pytest.approx([0.0, -p[:, 1].std(), -p[:, 2].std()])
    assert np.argmax(variability) == 0
    margin = np.array([[2.0, -1.0], [4.0, -3.0]])
    assert baselines.aum(margin).tolist() == [-3.0, 2.0]
    el2n = np.array([[0.5, 0.6], [0.1, 0.9]])
    assert baselines.el2n(el2n, 2).tolist() == [0.1, 0.9]
    with pytest.raises(ValueError, match="EL2N epoch"):
        baselines.el2n(el2n, 3)


def test_epoch_statistics_from_logits():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    stats = epoch_statistics.epoch_statistics(logits, np.array([0, 2]))
    p0 = np.exp(2) / (np.exp(2) + 2)
    assert stats["p_given"][0] == pytest.approx(p0)
    assert stats["loss"][0] == pytest.approx(-np.log(p0))
    assert stats["margin"].tolist() == [2.0, -2.0]
    assert stats["correct"].tolist() == [True, False]
    q = 1 / (np.exp(2) + 2)
    assert stats["el2n"][0] == pytest.approx(np.sqrt((1 - p0) ** 2 + 2 * q**2))


def test_confident_learning_ranks_the_known_label_issues_first():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    probs = np.full((100, 4), 0.02)
    probs[np.arange(100), labels] = 0.94
    flipped = np.array([3, 30, 57, 88])
    # out-of-sample predictions confidently disagree with these given labels
    probs[flipped] = 0.02
    probs[flipped, (labels[flipped] + 1) % 4] = 0.94
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    # and one clean sample the models are unsure of: low self-confidence, but not a confident disagreement
    probs[5] = [0.40, 0.35, 0.15, 0.10]
    score, flagged = baselines.confident_learning(labels, probs)
    assert set(np.argsort(-score)[:4]) == set(flipped)
    from cleanlab.filter import find_label_issues

    assert np.array_equal(flagged, find_label_issues(labels, probs))
    assert set(np.flatnonzero(flagged)) == set(flipped)
    assert score[flagged].min() > score[~flagged].max()
    self_confidence = baselines.self_confidence(labels, probs)
    np.testing.assert_allclose(self_confidence, 1 - probs[np.arange(100), labels])
    np.testing.assert_allclose(score, flagged + self_confidence)
    assert self_confidence[5] == pytest.approx(0.6) and not flagged[5]


def test_ssft_and_tpr_and_folds():
    assert baselines.ssft_score(np.array([1, 3, 6]), epochs=5).tolist() == [5, 3, 0]
    corrupted = np.array([0, 0, 1, 1], dtype=bool)
    assert baselines.tpr_at_fpr(corrupted, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    labels = np.repeat([0, 1, 2], [9, 6, 3])
    folds = baselines.fold_assignment(labels, 3, seed=1)
    assert sorted(np.bincount(folds)) == [6, 6, 6]
    # stratified: every fold holds a third of each class
    assert all(np.bincount(labels[folds == f]).tolist() == [3, 2, 1] for f in range(3))
    assert np.array_equal(folds, baselines.fold_assignment(labels, 3, seed=1))
    assert not np.array_equal(folds, baselines.fold_assignment(labels, 3, seed=2))
    with pytest.raises(ValueError, match="k >= 2"):
        baselines.fold_assignment(labels, 1, seed=0)


def test_history_scores_selects_methods():
    history = {"loss": np.ones((3, 2)), "correct": np.ones((3, 2), dtype=bool), "margin": np.zeros((3, 2)),
               "p_given": np.full((3, 2), 0.5), "el2n": np.zeros((3, 2))}
    scores = baselines.history_scores(history, ["csl", "forgetting_events"], el2n_epoch=1)
    assert set(scores) == {"csl", "forgetting_events"} and scores["csl"].tolist() == [3.0, 3.0]
    with pytest.raises(ValueError, match="unknown"):
        baselines.history_scores(history, ["magic"], el2n_epoch=1)
