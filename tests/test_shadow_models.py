"""The shadow-model attack through the workflow: six small CNNs, each trained on its half of a digits
subset whose labels are almost all wrong (what a network can only memorize), scored by the rules that
run it, then attacked; and what the finished run plans when a setting changes."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from memorization_curvature import batches, checkpoints, data, io, privacy, training

from workflow_helpers import SHADOW_CONFIG, SHADOW_MODELS, SHADOW_RUN, job_counts, planned, shadow_run

MODELS = SHADOW_MODELS
EPOCHS = SHADOW_CONFIG["recipes"]["digits"]["epochs"]
RUN = SHADOW_RUN
SHADOW = f"{RUN}/privacy/shadow"
SHADOW_JOBS = {"shadow_masks": 1, "shadow_train": MODELS, "shadow_score": MODELS, "shadow_attack": 1}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """The shared run (read only)."""
    workdir, output = shadow_run(tmp_path_factory)
    assert {rule: job_counts(output)[rule] for rule in SHADOW_JOBS} == SHADOW_JOBS
    return workdir


def statistics_of(folder):
    outputs = [io.load_npz(folder / f"model{model}.npz") for model in range(MODELS)]
    return {"logit_confidence": np.stack([o["logit_confidence"] for o in outputs]),
            "log_curvature": privacy.log_curvature(np.stack([o["curvature"] for o in outputs])),
            "loss": np.stack([o["loss"] for o in outputs])}


def attacked(workdir, masks):
    return privacy.over_targets(privacy.shadow_audit(statistics_of(workdir / SHADOW), masks)[0]).set_index("attack")


def test_networks_that_memorized_wrong_labels_give_their_members_away(audited):
    table = attacked(audited, io.load_npz(audited / SHADOW / "masks.npz")["inside"])
    for attack in ("lira_online", "lira_offline", "loss_threshold"):
        assert table.loc[attack, "auroc_mean"] > 0.85, table["auroc_mean"]
    for attack in ("curvature_lr", "curvature_nll", "curvature_offline"):
        assert table.loc[attack, "auroc_mean"] > 0.6, table["auroc_mean"]
    assert table.loc["lira_online", "tpr_at_1pct_fpr_mean"] > 0.1


def test_with_in_and_out_alike_every_attack_is_at_chance(audited):
    # masks of another seed: the models' IN and OUT samples, as the attack sees them, trained alike
    other = privacy.shadow_masks(len(pd.read_csv(audited / RUN / "labels.csv")), MODELS, seed=1)
    table = attacked(audited, other)
    assert (abs(table["auroc_mean"] - 0.5) < 0.1).all(), table["auroc_mean"]


def test_each_model_learned_its_half_only(audited):
    inside = io.load_npz(audited / SHADOW / "masks.npz")["inside"]
    phi = statistics_of(audited / SHADOW)["logit_confidence"][:, 0]
    for model in range(MODELS):
        fitted = phi[model] > 0  # the given label has more than half the probability
        assert fitted[inside[model]].mean() > 0.5 and fitted[~inside[model]].mean() < 0.2, model


def test_the_second_query_is_the_mirror_image(audited):
    prepared = data.load_prepared(audited / "results/digits/data.npz")
    given = pd.read_csv(audited / RUN / "labels.csv")["given_label"].to_numpy()
    network, epoch = checkpoints.load_model(audited / SHADOW / "model3.pt")
    assert epoch == SHADOW_CONFIG["recipes"]["digits"]["epochs"]
    mirrored = batches.ImageSet(np.ascontiguousarray(prepared.train_images[..., ::-1]), prepared.mean, prepared.std,
                                prepared.pixel_max)
    with torch.no_grad():
        logits = training.predict_logits(network.eval(), batches.DeviceImages(mirrored, "cpu", "auto", 0)).numpy()
    written = io.load_npz(audited / SHADOW / "model3.npz")
    assert list(written["queries"]) == ["image", "flipped"]
    np.testing.assert_allclose(written["logit_confidence"][1], privacy.logit_confidence(logits, given), rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(written["logit_confidence"][0], written["logit_confidence"][1])
    np.testing.assert_allclose(written["loss"][1], privacy.cross_entropy(logits, given), rtol=1e-5, atol=1e-5)


def test_the_workflow_writes_what_its_files_give(audited):
    run = audited / RUN
    inside = io.load_npz(run / "privacy/shadow/masks.npz")["inside"]
    labels = pd.read_csv(run / "labels.csv")
    assert inside.shape == (MODELS, len(labels)) and (inside.sum(axis=0) == MODELS // 2).all()
    for model in range(MODELS):  # each trained on its half: the log counts what the mask holds
        log = (audited / f"logs/digits/noise0.9/seed0/privacy/shadow_train{model}.log").read_text()
        assert f"shadow model {model}: trained on {inside[model].sum()} of {len(labels)} samples" in log
        # tested on the run's test set after the last epoch only
        tested = re.findall(r"epoch (\d+)/\d+ .* test-acc (\S+)", log)
        assert [epoch for epoch, accuracy in tested if accuracy != "nan"] == [str(EPOCHS)], tested
    # the table, recomputed from the models' scores and the masks
    rows, exposure, _ = privacy.shadow_audit(statistics_of(audited / SHADOW), inside)
    expected = privacy.over_targets(rows)
    table = pd.read_csv(run / "privacy_attack.csv")
    pd.testing.assert_frame_equal(table[expected.columns], expected, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(pd.read_csv(run / "privacy/attack_per_target.csv"), rows, check_exact=False,
                                  rtol=1e-9)
    # the samples: each attack's exposure and rank beside the run's curvature rank, most exposed first
    samples = pd.read_csv(run / "privacy_samples.csv").sort_values("index", ignore_index=True)
    curvature = pd.read_csv(run / "curvature.csv").sort_values("index", ignore_index=True)
    assert samples["curvature_rank"].equals(curvature["rank"]) and samples["corrupted"].equals(labels["corrupted"])
    for attack, score in exposure.items():
        np.testing.assert_allclose(samples[f"{attack}_exposure"], score)
        assert (np.argsort(samples[f"{attack}_rank"].to_numpy()) == np.argsort(-score, kind="stable")).all()
    written = pd.read_csv(run / "privacy_samples.csv")
    assert (written["lira_online_rank"].to_numpy() == np.arange(1, len(labels) + 1)).all()
    top = round(0.05 * len(labels))  # the 5 % most exposed
    # the loss threshold ranks no one as exposed (no per-sample calibration): no columns, no overlap
    assert "loss_threshold_exposure" not in samples and set(exposure) == set(table["attack"]) - {"loss_threshold"}
    loss_row = table.set_index("attack").loc["loss_threshold"]
    assert np.isnan(loss_row["top5pct_corrupted"]) and np.isnan(loss_row["top5pct_also_top_curvature"])
    for _, row in table[table["attack"] != "loss_threshold"].iterrows():
        most = np.argsort(-exposure[row["attack"]], kind="stable")[:top]
        assert row["top5pct_corrupted"] == pytest.approx(labels["corrupted"].to_numpy()[most].mean())
        assert row["top5pct_also_top_curvature"] == pytest.approx(
            len(set(most) & set(np.argsort(-curvature["curvature"].to_numpy(), kind="stable")[:top])) / top)
    assert (run / "figures/privacy_attack_roc.png").stat().st_size > 0


def plan(audited, settings):
    output = planned(audited, settings, f"{RUN}/privacy_attack.csv")
    return {} if "Nothing to be done" in output else job_counts(output)


def test_speed_settings_rerun_nothing_and_the_masks_and_k_rerun_the_shadows(audited):
    assert plan(audited, {"train": {"threads": 2, "time_limit_margin_s": 45, "loader_workers": 0},
                          "curvature": {"batch_size": 100, "device": "cpu", "probes_per_pass": 2}}) == {}
    assert plan(audited, {"privacy": {"mask_seed": 1}}) == SHADOW_JOBS
    assert plan(audited, {"privacy": {"shadow_models": 8}}) == {**SHADOW_JOBS, "shadow_train": 8, "shadow_score": 8}
    # another curvature: the run's scoring and the shadows' scoring, never their trainings
    counts = plan(audited, {"curvature": {"n_probes": 2}})
    assert counts["shadow_score"] == MODELS and counts["score"] == 2 and "shadow_train" not in counts
    assert "train" not in counts
