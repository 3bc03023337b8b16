"""Suggested labels, the top of a ranking, and what removal and relabelling change."""

import numpy as np
import pandas as pd
import pytest

from memorization_curvature import cleaning, epoch_statistics, suspects
from memorization_curvature.config import fraction_of


def test_suggested_labels_from_a_hand_worked_history():
    # logits of 2 samples over 3 classes at 2 epochs, chosen so that the softmax is exact:
    # log(0.5), log(0.3), log(0.2) -> probabilities 0.5, 0.3, 0.2
    p = np.log
    epochs = [np.array([[p(0.5), p(0.3), p(0.2)], [p(0.1), p(0.6), p(0.3)]]),
              np.array([[p(0.1), p(0.7), p(0.2)], [p(0.2), p(0.2), p(0.6)]])]
    mean = sum(epoch_statistics.softmax(logits) for logits in epochs) / len(epochs)
    # by hand: sample 0 averages to (0.3, 0.5, 0.2), sample 1 to (0.15, 0.4, 0.45)
    np.testing.assert_allclose(mean, [[0.3, 0.5, 0.2], [0.15, 0.4, 0.45]])
    suggested, probability = suspects.suggested_labels(mean)
    # sample 0's epoch-1 prediction (class 0) loses to the class it averages highest on
    assert suggested.tolist() == [1, 2]
    np.testing.assert_allclose(probability, [0.5, 0.45])


def labels_table(n, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 10, n)
    corrupted = rng.random(n) < 0.2
    given = np.where(corrupted, (true + 1 + rng.integers(0, 9, n)) % 10, true)
    return pd.DataFrame({"index": np.arange(n), "given_label": given, "true_label": true, "corrupted": corrupted})


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.37])
def test_removal_drops_exactly_the_top_fraction_of_the_ranking(fraction):
    labels = labels_table(200)
    scores = np.random.default_rng(1).normal(size=200).round(1)  # with ties
    table = cleaning.cleaned(labels, scores, fraction, "remove", suggested=np.zeros(200, int))
    removed = np.flatnonzero(~table["keep"].to_numpy())
    count = int(round(fraction * 200))
    assert len(removed) == count and table["cleaned"].sum() == count and table["flagged"].sum() == count
    # every removed score is at least every kept one; ties at the cut go to the earlier sample
    kept = np.flatnonzero(table["keep"].to_numpy())
    assert scores[removed].min() >= scores[kept].max()
    order = sorted(range(200), key=lambda i: (-scores[i], i))
    assert sorted(removed) == sorted(order[:count])
    assert (table["label"] == labels["given_label"]).all()  # removal changes no label


def test_relabelling_changes_only_the_top_fractions_labels():
    labels = labels_table(300, seed=2)
    scores = np.random.default_rng(3).random(300)
    suggested = np.random.default_rng(4).integers(0, 10, 300)
    table = cleaning.cleaned(labels, scores, 0.1, "relabel", suggested)
    flagged = table["flagged"].to_numpy()
    assert flagged.sum() == 30 and table["keep"].all()  # nothing removed
    assert set(np.flatnonzero(flagged)) == set(np.argsort(-scores)[:30])
    label, given = table["label"].to_numpy(), labels["given_label"].to_numpy()
    assert (label[flagged] == suggested[flagged]).all()
    assert (label[~flagged] == given[~flagged]).all()
    # changed: the flagged samples whose suggested label is another label, not those it leaves as given
    changed = flagged & (suggested != given)
    assert 0 < (flagged & ~changed).sum() and (table["cleaned"].to_numpy() == changed).all()
    assert cleaning.result_row(table) == {"flagged": 30, "changed": int(changed.sum()),
                                          "changed_corrupted": int(labels["corrupted"][changed].sum()),
                                          "trained_on": 300}


def test_the_oracle_trains_on_every_true_label_and_the_control_on_every_given_one():
    labels = labels_table(50)
    table = cleaning.oracle(labels)
    assert (table["label"] == labels["true_label"]).all() and table["keep"].all()
    assert cleaning.result_row(table)["changed"] == labels["corrupted"].sum()
    control = cleaning.unchanged(labels)
    assert (control["label"] == labels["given_label"]).all() and control["keep"].all()
    assert cleaning.result_row(control) == {"flagged": 0, "changed": 0, "changed_corrupted": 0, "trained_on": 50}


@pytest.mark.parametrize("spec,rate,expected", [("rate", 0.1, 0.1), ("2*rate", 0.1, 0.2), ("1.5*rate", 0.2, 0.3),
                                                (0.05, 0.4, 0.05), ("rate", 0.0, None), ("3*rate", 0.4, None)])
def test_fractions_follow_the_runs_noise_rate(spec, rate, expected):
    found = fraction_of(spec, rate)
    assert (found is None) if expected is None else found == pytest.approx(expected)


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="cleaning action 'drop': expected one of remove, relabel"):
        cleaning.cleaned(labels_table(10), np.zeros(10), 0.5, "drop", np.zeros(10, int))


def test_suspects_are_ranked_by_curvature_with_every_methods_rank():
    labels = labels_table(40, seed=5)
    rng = np.random.default_rng(6)
    table = labels.assign(curvature=rng.random(40))
    methods = table.assign(aum=rng.random(40), csl=rng.random(40))
    suggested = rng.integers(0, 10, 40)
    out = suspects.suspects(table, methods, suggested, rng.random(40), conflicting={3, 7}, review_top=10)
    assert len(out) == 10 and out["curvature_rank"].tolist() == list(range(1, 11))
    assert out["index"].tolist() == np.argsort(-table["curvature"].to_numpy())[:10].tolist()
    for method in ("aum", "csl"):
        ranks = suspects.ranks(methods[method].to_numpy())
        assert out[f"{method}_rank"].tolist() == ranks[out["index"]].tolist()
    assert out["in_conflicting_pair"].tolist() == [i in (3, 7) for i in out["index"]]
    assert (out["suggested_label"] == suggested[out["index"]]).all()
    summary = suspects.suggestion_accuracy(out)
    right = out["suggested_label"] == out["true_label"]
    assert summary["suggested_is_true_on_suspects"] == pytest.approx(right.mean())


def test_every_method_the_configuration_accepts_plans_its_cleanings(tmp_path):
    # every ranking a run can compute (peer methods with digits in their names too), both actions
    import re

    from memorization_curvature.choices import HISTORY_METHODS
    from memorization_curvature.config import computed_methods
    from workflow_helpers import snakemake, write_config

    methods = computed_methods({"history": list(HISTORY_METHODS), "confident_learning": True, "ssft": True})
    assert "el2n" in methods and len(methods) == 13
    write_config(tmp_path, {"datasets": ["digits"], "noise_rates": [0.1], "seeds": [0],
                            "baselines": {"ssft": True},
                            "cleaning": {"methods": methods, "actions": ["remove", "relabel"]}})
    run = "results/digits/noise0.1/seed0"
    for target in ([], [f"{run}/cleaning.csv"]):  # the default target, and the run's cleaning table
        output = snakemake(tmp_path, "-n", *target)
        planned = set(re.findall(rf"{run}/cleaning/(\w[\w.-]*)\.json", output))
        assert planned == {"oracle", "unchanged"} | {f"{m}_0.1_{a}" for m in methods for a in ("remove", "relabel")}, \
            target
