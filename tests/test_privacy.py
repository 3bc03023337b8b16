"""Membership inference statistics and attack metrics, against hand-worked numbers and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from memorization_curvature import privacy


def test_logit_confidence_is_the_log_odds_of_the_label():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.5]])
    labels = np.array([0, 2, 1])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = np.log(p[range(3), labels]) - np.log(1 - p[range(3), labels])
    np.testing.assert_allclose(privacy.logit_confidence(logits, labels), expected, rtol=1e-12)
    assert privacy.logit_confidence(np.array([[0.0, 0.0]]), np.array([1]))[0] == 0.0  # p = 1/2: even odds


def test_logit_confidence_stays_finite_where_one_minus_p_rounds_to_zero():
    # p_y = 1 - 1e-40: 1 - p_y is 0 in float64, the log-odds are not
    logits = np.array([[0.0, -40 * np.log(10)]])
    assert privacy.logit_confidence(logits, np.array([0]))[0] == pytest.approx(40 * np.log(10))
    assert privacy.cross_entropy(logits, np.array([0]))[0] == pytest.approx(1e-40, rel=1e-9)  # not rounded to 0
    # so that the most confident samples, where low false-positive rates are decided, do not tie
    margins = np.array([45.0, 42.0, 40.0, 38.0, 39.0, 10.0])
    logits = np.column_stack([margins, np.zeros(6)])
    loss = privacy.cross_entropy(logits, np.zeros(6, int))
    assert len(set(loss)) == 6
    assert privacy.attack_metrics(-loss[:3], -loss[3:])["auroc"] == 1


def test_cross_entropy_matches_the_definition():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(50, 7)), rng.integers(0, 7, 50)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(privacy.cross_entropy(logits, labels), -np.log(p[range(50), labels]), rtol=1e-12)


def test_hand_worked_attack_metrics():
    # members 4, 3, 1; non-members 2, 0, -1, -2: thresholds >= 4, 3, 2, 1, ...
    members, nonmembers = np.array([4.0, 3.0, 1.0]), np.array([2.0, 0.0, -1.0, -2.0])
    result = privacy.attack_metrics(members, nonmembers)
    # pairs member > non-member: 4 > all 4, 3 > all 4, 1 > 3 of 4: 11 of 12
    assert result["auroc"] == pytest.approx(11 / 12)
    # threshold 3: TPR 2/3, FPR 0 -> (2/3 + 1) / 2; threshold 1: TPR 1, FPR 1/4 -> (1 + 3/4) / 2
    assert result["balanced_accuracy"] == pytest.approx(7 / 8)
    assert result["tpr_at_1pct_fpr"] == pytest.approx(2 / 3) and result["tpr_at_0.1pct_fpr"] == pytest.approx(2 / 3)
    assert result["members"] == 3 and result["non_members"] == 4 and result["lowest_measurable_fpr"] == 0.25


def test_tpr_at_fpr_is_the_best_threshold_within_the_rate_on_sklearns_curve():
    rng = np.random.default_rng(1)
    members, nonmembers = rng.normal(0.5, 1, 3000), rng.normal(0, 1, 5000)
    fpr, tpr = privacy.roc(members, nonmembers)
    truth = np.r_[np.ones(3000), np.zeros(5000)]
    ref_fpr, ref_tpr, _ = roc_curve(truth, np.r_[members, nonmembers], drop_intermediate=False)
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)
    result = privacy.attack_metrics(members, nonmembers)
    assert result["auroc"] == pytest.approx(roc_auc_score(truth, np.r_[members, nonmembers]))
    for target, key in ((0.01, "tpr_at_1pct_fpr"), (0.001, "tpr_at_0.1pct_fpr")):
        # by counting: the members above the score that at most target * 5000 non-members exceed
        allowed = int(np.floor(target * 5000))
        threshold = np.sort(nonmembers)[::-1][allowed]  # the (allowed+1)-th highest non-member
        assert result[key] == pytest.approx(np.mean(members > threshold)), key
        assert result[key] == ref_tpr[ref_fpr <= target].max()


def test_separated_scores_are_found_and_identical_ones_are_chance():
    rng = np.random.default_rng(2)
    separated = privacy.attack_metrics(rng.uniform(1, 2, 500), rng.uniform(-1, 0, 500))
    assert separated["auroc"] == 1 and separated["tpr_at_0.1pct_fpr"] == 1 and separated["balanced_accuracy"] == 1
    same = privacy.attack_metrics(rng.normal(size=4000), rng.normal(size=4000))
    assert abs(same["auroc"] - 0.5) < 0.03 and same["tpr_at_1pct_fpr"] < 0.03


def test_free_audit_orients_each_statistic_so_that_higher_says_member():
    low, high = np.array([0.1, 0.2]), np.array([5.0, 6.0])
    table = privacy.free_audit({"curvature_mean": (low, high), "loss_final": (low, high),
                                "logit_confidence_final": (high, low)}).set_index("statistic")
    assert (table["auroc"] == 1).all()
    assert table.loc["curvature_mean", "member_if"] == "lower is member"


@pytest.mark.parametrize("members,nonmembers,message", [
    (np.ones(3), np.ones(0), "needs members and non-members: got 3 members and 0 non-members"),
    (np.array([1.0, np.nan]), np.ones(2), "1 member score(s) are not finite"),
])
def test_bad_scores_are_refused(members, nonmembers, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        privacy.attack_metrics(members, nonmembers)


def audit_files(tmp_path, *, test_curvature=True, final_epoch=2):
    """A labels table, the scores of epochs 1 and 2 and the final outputs, in the run's own formats."""
    import pandas as pd

    from memorization_curvature import io

    rng = np.random.default_rng(0)
    pd.DataFrame({"index": range(6), "given_label": [0, 1] * 3, "true_label": [0, 1] * 3,
                  "corrupted": [False] * 6}).to_csv(tmp_path / "labels.csv", index=False)
    scores = []
    for epoch in (1, 2):
        arrays = {"epoch": np.asarray(epoch), "train_curvature": rng.uniform(size=6)}
        if test_curvature:
            arrays["test_curvature"] = rng.uniform(size=4)
        io.save_npz(tmp_path / f"epoch{epoch}.npz", **arrays)
        scores.append(str(tmp_path / f"epoch{epoch}.npz"))
    io.save_npz(tmp_path / "final.npz", epoch=np.asarray(final_epoch), train_loss=rng.uniform(size=6),
                test_loss=rng.uniform(size=4), train_logit_confidence=rng.normal(size=6),
                test_logit_confidence=rng.normal(size=4))
    return str(tmp_path / "labels.csv"), scores, str(tmp_path / "final.npz")


@pytest.mark.parametrize("problem,message", [
    ({"test_curvature": False}, r"the scores of epoch\(s\) \[1, 2\] hold no test-sample curvature"),
    ({"final_epoch": 3}, "final.npz is of epoch 3, the last scores of epoch 2"),
])
def test_the_audit_refuses_files_it_cannot_compare(tmp_path, problem, message):
    from memorization_curvature import io
    from memorization_curvature.stages import privacy as stage

    labels, scores, final = audit_files(tmp_path, **problem)
    with pytest.raises(io.BadInput, match=message):
        stage.audit(labels, scores, final, str(tmp_path / "privacy.csv"), figure=str(tmp_path / "roc.png"),
                    run_title="t")
    assert not (tmp_path / "privacy.csv").exists()


def test_the_audit_of_matching_files_uses_the_last_scored_epoch(tmp_path):
    import pandas as pd

    from memorization_curvature.stages import privacy as stage

    labels, scores, final = audit_files(tmp_path)
    stage.audit(labels, scores, final, str(tmp_path / "privacy.csv"), figure=str(tmp_path / "roc.png"), run_title="t")
    table = pd.read_csv(tmp_path / "privacy.csv").set_index("statistic")
    last = np.load(scores[-1])
    assert table.loc["curvature_last", "auroc"] == pytest.approx(
        roc_auc_score(np.r_[np.ones(6), np.zeros(4)], -np.r_[last["train_curvature"], last["test_curvature"]]))


# Shadow models: the masks, the Gaussian fits and the likelihood ratios (the trainings are next)


def test_every_sample_is_in_exactly_half_the_models_and_the_masks_follow_the_seed():
    masks = privacy.shadow_masks(1000, 16, seed=3)
    assert masks.shape == (16, 1000) and masks.dtype == bool
    assert (masks.sum(axis=0) == 8).all()  # each sample IN for 8 models, OUT for 8
    assert abs(masks.sum(axis=1).mean() - 500) < 1e-9 and masks.sum(axis=1).min() > 400  # each model: about half
    assert np.array_equal(masks, privacy.shadow_masks(1000, 16, seed=3))
    assert not np.array_equal(masks, privacy.shadow_masks(1000, 16, seed=4))
    # no two models share their half: the samples' halves are drawn independently
    assert len({row.tobytes() for row in masks}) == 16
    with pytest.raises(ValueError, match="shadow models: 1; expected at least 2"):
        privacy.shadow_masks(10, 1, seed=0)


def test_gaussian_fits_by_hand():
    # 4 models x 2 samples; sample 0 IN for models 0 and 1, sample 1 IN for models 2 and 3
    statistics = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 0.0], [9.0, 4.0]])
    inside = np.array([[True, False], [True, False], [False, True], [False, True]])
    fits = privacy.gaussian_fits(statistics, inside)
    np.testing.assert_allclose(fits["mean_in"], [2.0, 2.0])
    np.testing.assert_allclose(fits["mean_out"], [7.0, 15.0])
    np.testing.assert_allclose(fits["std_in"], [np.sqrt(2.0), np.sqrt(8.0)])  # sample standard deviations
    np.testing.assert_allclose(fits["std_out"], [np.sqrt(8.0), np.sqrt(50.0)])


def test_likelihood_ratios_by_hand():
    fits = {"mean_in": np.array([1.0, 0.0]), "std_in": np.array([1.0, 2.0]),
            "mean_out": np.array([0.0, 0.0]), "std_out": np.array([1.0, 1.0])}
    value = np.array([1.0, 0.0])
    # sample 0: log N(1; 1, 1) - log N(1; 0, 1) = 0 - (-1/2); sample 1: log N(0; 0, 2) - log N(0; 0, 1) = -log 2
    np.testing.assert_allclose(privacy.online_likelihood_ratio(value, fits, global_variance=False),
                               [0.5, -np.log(2)])
    # one spread per side for all samples: sqrt(mean of the variances) = sqrt(5/2) IN, 1 OUT
    s = np.sqrt(2.5)
    expected = [0.5 - np.log(s), -np.log(s)]
    np.testing.assert_allclose(privacy.online_likelihood_ratio(value, fits, global_variance=True), expected)
    np.testing.assert_allclose(privacy.offline_score(value, fits, global_variance=False), [1.0, 0.0])


def test_the_likelihood_ratio_finds_members_where_in_and_out_differ_and_not_where_they_do_not():
    # each sample its own level (what a global threshold cannot undo), members shifted by one spread
    rng = np.random.default_rng(5)
    n, models = 2000, 16
    masks = privacy.shadow_masks(n, models + 1, seed=0)
    level = rng.normal(0, 5, n)
    for shift, low, high in ((1.0, 0.7, 1.0), (0.0, 0.45, 0.55)):
        statistics = level + rng.normal(0, 0.5, (models + 1, n)) + shift * masks
        target, shadows = statistics[0], statistics[1:]
        fits = privacy.gaussian_fits(shadows, masks[1:])
        score = privacy.online_likelihood_ratio(target, fits, global_variance=True)
        auroc = roc_auc_score(masks[0], score)
        assert low < auroc < high, (shift, auroc)
        # a global threshold on the statistic itself barely sees the shift under the levels' spread
        assert roc_auc_score(masks[0], target) < 0.6
