"""The injected-duplicates experiment on digits through the workflow."""

import json

import numpy as np
import pandas as pd
import pytest

from workflow_helpers import snakemake, write_config

RUN = "results/digits/dup40/seed0"


def test_injected_duplicates_run(tmp_path):
    write_config(tmp_path, {
        "datasets": ["digits"], "noise_rates": [0.1], "seeds": [0], "injected_duplicates": [40],
        "train": {"epochs": 3, "threads": 1}, "curvature": {"n_probes": 2, "score_every": 2},
        "baselines": {"history": ["csl", "in_confidence"], "confident_learning": False, "ssft": True},
        "figures": {"dynamics": False}, "feldman_zhang": {"files": {"digits": "fz_scores.npz"}, "top_k": 50},
    })
    snakemake(tmp_path, "results/digits/data.npz")
    original = np.load(tmp_path / "results/digits/data.npz")["train_labels"]
    mem = np.random.default_rng(0).uniform(0, 1, len(original))
    np.savez(tmp_path / "fz_scores.npz", tr_mem=mem, tr_labels=original)  # the published scores' layout
    snakemake(tmp_path, f"{RUN}/methods_metrics.csv", f"{RUN}/duplicates.csv", "results/auroc.csv",
              f"{RUN}/feldman_zhang.json")
    labels = pd.read_csv(tmp_path / RUN / "labels.csv")
    assert labels["corrupted"].sum() == 40
    original = np.load(tmp_path / "results/digits/data.npz")["train_images"]
    injected = np.load(tmp_path / RUN / "data.npz")["train_images"]
    changed = np.flatnonzero((original != injected).any(axis=(1, 2, 3)))
    assert set(changed) <= set(np.flatnonzero(labels["corrupted"]))
    # every injected copy is found as an exact duplicate with a conflicting label
    pairs = pd.read_csv(tmp_path / RUN / "duplicates.csv")
    exact = pairs[pairs["similarity"] > 0.999]
    found = set(exact["i"]) | set(exact["j"])
    assert set(np.flatnonzero(labels["corrupted"])) <= found
    metrics = json.loads((tmp_path / RUN / "metrics.json").read_text())
    assert metrics["injected_duplicates"] == 40 and metrics["noise_rate"] is None
    assert metrics["auroc"] > 0.95  # curvature finds the relabelled copies (0.988 when measured)
    # the published scores describe the original images: the replaced ones are left out of the comparison
    agreement = json.loads((tmp_path / RUN / "feldman_zhang.json").read_text())
    untouched = ~labels["corrupted"].to_numpy(bool)
    curvature = pd.read_csv(tmp_path / RUN / "curvature.csv").sort_values("index")["curvature"].to_numpy()[untouched]
    assert agreement["samples"] == untouched.sum() == len(original) - 40
    assert agreement["replaced_images_left_out"] == 40
    assert agreement["cosine_all"] == pytest.approx(curvature @ mem[untouched] / np.linalg.norm(curvature)
                                                    / np.linalg.norm(mem[untouched]))
    # score_every 2 of 3 epochs: epochs 1 and 3 (counted back from the last) are scored and averaged
    assert sorted(p.name for p in (tmp_path / RUN / "scores").iterdir()) == ["epoch1.npz", "epoch3.npz"]
    mean = np.mean([np.load(tmp_path / RUN / f"scores/epoch{e}.npz")["train_curvature"] for e in (1, 3)], axis=0)
    np.testing.assert_allclose(pd.read_csv(tmp_path / RUN / "curvature.csv").sort_values("index")["curvature"],
                               mean, rtol=1e-6)
    methods = pd.read_csv(tmp_path / RUN / "methods_metrics.csv")
    assert methods["method"].tolist() == ["curvature", "csl", "in_confidence", "ssft"]
    assert (methods["auroc"] > 0.9).all(), methods  # SSFT too (0.98 when measured)
    ssft = pd.read_csv(tmp_path / RUN / "baselines/ssft.csv")["ssft"]
    assert len(ssft) == len(original) and ssft.between(0, 3).all() and ssft.nunique() > 1
    summary = pd.read_csv(tmp_path / "results/auroc.csv")
    assert sorted(summary["variant"]) == ["dup40", "noise0.1"]
