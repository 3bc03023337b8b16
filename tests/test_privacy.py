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
    masks = privacy.shadow_masks(1001, 16, seed=3)
    assert masks.shape == (16, 1001) and masks.dtype == bool
    assert (masks.sum(axis=0) == 8).all()  # each sample IN for 8 models, OUT for 8
    assert sorted(set(masks.sum(axis=1))) == [500, 501]  # each model: half
    for model in range(16):  # pairs split the samples
        assert np.array_equal(masks[privacy.partner(model)], ~masks[model])
    assert np.array_equal(masks, privacy.shadow_masks(1001, 16, seed=3))
    assert not np.array_equal(masks, privacy.shadow_masks(1001, 16, seed=4))
    # no two pairs share their halves: drawn independently
    assert len({row.tobytes() for row in masks}) == 16
    for bad in (4, 7, 0):
        with pytest.raises(ValueError, match=f"shadow models: {bad}; expected an even number of at least 6"):
            privacy.shadow_masks(10, bad, seed=0)


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


def synthetic(n, models, shift, seed):
    """Statistics (models, 1 query, n) of samples each at its own level (what a global threshold cannot
    undo), members shifted by ``shift`` spreads: LiRA's statistic up, log curvature down, loss down."""
    rng = np.random.default_rng(seed)
    masks = privacy.shadow_masks(n, models, seed=seed)
    level = rng.normal(0, 5, n)
    draw = lambda sign: (level + rng.normal(0, 1, (models, n)) + sign * shift * masks)[:, None]  # noqa: E731
    return masks, {"logit_confidence": draw(1), "log_curvature": draw(-1), "loss": draw(-1)}


def test_the_attacks_find_members_where_in_and_out_differ():
    masks, statistics = synthetic(2000, 16, shift=1.0, seed=5)
    table = privacy.over_targets(privacy.shadow_audit(statistics, masks)[0]).set_index("attack")
    for attack in ("lira_online", "curvature_lr", "curvature_nll"):
        assert table.loc[attack, "auroc_mean"] > 0.7, table
    # a global threshold on the statistic itself barely sees the shift under the levels' spread
    assert table.loc["loss_threshold", "auroc_mean"] < 0.6
    assert (table["targets"] == 16).all() and (table["members_per_target"] == 1000).all()


def test_no_attack_sees_members_where_in_and_out_are_alike():
    # leaving out only the target would give its members one IN shadow fewer than OUT and its non-members
    # one more: with 6 models, AUROC about 0.46 for LiRA online and the curvature LR and NLL (measured)
    masks, statistics = synthetic(4000, 6, shift=0.0, seed=2)
    table = privacy.over_targets(privacy.shadow_audit(statistics, masks)[0])
    assert (abs(table["auroc_mean"] - 0.5) < 0.02).all(), table[["attack", "auroc_mean"]]


def test_shadow_attack_scores_by_hand():
    # 6 models in pairs (0, 1), (2, 3), (4, 5) over 2 samples; target 0 (sample 0 its member), shadows 2-5
    masks = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [0, 1], [1, 0]], dtype=bool)
    phi = np.array([[4.0, 2.0], [0.0, 0.0], [3.0, 1.0], [0.0, 6.0], [2.0, 8.0], [5.0, 3.0]])
    # sample 0: IN models 2, 5 (3, 5: mean 4), OUT models 3, 4 (0, 2: mean 1); sample 1: IN 3, 4 (6, 8: mean
    # 7), OUT 2, 5 (1, 3: mean 2); every spread sqrt(2), so the pooled ones too (4 shadows < 64)
    loss = np.arange(12.0).reshape(6, 1, 2)
    statistics = {"logit_confidence": phi[:, None], "log_curvature": -phi[:, None], "loss": loss}
    scores = privacy.shadow_attack_scores(statistics, masks, target=0)
    np.testing.assert_allclose(scores["lira_online"], [9 / 4, -25 / 4])  # (x-mean_out)^2/4 - (x-mean_in)^2/4
    np.testing.assert_allclose(scores["lira_offline"], [3 / np.sqrt(2), 0.0])
    np.testing.assert_allclose(scores["curvature_lr"], [9 / 4, -25 / 4])  # log curvature -phi: the same ratio
    np.testing.assert_allclose(scores["curvature_nll"], [9 / 4, -25 / 4])  # the IN spread for both: equal here
    np.testing.assert_allclose(scores["curvature_offline"], [3 / np.sqrt(2), 0.0])  # flatter than OUT
    np.testing.assert_allclose(scores["loss_threshold"], [-0.0, -1.0])
    # two identical queries: LR of summed likelihoods unchanged, NLL summed (twice), LiRA the mean
    twice = {name: np.concatenate([values, values], axis=1) for name, values in statistics.items()}
    doubled = privacy.shadow_attack_scores(twice, masks, target=0)
    np.testing.assert_allclose(doubled["curvature_lr"], scores["curvature_lr"])
    np.testing.assert_allclose(doubled["curvature_nll"], 2 * scores["curvature_nll"])
    np.testing.assert_allclose(doubled["lira_online"], scores["lira_online"])


@pytest.mark.parametrize("models,pooled", [(62, True), (64, False)])
def test_spreads_are_each_samples_own_from_64_models_on(models, pooled):
    # counted as the audit's models, as LiRA and Curvature Clues count theirs: K = 64 (62 shadows per
    # target) fits each sample's own spreads
    masks, statistics = synthetic(40, models, shift=1.0, seed=3)
    statistics["logit_confidence"] *= np.linspace(0.5, 3, 40)  # each sample its own spread
    shadows = np.arange(models) >= 2  # target 0, partner 1
    fits = privacy.gaussian_fits(statistics["logit_confidence"][shadows, 0], masks[shadows])
    expected = privacy.online_likelihood_ratio(statistics["logit_confidence"][0, 0], fits, global_variance=pooled)
    np.testing.assert_allclose(privacy.shadow_attack_scores(statistics, masks, 0)["lira_online"], expected)
    other = privacy.online_likelihood_ratio(statistics["logit_confidence"][0, 0], fits, global_variance=not pooled)
    assert not np.allclose(expected, other)


def test_exposure_is_the_mean_score_over_the_targets_that_trained_on_the_sample():
    masks, statistics = synthetic(50, 6, shift=1.0, seed=1)
    rows, exposure, pooled = privacy.shadow_audit(statistics, masks)
    expected = np.zeros(50)
    for target in range(6):
        expected += np.where(masks[target], privacy.shadow_attack_scores(statistics, masks, target)["lira_online"], 0)
    np.testing.assert_allclose(exposure["lira_online"], expected / 3)
    # the loss threshold is no per-sample score: it ranks no one as exposed
    assert set(exposure) == set(privacy.SHADOW_ATTACKS) - {"loss_threshold"}
    members, nonmembers = pooled["lira_online"]
    assert len(members) == len(nonmembers) == 6 * 25
    table = privacy.over_targets(rows).set_index("attack")
    aurocs = rows[rows["attack"] == "curvature_lr"]["auroc"]
    assert table.loc["curvature_lr", "auroc_mean"] == pytest.approx(aurocs.mean())
    assert table.loc["curvature_lr", "auroc_std"] == pytest.approx(aurocs.std())


def test_top_overlap_by_hand():
    first, second = np.array([5.0, 4, 3, 2, 1, 0, 0, 0, 0, 0]), np.array([0.0, 9, 8, 0, 0, 0, 0, 0, 0, 7])
    # top 30 %: samples {0, 1, 2} and {1, 2, 9}: two of three
    assert privacy.top_overlap(first, second, 0.3) == pytest.approx(2 / 3)
    assert privacy.top_overlap(first, first, 0.3) == 1.0


def test_a_thinned_roc_keeps_the_best_rate_at_each_false_positive_rate():
    rng = np.random.default_rng(4)
    fpr, tpr = privacy.roc(rng.normal(0.7, 1, 20_000), rng.normal(0, 1, 30_000))
    grid, best = privacy.thinned(fpr, tpr, points=300)
    assert len(grid) <= 301 and grid[0] == 0 and grid[-1] == 1 and grid[1] == pytest.approx(1 / 30_000)
    assert np.all(np.diff(grid) > 0) and np.all(np.diff(best) >= 0)
    for rate, reached in zip(grid, best):
        assert reached == privacy.tpr_at_fpr(fpr, tpr, rate)
