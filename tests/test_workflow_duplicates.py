"""The injected-duplicates experiment on digits through the workflow."""

import json

import numpy as np
import pandas as pd

from workflow_helpers import snakemake, write_config

RUN = "results/digits/dup40/seed0"


def test_injected_duplicates_run(tmp_path):
    write_config(tmp_path, {
        "datasets": ["digits"], "noise_rates": [0.1], "seeds": [0], "injected_duplicates": [40],
        "train": {"epochs": 3, "threads": 1}, "curvature": {"n_probes": 2},
        "baselines": {"history": ["csl", "in_confidence"], "confident_learning": False},
        "figures": {"dynamics": False},
    })
    snakemake(tmp_path, f"{RUN}/methods_metrics.csv", f"{RUN}/duplicates.csv", "results/auroc.csv")
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
    assert metrics["injected_duplicates"] == 40 and metrics["noise_rate"] is None and 0 <= metrics["auroc"] <= 1
    methods = pd.read_csv(tmp_path / RUN / "methods_metrics.csv")
    assert methods["method"].tolist() == ["curvature", "csl", "in_confidence"]
    summary = pd.read_csv(tmp_path / "results/auroc.csv")
    assert sorted(summary["variant"]) == ["dup40", "noise0.1"]
