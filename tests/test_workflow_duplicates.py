"""The injected-duplicates experiment on digits through the workflow (the full shared run's dup40 run)."""

import json

import numpy as np
import pandas as pd
import pytest

from workflow_helpers import FULL_EPOCHS, full_run

RUN = "results/digits/dup40/seed0"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The finished workflow with every rule (shared with other test files: read only)."""
    return full_run(tmp_path_factory)


def test_injected_duplicates_run(workdir):
    labels = pd.read_csv(workdir / RUN / "labels.csv")
    assert labels["corrupted"].sum() == 40
    original = np.load(workdir / "results/digits/data.npz")["train_images"]
    injected = np.load(workdir / RUN / "data.npz")["train_images"]
    changed = np.flatnonzero((original != injected).any(axis=(1, 2, 3)))
    assert set(changed) <= set(np.flatnonzero(labels["corrupted"]))
    # every injected copy is found as an exact duplicate with a conflicting label
    pairs = pd.read_csv(workdir / RUN / "duplicates.csv")
    exact = pairs[pairs["similarity"] > 0.999]
    found = set(exact["i"]) | set(exact["j"])
    assert set(np.flatnonzero(labels["corrupted"])) <= found
    metrics = json.loads((workdir / RUN / "metrics.json").read_text())
    assert metrics["injected_duplicates"] == 40 and metrics["noise_rate"] is None
    assert metrics["auroc"] > 0.95  # curvature finds the relabelled copies
    summary = pd.read_csv(workdir / "results/auroc.csv")
    assert sorted(summary["variant"]) == ["dup40", "noise0.1"]


def test_the_published_scores_leave_the_replaced_images_out(workdir):
    # the published scores describe the original images: the replaced ones are left out of the comparison
    labels = pd.read_csv(workdir / RUN / "labels.csv")
    mem = np.load(workdir / "fz_scores.npz")["tr_mem"]
    agreement = json.loads((workdir / RUN / "feldman_zhang.json").read_text())
    untouched = ~labels["corrupted"].to_numpy(bool)
    curvature = pd.read_csv(workdir / RUN / "curvature.csv").sort_values("index")["curvature"].to_numpy()[untouched]
    assert agreement["samples"] == untouched.sum() == len(labels) - 40
    assert agreement["replaced_images_left_out"] == 40
    assert agreement["cosine_all"] == pytest.approx(curvature @ mem[untouched] / np.linalg.norm(curvature)
                                                    / np.linalg.norm(mem[untouched]))


def test_peer_methods_find_the_relabelled_copies(workdir):
    methods = pd.read_csv(workdir / RUN / "methods_metrics.csv").set_index("method")["auroc"]
    assert (methods[["curvature", "csl", "in_confidence", "ssft"]] > 0.9).all(), methods
    ssft = pd.read_csv(workdir / RUN / "baselines/ssft.csv")["ssft"]
    assert len(ssft) == 1437 and ssft.between(0, FULL_EPOCHS).all() and ssft.nunique() > 1
