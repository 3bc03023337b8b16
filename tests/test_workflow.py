"""The whole workflow through the snakemake command line on a tiny configuration, then its caching."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from workflow_helpers import FULL_CONFIG, FULL_EPOCHS as EPOCHS, REPO, full_run, planned, snakemake
from workflow_helpers import snakemake_command, write_score_file

RUN = Path("results/digits/noise0.1/seed0")
DUP_RUN = Path("results/digits/dup40/seed0")


def planned_jobs(workdir, settings=None, *args):
    """(rule, outputs) of every job a dry run with ``settings`` (over the run's config) would run; an
    empty plan only with Snakemake's own word."""
    return planned_jobs_of(planned(workdir, settings or {}, *args))


def planned_jobs_of(output):
    """(rule, outputs) of every job a dry run's ``output`` lists."""
    jobs = []
    for line in output.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            jobs.append([match.group(1), []])
        elif line.startswith("    output: ") and jobs:
            jobs[-1][1] = line.removeprefix("    output: ").split(", ")
    # a change in Snakemake's output format must not pass as "nothing to do"
    assert bool(jobs) != ("Nothing to be done" in output), output[-2000:]
    return jobs


def rule_counts(jobs):
    counts = {}
    for rule, _ in jobs:
        counts[rule] = counts.get(rule, 0) + 1
    return counts


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The finished workflow with every rule (shared with tests/test_reruns.py: read only)."""
    return full_run(tmp_path_factory)


def test_labels(workdir):
    labels = pd.read_csv(workdir / RUN / "labels.csv")
    prepared = np.load(workdir / "results/digits/data.npz")
    assert len(labels) == len(prepared["train_labels"]) == 1437
    assert labels["index"].tolist() == list(range(1437))
    assert np.array_equal(labels["true_label"], prepared["train_labels"])
    assert labels["given_label"].between(0, 9).all()
    assert labels["corrupted"].sum() == round(0.1 * 1437)
    assert (labels["corrupted"] == (labels["given_label"] != labels["true_label"])).all()


def test_one_loadable_checkpoint_per_epoch_and_metrics(workdir):
    for epoch in range(1, EPOCHS + 1):
        checkpoint = torch.load(workdir / RUN / f"checkpoints/epoch{epoch}.pt", weights_only=True)
        assert checkpoint["epoch"] == epoch
        assert checkpoint["model_name"] == "small_cnn"
    history = pd.read_csv(workdir / RUN / "train_metrics.csv")
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert history["test_acc"].iloc[-1] > 0.8  # the network learned the digits despite the noise


def test_average_is_the_mean_of_the_per_epoch_scores(workdir):
    per_epoch = []
    for epoch in range(1, EPOCHS + 1):
        scores = np.load(workdir / RUN / f"scores/epoch{epoch}.npz")
        assert int(scores["epoch"]) == epoch
        assert scores["train_curvature"].shape == (1437,)
        assert np.all(np.isfinite(scores["train_curvature"])) and np.all(scores["train_curvature"] >= 0)
        per_epoch.append(scores["train_curvature"])
    table = pd.read_csv(workdir / RUN / "curvature.csv")
    assert list(table.columns) == ["index", "given_label", "true_label", "corrupted", "curvature", "rank"]
    np.testing.assert_allclose(table["curvature"], np.mean(per_epoch, axis=0), rtol=1e-12)
    assert sorted(table["rank"]) == list(range(1, 1438))


def test_auroc_finds_the_corrupted_labels(workdir):
    table = pd.read_csv(workdir / RUN / "curvature.csv")
    metrics = json.loads((workdir / RUN / "metrics.json").read_text())
    assert metrics["auroc"] == pytest.approx(roc_auc_score(table["corrupted"], table["curvature"]))
    assert 0.9 < metrics["auroc"] <= 1.0
    assert metrics["n_corrupted"] == 144 and metrics["epochs_scored"] == list(range(1, EPOCHS + 1))
    summary = pd.read_csv(workdir / "results/auroc.csv").set_index("variant")
    assert sorted(summary.index) == ["dup40", "noise0.1"]
    assert summary.loc["noise0.1", "auroc"] == pytest.approx(metrics["auroc"])


FIGURES = ("top_curvature", "bottom_curvature", "per_class", "curvature_hist", "roc", "dynamics", "roc_methods",
           "duplicates", "feldman_zhang", "privacy_roc")


def test_every_figure_is_an_image_with_its_pdf_and_numbers(workdir):
    for name in FIGURES:
        image = matplotlib.image.imread(workdir / RUN / f"figures/{name}.png")
        assert image.ndim == 3 and min(image.shape[:2]) > 200
        assert image[..., :3].std() > 0.01  # not a blank canvas
        assert (workdir / RUN / f"figures/{name}.pdf").read_bytes().startswith(b"%PDF")
        assert len(pd.read_csv(workdir / RUN / f"figures/{name}.csv")) > 0


def test_figure_numbers_are_recomputed_from_the_run_tables(workdir):
    table = pd.read_csv(workdir / RUN / "curvature.csv").sort_values("index", ignore_index=True)
    corrupted, curvature = table["corrupted"].to_numpy(bool), table["curvature"].to_numpy()
    figures = workdir / RUN / "figures"
    # ROC: sklearn's curve on the run's table; its area is the AUROC reported
    roc = pd.read_csv(figures / "roc.csv")
    fpr, tpr, thresholds = roc_curve(corrupted, curvature)
    np.testing.assert_allclose(roc["false_positive_rate"], fpr)
    np.testing.assert_allclose(roc["true_positive_rate"], tpr)
    np.testing.assert_allclose(roc["threshold"], thresholds)
    auroc = json.loads((workdir / RUN / "metrics.json").read_text())["auroc"]
    assert np.trapezoid(roc["true_positive_rate"], roc["false_positive_rate"]) == pytest.approx(auroc)
    # histogram: densities of log10 curvature of each group over the written bins
    hist = pd.read_csv(figures / "curvature_hist.csv")
    edges = np.append(hist["log10_curvature_from"], hist["log10_curvature_to"].iloc[-1])
    assert edges[0] == pytest.approx(np.log10(curvature.min())) and edges[-1] >= np.log10(curvature.max())
    for group, rows in (("clean", ~corrupted), ("corrupted", corrupted)):
        density, _ = np.histogram(np.log10(curvature[rows]), bins=edges, density=True)
        np.testing.assert_allclose(hist[f"{group}_density"], density, err_msg=group)
    # every method's ROC curve, from the per-sample table of all methods
    methods = pd.read_csv(workdir / RUN / "methods.csv")
    aurocs = pd.read_csv(workdir / RUN / "methods_metrics.csv").set_index("method")["auroc"]
    curves = pd.read_csv(figures / "roc_methods.csv")
    assert list(curves["method"].unique()) == METHODS
    for method, curve in curves.groupby("method"):
        fpr, tpr, _ = roc_curve(methods["corrupted"], methods[method])
        np.testing.assert_allclose(curve["false_positive_rate"], fpr, err_msg=method)
        np.testing.assert_allclose(curve["true_positive_rate"], tpr, err_msg=method)
        assert np.trapezoid(tpr, fpr) == pytest.approx(aurocs[method])
    # duplicates: the 50 most similar conflicting pairs, side by side
    pairs = pd.read_csv(workdir / RUN / "duplicates.csv").head(50)
    shown = pd.read_csv(figures / "duplicates.csv")
    assert shown["index"].tolist() == np.ravel(np.column_stack([pairs["i"], pairs["j"]])).tolist()
    assert shown["curvature"].tolist() == pytest.approx(curvature[shown["index"]].tolist())
    # Feldman-Zhang: each sample's published score beside its curvature
    scatter = pd.read_csv(figures / "feldman_zhang.csv")
    assert scatter["index"].tolist() == list(range(len(table)))
    np.testing.assert_allclose(scatter["memorization"], np.load(workdir / "fz_scores.npz")["tr_mem"])
    np.testing.assert_allclose(scatter["curvature"], curvature)


def test_grids_show_the_ranked_samples_in_order(workdir):
    table = pd.read_csv(workdir / RUN / "curvature.csv")
    by_curvature = table.sort_values("curvature", ascending=False)["index"].tolist()
    top = pd.read_csv(workdir / RUN / "figures/top_curvature.csv")
    assert top["index"].tolist() == by_curvature[:100] and top["rank"].tolist() == list(range(1, 101))
    bottom = pd.read_csv(workdir / RUN / "figures/bottom_curvature.csv")
    assert bottom["index"].tolist() == by_curvature[::-1][:100]
    per_class = pd.read_csv(workdir / RUN / "figures/per_class.csv")
    assert per_class["given_label"].tolist() == list(range(10))
    best = table.loc[table.groupby("given_label")["curvature"].idxmax(), "index"].tolist()
    assert per_class["index"].tolist() == best
    shown_wrong = top["given_label"] != top["true_label"]
    assert shown_wrong.sum() == table.set_index("index").loc[top["index"], "corrupted"].sum()


def test_dynamics_are_the_per_epoch_group_statistics(workdir):
    dynamics = pd.read_csv(workdir / RUN / "figures/dynamics.csv")
    corrupted = pd.read_csv(workdir / RUN / "labels.csv")["corrupted"].to_numpy()
    assert set(dynamics["group"]) == {"clean training", "corrupted training", "test"}
    for epoch in range(1, EPOCHS + 1):
        scores = np.load(workdir / RUN / f"scores/epoch{epoch}.npz")
        rows = dynamics[dynamics["epoch"] == epoch].set_index("group")
        assert rows.loc["corrupted training", "mean"] == pytest.approx(scores["train_curvature"][corrupted].mean())
        assert rows.loc["test", "samples"] == 360
        assert rows.loc["test", "mean"] == pytest.approx(scores["test_curvature"].mean())


def test_summary_table_matches_the_metrics(workdir):
    metrics = json.loads((workdir / RUN / "metrics.json").read_text())
    numbers = pd.read_csv(workdir / "results/summary/auroc_vs_noise.csv")
    assert numbers["mean"].tolist() == pytest.approx([metrics["auroc"]]) and numbers["seeds"].tolist() == [1]
    markdown = (workdir / "results/summary/auroc_table.md").read_text()
    assert f"| digits | {metrics['auroc']:.4f} (1) |" in markdown


METHODS = ["curvature", "csl", "final_loss", "in_confidence", "learning_time", "forgetting_events", "aum", "el2n",
           "datamap_confidence", "datamap_variability", "confident_learning", "self_confidence", "ssft"]


def test_every_method_is_scored_and_compared(workdir):
    per_sample = pd.read_csv(workdir / RUN / "methods.csv")
    assert len(per_sample) == 1437 and set(METHODS) <= set(per_sample.columns)
    assert per_sample[METHODS].notna().all().all()
    table = pd.read_csv(workdir / RUN / "methods_metrics.csv").set_index("method")
    assert sorted(table.index) == sorted(METHODS)
    for method in METHODS:
        assert table.loc[method, "auroc"] == pytest.approx(roc_auc_score(per_sample["corrupted"], per_sample[method]))
    for method in METHODS:
        fpr, tpr, _ = roc_curve(per_sample["corrupted"], per_sample[method])
        assert table.loc[method, "tpr_at_5pct_fpr"] == pytest.approx(np.interp(0.05, fpr, tpr))
    assert table.loc["curvature", "tpr_at_5pct_fpr"] > 0.8 and table.loc["curvature", "auroc"] > 0.95
    curvature_auroc = json.loads((workdir / RUN / "metrics.json").read_text())["auroc"]
    assert table.loc["curvature", "auroc"] == pytest.approx(curvature_auroc)
    history = np.load(workdir / RUN / "train_history.npz")
    assert history["loss"].shape == (EPOCHS, 1437)
    np.testing.assert_allclose(per_sample["csl"], history["loss"].sum(0), rtol=1e-9)
    summary = (workdir / "results/summary/methods_auroc.md").read_text()
    assert f"| digits | curvature | {curvature_auroc:.4f} |" in summary


def test_suspects_to_review(workdir):
    suspects = pd.read_csv(workdir / RUN / "suspects.csv")
    table = pd.read_csv(workdir / RUN / "curvature.csv").set_index("index")
    methods = pd.read_csv(workdir / RUN / "methods.csv").set_index("index")
    history = np.load(workdir / RUN / "train_history.npz")
    assert len(suspects) == 100 and suspects["curvature_rank"].tolist() == list(range(1, 101))
    assert suspects["index"].tolist() == table.sort_values("rank").index[:100].tolist()
    # the suggested label: the class of highest softmax probability averaged over the epochs' passes,
    # whose given-label column is the history's per-epoch probability of the given label, averaged
    mean_probs = history["mean_probs"]
    given = table.sort_index()["given_label"].to_numpy()
    np.testing.assert_allclose(mean_probs[np.arange(len(given)), given], history["p_given"].mean(0), rtol=1e-6)
    idx = suspects["index"].to_numpy()
    assert (suspects["suggested_label"] == mean_probs[idx].argmax(1)).all()
    np.testing.assert_allclose(suspects["suggested_probability"], mean_probs[idx].max(1))
    assert (suspects["aum_rank"] == methods["aum"].rank(ascending=False, method="first")[idx].to_numpy()).all()
    pairs = pd.read_csv(workdir / RUN / "duplicates.csv")
    assert (suspects["in_conflicting_pair"] == suspects["index"].isin(set(pairs["i"]) | set(pairs["j"]))).all()
    assert (suspects["true_label"] == table.loc[idx, "true_label"].to_numpy()).all()
    corrupted = suspects["corrupted"].to_numpy(bool)
    right = (suspects["suggested_label"] == suspects["true_label"]).to_numpy()
    reported = json.loads((workdir / RUN / "metrics.json").read_text())["suspects"]
    assert reported["suggested_is_true_on_corrupted_suspects"] == pytest.approx(right[corrupted].mean())
    assert reported["corrupted_suspects"] == corrupted.sum() > 50


def test_cleaning_retrains_with_each_ranking_against_the_noisy_and_oracle_trainings(workdir):
    cleaning = pd.read_csv(workdir / RUN / "cleaning.csv")
    table = pd.read_csv(workdir / RUN / "curvature.csv")
    methods = pd.read_csv(workdir / RUN / "methods.csv")
    train_metrics = pd.read_csv(workdir / RUN / "train_metrics.csv")
    rows = cleaning.set_index("method")
    assert list(cleaning["method"]) == ["noisy labels", "unchanged", "oracle", "curvature", "aum"]
    assert rows.loc["noisy labels", "test_acc"] == train_metrics["test_acc"].iloc[-1]
    n, corrupted = len(table), table["corrupted"].sum()
    assert rows.loc["noisy labels", "trained_on"] == n
    # the control: the given labels retrained by the cleanings' path reproduce the run's own training
    # bit for bit on the CPU, so every cleaning differs from it by what it removed or relabelled only
    assert rows.loc["unchanged", "test_acc"] == rows.loc["noisy labels", "test_acc"]
    assert rows.loc["unchanged", ["flagged", "changed", "trained_on"]].tolist() == [0, 0, n]
    control = json.loads((workdir / RUN / "cleaning/unchanged.json").read_text())["test_acc_per_epoch"]
    assert control == train_metrics["test_acc"].tolist()
    assert rows.loc["oracle", "changed"] == corrupted and rows.loc["oracle", "trained_on"] == n
    for method, scores in (("curvature", table), ("aum", methods)):
        top = scores.sort_values(method, ascending=False, kind="stable").head(round(0.1 * n))
        assert rows.loc[method, "changed"] == len(top) and rows.loc[method, "trained_on"] == n - len(top)
        assert rows.loc[method, "changed_corrupted"] == top["corrupted"].sum()
        assert rows.loc[method, "fraction"] == 0.1 and rows.loc[method, "action"] == "remove"
        # what the retraining trained on: everyone but the top of the ranking, with their given labels
        labels = pd.read_csv(workdir / RUN / f"cleaning/{method}_0.1_remove.labels.csv")
        assert set(labels.loc[~labels["keep"], "index"]) == set(top["index"])
        result = json.loads((workdir / RUN / f"cleaning/{method}_0.1_remove.json").read_text())
        assert len(result["test_acc_per_epoch"]) == EPOCHS and result["test_acc"] == rows.loc[method, "test_acc"]
    # the true labels train at least as well as the noisy ones (CPU training is deterministic)
    assert rows.loc["oracle", "test_acc"] >= rows.loc["noisy labels", "test_acc"]
    figure = pd.read_csv(workdir / RUN / "figures/cleaning.csv")
    assert figure["test_acc"].tolist() == cleaning["test_acc"].tolist()
    summary = (workdir / "results/summary/cleaning.md").read_text()
    assert f"| digits | oracle | {rows.loc['oracle', 'test_acc']:.4f} |" in summary
    assert f"| digits | curvature, remove (rate) | {rows.loc['curvature', 'test_acc']:.4f} (" in summary


def test_a_cleaning_reruns_only_when_its_rankings_scores_or_its_fraction_change(workdir):
    # the history table is made again (without csl): aum's cleaning reruns, curvature's not
    methods = [m for m in METHODS if m not in ("curvature", "csl", "confident_learning", "self_confidence", "ssft")]
    jobs = planned_jobs(workdir, {"baselines": {"history": methods}})
    # choosing methods retrains nothing (the evaluation passes of the training pass are made for all)
    assert rule_counts(jobs)["history_baselines"] == 2 and "train" not in rule_counts(jobs)
    cleaned = sorted(out for rule, outputs in jobs if rule in ("clean_labels", "retrain") for out in outputs)
    assert cleaned == [str(RUN / "cleaning/aum_0.1_remove.json"), str(RUN / "cleaning/aum_0.1_remove.labels.csv")]
    # another fraction: its own cleanings only; the oracle and the existing ones stay
    jobs = planned_jobs(workdir, {"cleaning": {"fractions": ["rate", 0.05]}})
    counts = rule_counts(jobs)
    assert counts == {"clean_labels": 2, "retrain": 2, "cleaning_table": 1, "cleaning_summary": 1, "all": 1}
    assert all("_0.05_remove" in out for rule, outputs in jobs if rule == "retrain" for out in outputs)


def test_the_statistics_source_and_el2n_epoch_retrain_and_the_methods_do_not(workdir):
    # the run recorded its statistics from the training pass (the default): from the eval pass, every
    # training reruns, and what follows it; the other trainings (cross-validation, SSFT) not
    counts = rule_counts(planned_jobs(workdir, {"baselines": {"statistics": "eval_pass"}}))
    assert counts["train"] == 2 and counts["history_baselines"] == 2
    assert not {"crossval", "ssft", "prepare", "corrupt"} & set(counts)
    # EL2N's epoch keeps an evaluation pass during training: another epoch retrains
    assert rule_counts(planned_jobs(workdir, {"baselines": {"el2n_epoch": 1}}))["train"] == 2
    # choosing methods does not (EL2N's pass is made whether EL2N is chosen or not): in the cleaning test


def test_switched_off_cleaning_plans_no_cleaning(workdir):
    planned_rules = set(rule_counts(planned_jobs(workdir, {"cleaning": {"enabled": False}}, "--forceall")))
    assert {"train", "score", "inject_duplicates"} <= planned_rules
    assert not {"suspects", "clean_labels", "retrain", "cleaning_table"} & planned_rules


def test_conflicting_duplicates_table(workdir):
    pairs = pd.read_csv(workdir / RUN / "duplicates.csv")
    table = pd.read_csv(workdir / RUN / "curvature.csv").set_index("index")
    assert list(pairs.columns) == ["i", "j", "similarity", "label_i", "label_j", "true_i", "true_j",
                                   "curvature_rank_i", "curvature_rank_j"]
    assert (pairs["similarity"] >= 0.9).all() and (pairs["label_i"] != pairs["label_j"]).all()
    assert (pairs["curvature_rank_i"] == table.loc[pairs["i"], "rank"].to_numpy()).all()
    assert (pairs["label_j"] == table.loc[pairs["j"], "given_label"].to_numpy()).all()
    fractions = pd.read_csv(workdir / RUN / "duplicates_top_k.csv")
    assert fractions["top_k"].tolist() == [10, 100]
    in_pairs = set(pairs["i"]) | set(pairs["j"])
    for k, fraction in zip(fractions["top_k"], fractions["fraction_in_conflicting_pairs"]):
        top = table.sort_values("rank").index[:k]
        assert fraction == pytest.approx(np.mean([i in in_pairs for i in top]))


def test_feldman_zhang_agreement(workdir):
    result = json.loads((workdir / RUN / "feldman_zhang.json").read_text())
    curvature = pd.read_csv(workdir / RUN / "curvature.csv").sort_values("index")["curvature"].to_numpy()
    mem = np.load(workdir / "fz_scores.npz")["tr_mem"]
    assert result["cosine_all"] == pytest.approx(curvature @ mem / np.linalg.norm(curvature) / np.linalg.norm(mem))
    assert result["top_k"] == 100 and "cosine_top100" in result


def test_report_builds_with_every_figure(workdir, tmp_path):
    # with only what `pip install -e .` installs: the report needs Snakemake's `reports` extra (pygments)
    snakemake(workdir, "--nolock", "--report", str(tmp_path / "report.html"), declared_only=())
    html = (tmp_path / "report.html").read_text()
    for name in FIGURES:
        assert f"{name}.png" in html
    assert "auroc_table.md" in html and "highest curvature" in html
    assert "Memorization through the curvature" in html  # the workflow description page
    # the cleaning figure per run and the summary across runs, with their captions
    assert "cleaning.png" in html and "cleaning.md" in html
    assert "closes the gap between them" in html and "mean +- std over seeds, per noise rate" in html


PRIVACY_STATISTICS = ["curvature_mean", "curvature_last", "loss_final", "logit_confidence_final"]


def test_privacy_audit_is_recomputed_from_the_run_files(workdir):
    import torch.nn.functional as F

    from memorization_curvature import batches, checkpoints, data

    table = pd.read_csv(workdir / RUN / "privacy.csv").set_index("statistic")
    assert table.index.tolist() == PRIVACY_STATISTICS
    assert (table["members"] == 1437).all() and (table["non_members"] == 360).all()
    # the final checkpoint's loss and logit-scaled confidence, from its logits computed here
    prepared = data.load_prepared(workdir / "results/digits/data.npz")
    model, epoch = checkpoints.load_model(workdir / RUN / f"checkpoints/epoch{EPOCHS}.pt")
    model.eval()
    final = np.load(workdir / RUN / "privacy/final_outputs.npz")
    assert int(final["epoch"]) == EPOCHS
    given = torch.tensor(pd.read_csv(workdir / RUN / "labels.csv")["given_label"].to_numpy())
    values = {}
    for which, labels in (("train", given), ("test", torch.tensor(prepared.test_labels))):
        with torch.no_grad():
            logits = model(batches.normalize_images(getattr(prepared, f"{which}_images"), prepared)).double()
        loss = F.cross_entropy(logits, labels, reduction="none").numpy()
        others = logits.scatter(1, labels[:, None], float("-inf"))
        confidence = (logits.gather(1, labels[:, None])[:, 0] - torch.logsumexp(others, 1)).numpy()
        np.testing.assert_allclose(final[f"{which}_loss"], loss, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(final[f"{which}_logit_confidence"], confidence, rtol=1e-4, atol=1e-4)
        values[which] = {"loss_final": -final[f"{which}_loss"],
                         "logit_confidence_final": final[f"{which}_logit_confidence"]}
    scores = [np.load(workdir / RUN / f"scores/epoch{e}.npz") for e in range(1, EPOCHS + 1)]
    for which in ("train", "test"):
        per_epoch = np.array([s[f"{which}_curvature"] for s in scores])
        values[which].update(curvature_mean=-per_epoch.mean(0), curvature_last=-per_epoch[-1])
    # members (the training samples) positive; each statistic oriented so that higher says member
    truth = np.r_[np.ones(1437, bool), np.zeros(360, bool)]
    curves = pd.read_csv(workdir / RUN / "figures/privacy_roc.csv")
    reported = json.loads((workdir / RUN / "metrics.json").read_text())["membership_inference"]
    for name in PRIVACY_STATISTICS:
        score = np.r_[values["train"][name], values["test"][name]]
        assert table.loc[name, "auroc"] == pytest.approx(roc_auc_score(truth, score)), name
        fpr, tpr, _ = roc_curve(truth, score, drop_intermediate=False)
        assert table.loc[name, "tpr_at_1pct_fpr"] == tpr[fpr <= 0.01].max(), name
        assert table.loc[name, "balanced_accuracy"] == pytest.approx(((tpr + 1 - fpr) / 2).max()), name
        curve = curves[curves["statistic"] == name]
        assert curve["false_positive_rate"].is_monotonic_increasing and curve["true_positive_rate"].iloc[-1] == 1
        assert np.trapezoid(curve["true_positive_rate"], curve["false_positive_rate"]) == pytest.approx(
            table.loc[name, "auroc"])
        assert reported[name]["auroc"] == table.loc[name, "auroc"]
        assert reported[name]["tpr_at_0.1pct_fpr"] == table.loc[name, "tpr_at_0.1pct_fpr"]


def test_loss_and_logit_confidence_rank_alike_without_shadow_models(workdir):
    # both are monotone in the probability of the label: one threshold each splits the samples alike;
    # LiRA's statistic differs once shadow models give each sample its own distribution
    table = pd.read_csv(workdir / RUN / "privacy.csv").set_index("statistic")
    assert table.loc["loss_final", "auroc"] == pytest.approx(table.loc["logit_confidence_final", "auroc"])


def test_scoring_every_third_epoch_averages_and_audits_the_epochs_counted_back_from_the_last(workdir):
    # of 4 epochs: 4 and 1. The average and the audit read those epochs' scores, the audit's last one is 4
    output = planned(workdir, {"curvature": {"score_every": 3}})
    inputs = {}
    for block in output.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        line = next((line for line in block.splitlines() if line.startswith("    input: ")), "")
        if f"output: {RUN}/" in block:
            inputs[rule] = sorted(p for p in line.removeprefix("    input: ").split(", ") if "/scores/" in p)
    expected = [str(RUN / "scores/epoch1.npz"), str(RUN / "scores/epoch4.npz")]
    assert inputs["average"] == inputs["privacy_audit"] == expected, inputs
    assert "score" not in inputs  # their scores are there already


def test_the_audit_switched_off_or_the_dynamics_figure_off_keeps_every_score(workdir):
    # the audit needs the test samples' curvature: scoring keeps it while either of them asks for it
    off = rule_counts(planned_jobs(workdir, {"privacy": {"enabled": False}}))
    assert off == {"evaluate": 2, "aggregate": 1, "figure_scores": 2, "summary_figures": 1, "all": 1}, off
    assert "Nothing to be done" in planned(workdir, {"figures": {"dynamics": False}})
    neither = rule_counts(planned_jobs(workdir, {"privacy": {"enabled": False}, "figures": {"dynamics": False}}))
    assert neither["score"] == 2 * EPOCHS and "train" not in neither  # the training samples only, scored again


def test_every_job_wrote_a_log(workdir):
    logs = sorted(p.name for p in (workdir / "logs/digits/noise0.1/seed0").iterdir())
    assert {"corrupt.log", "train.log", "average.log", "evaluate.log", "figure_grids.log", "figure_scores.log",
            "figure_dynamics.log"} <= set(logs)
    assert "epoch 4/4" in (workdir / "logs/digits/noise0.1/seed0/train.log").read_text()


def test_every_log_starts_with_the_digest_of_the_code_that_ran(workdir):
    from memorization_curvature.provenance import script_digest

    logs = sorted((workdir / "logs").rglob("*.log"))
    assert len(logs) >= 20
    for log in logs:
        rule = re.sub(r"_epoch\d+$", "", log.stem)  # score_epoch3.log: the score rule
        if log.parent.name == "cleaning":  # cleaning/<name>_labels.log and cleaning/<name>.log
            rule = "clean_labels" if rule.endswith("_labels") else "retrain"
        first = log.read_text().splitlines()[0]
        assert first.endswith(f"package source digest {script_digest(REPO / 'scripts' / f'{rule}.py')}"), log


# What follows new curvature scores: in each run (the noise run and the duplicates run), once over the
# runs, and the cleaning by curvature (the noise run's only: not aum's, not the oracle's)
PER_RUN_AFTER_SCORING = ["average", "evaluate", "figure_grids", "figure_scores", "figure_dynamics", "compare_methods",
                         "find_duplicates", "compare_memorization", "suspects", "privacy_audit"]
ONCE_AFTER_SCORING = ["aggregate", "summary_figures", "methods_summary", "all"]
CLEANING_AFTER_SCORING = {"clean_labels": 1, "retrain": 1, "cleaning_table": 1, "cleaning_summary": 1}
# after a new training, besides its scoring: the peer methods and the final checkpoint's evaluation
BASELINE_JOBS = ["history_baselines", "crossval", "confident_learning", "ssft", "final_outputs"]


def after_scoring(runs):
    """The jobs after new scores of ``runs`` runs (their own scoring aside)."""
    return {**{rule: runs for rule in PER_RUN_AFTER_SCORING}, **{rule: 1 for rule in ONCE_AFTER_SCORING},
            **CLEANING_AFTER_SCORING}


# The caching tests below only dry-run against the finished workdir; they run in file order.


def test_nothing_changed_runs_nothing(workdir):
    assert planned_jobs(workdir) == []


@pytest.mark.parametrize("key,value", [("n_probes", 5), ("h", 0.002)])
def test_changing_n_or_h_reruns_scoring_and_after_but_not_training(workdir, key, value):
    counts = rule_counts(planned_jobs(workdir, {"curvature": {key: value}}))
    assert counts == {"score": 2 * EPOCHS, **after_scoring(2)}  # both runs' scores, not their trainings


# Settings that change speed, memory or placement only (config.RUNTIME_SETTINGS and the threads):
# the jobs read them from the config, so a finished workflow has nothing to do after any of them.
SPEED_ONLY = [("train", "placement", "stream"), ("train", "loader_workers", 0), ("train", "threads", 2),
              ("train", "time_limit_margin_s", 45),
              ("curvature", "batch_size", 100), ("curvature", "probes_per_pass", 5), ("curvature", "device", "cpu"),
              ("curvature", "threads", 2), ("data", "threads", 1),
              ("gpu_slots", "folder", "/tmp/memcurv-gpu-slots"), ("curvature", "checkpoints_per_job", 3)]


def test_every_speed_setting_is_listed_here():
    from memorization_curvature.config import RUNTIME_SETTINGS

    listed = {(section, key) for section, key, _ in SPEED_ONLY}
    assert {place for step in RUNTIME_SETTINGS.values() for place in step.values()} <= listed


@pytest.mark.parametrize("job,trainings", [("crossval", 2), ("ssft", 4), ("unchanged", 1)])
def test_the_extra_trainings_test_after_their_last_epoch_the_retrainings_after_each(workdir, job, trainings):
    # cross-validation and SSFT log their test accuracy only (after the last epoch); the cleaning
    # retrainings' per-epoch accuracies are in their results
    folder = "logs/digits/noise0.1/seed0" + ("/cleaning" if job == "unchanged" else "")
    log = (workdir / folder / f"{job}.log").read_text()
    tested = re.findall(r"epoch (\d+)/\d+ .* test-acc (\S+)", log)
    assert len(tested) == trainings * EPOCHS, log[-2000:]
    measured = [int(epoch) for epoch, accuracy in tested if accuracy != "nan"]
    assert measured == ([EPOCHS] * trainings if job in ("crossval", "ssft") else list(range(1, EPOCHS + 1)))


def test_changing_the_speed_settings_reruns_nothing(workdir):
    # all at once: a job reruns if any of its parameters changed, so one dry run with every setting
    # changed plans whatever each would plan alone (each alone, to name it, only if that one plans any)
    changed = {}
    for section, key, value in SPEED_ONLY:
        changed.setdefault(section, {})[key] = value
    output = planned(workdir, changed)
    if "Nothing to be done" not in output:
        rerunning = [f"{section}.{key}" for section, key, value in SPEED_ONLY
                     if "Nothing to be done" not in planned(workdir, {section: {key: value}})]
        pytest.fail(f"speed settings that rerun jobs: {rerunning}\n{output[-2000:]}")


def test_scores_do_not_depend_on_scoring_batch_size_or_probes_per_pass(workdir, tmp_path):
    from memorization_curvature.stages import score

    written = np.load(workdir / RUN / "scores/epoch3.npz")
    inputs = [str(workdir / "results/digits/data.npz"), str(workdir / RUN / "labels.csv"),
              str(workdir / RUN / "checkpoints/epoch3.pt")]
    options = dict(n_probes=FULL_CONFIG["curvature"]["n_probes"], h=1e-3, form="paper", method="finite_difference", seed=0,
                   score_test=True)
    score.score(*inputs, str(tmp_path / "other.npz"), **options, batch_size=37, probes_per_pass=3,
                 placement="stream", loader_workers=0)
    other = np.load(tmp_path / "other.npz")
    for key in ("train_curvature", "test_curvature"):
        # float32 sums in other groupings: equal to rounding, far below the spread of the scores
        np.testing.assert_allclose(other[key], written[key], rtol=1e-4, atol=1e-6 * np.median(written[key]))


LIGHT_STEPS = """
import json, sys
from memorization_curvature.stages import baselines, data, evaluate, figures, memorization, privacy, score
run, out = sys.argv[1], sys.argv[2]
prepared = "results/digits/data.npz"
scores = [f"{run}/scores/epoch{e}.npz" for e in range(1, 5)]
data.corrupt(prepared, f"{out}/labels.csv", rate=0.1, seed=0)
score.average(f"{run}/labels.csv", scores, f"{out}/curvature.csv")
evaluate.evaluate(f"{run}/curvature.csv", f"{run}/train_metrics.csv", f"{out}/metrics.json", dataset="digits",
                variant="noise0.1", seed=0, epochs_scored=[1, 2, 3, 4])
evaluate.aggregate([f"{run}/metrics.json"], f"{out}/auroc.csv")
figures.plot_grids(prepared, f"{run}/curvature.csv", top=f"{out}/t.png", bottom=f"{out}/b.png", per_class=f"{out}/p.png",
                  top_k=20, run_title="t")
figures.plot_scores(f"{run}/curvature.csv", f"{run}/metrics.json", histogram=f"{out}/h.png", roc=f"{out}/r.png",
                   run_title="t")
figures.plot_dynamics(f"{run}/labels.csv", scores, output=f"{out}/d.png", run_title="t")
figures.summarize("results/auroc.csv", figure=f"{out}/s.png", table=f"{out}/s.md")
baselines.history_baselines(f"{run}/labels.csv", f"{run}/train_history.npz", f"{out}/history.csv", methods=["csl", "aum"],
                         el2n_epoch=2)
baselines.confident_learning(f"{run}/labels.csv", f"{run}/baselines/crossval_probs.npz", f"{out}/cl.csv")
baselines.compare(f"{run}/curvature.csv", [f"{out}/history.csv", f"{out}/cl.csv"], f"{out}/m.csv", f"{out}/mm.csv",
               roc=f"{out}/mr.png", run_title="t")
baselines.methods_summary([f"{out}/mm.csv"], [{"dataset": "digits", "variant": "noise0.1", "seed": 0}],
                       table=f"{out}/ms.csv", markdown=f"{out}/ms.md")
memorization.find_duplicates(prepared, f"{run}/curvature.csv", f"{out}/dup.csv", f"{out}/dups.csv", figure=f"{out}/dup.png",
                       threshold=0.9, feature_size=8, top_k=[10], run_title="t")
memorization.compare_memorization(f"{run}/curvature.csv", "fz_scores.npz", f"{out}/fz.json", figure=f"{out}/fz.png",
                            top_k=100, run_title="t", images_replaced=False)
privacy.audit(f"{run}/labels.csv", scores, f"{run}/privacy/final_outputs.npz", f"{out}/privacy.csv", figure=f"{out}/pr.png",
              run_title="t")
heavy = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
print(json.dumps(heavy))
"""


def test_light_steps_do_not_import_torch(workdir, tmp_path):
    # every step without a network, in one fresh interpreter, on the finished run's files
    result = subprocess.run([sys.executable, "-c", LIGHT_STEPS, str(RUN), str(tmp_path)], cwd=workdir,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert pd.read_csv(tmp_path / "m.csv")["curvature"].notna().all()  # the steps did their work
    assert pd.read_csv(tmp_path / "privacy.csv").equals(pd.read_csv(workdir / RUN / "privacy.csv"))


@pytest.mark.parametrize("dataset,changes_digits", [("cifar10", False), ("digits", True)])
def test_a_recipe_change_reruns_training_of_its_dataset_only(workdir, dataset, changes_digits):
    counts = rule_counts(planned_jobs(workdir, {"recipes": {dataset: {"lr": 0.02}}}))
    if changes_digits:  # both runs train again, and every training of the peer methods
        assert counts["train"] == 2 and counts["score"] == 2 * EPOCHS
        assert counts["crossval"] == 2 and counts["ssft"] == 2
        assert counts["retrain"] == 4  # every cleaning, the control and the oracle train with the new recipe
    else:
        assert counts == {}


@pytest.mark.parametrize("key,value,new_runs", [("seeds", [0, 1], ["noise0.1/seed1/", "dup40/seed1/"]),
                                                 ("noise_rates", [0.1, 0.2], ["noise0.2/seed0/"])])
def test_new_seed_or_rate_runs_only_its_own_chain(workdir, key, value, new_runs):
    jobs = planned_jobs(workdir, {key: value})
    runs = len(new_runs)
    first = {"corrupt": 1, "inject_duplicates": 1} if runs == 2 else {"corrupt": 1}
    assert rule_counts(jobs) == {**first, "train": runs, "score": runs * EPOCHS, **after_scoring(runs),
                                 **{rule: runs for rule in BASELINE_JOBS},
                                 # the noise run's: the control, the oracle, by curvature and by aum
                                 "clean_labels": 4, "retrain": 4}
    for rule, outputs in jobs:
        if rule not in ONCE_AFTER_SCORING + ["cleaning_summary"]:
            assert all(any(new in out for new in new_runs) for out in outputs), (rule, outputs)


def test_a_score_file_of_another_dataset_is_refused(workdir, tmp_path):
    workdir = Path(shutil.copytree(workdir, tmp_path / "run", symlinks=True))  # it changes an input
    labels = np.load(workdir / "results/digits/data.npz")["train_labels"].copy()
    labels[5] = (labels[5] + 1) % 10
    write_score_file(workdir, labels)
    result = subprocess.run(
        snakemake_command(workdir, "--cores", "1"), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "tr_labels differ from the dataset's labels at 1 of 1437 images (first at index 5)" in output
    assert "Traceback" not in output  # one clear line, no traceback soup
