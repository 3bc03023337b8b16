"""`curvature.precision: bf16` through the workflow: a paper configuration, tiny, scored both ways."""

import json
import re

import numpy as np
import pytest

from dataset_files import write_cifar10
from workflow_helpers import REPO, snakemake

RUN = "results/cifar10/noise0.1/seed1"


def auroc(workdir):
    return json.loads((workdir / RUN / "metrics.json").read_text())["auroc"]


def test_a_paper_configuration_scores_the_same_in_bf16(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=100, n_test=20)  # 500 CIFAR-format training images
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    tiny = ["--configfile", str(REPO / "configs/paper/cifar10.yaml"), "--config", "noise_rates=[0.1]", "seeds=[1]",
            "data={verify_checksums: false}", "baselines={history: [], confident_learning: false}",
            "duplicates={enabled: false}", "figures={dynamics: false}", "privacy={enabled: false}"]
    # the paper's recipe, shortened, with the small network so that it runs on a CPU in seconds
    recipe = "train={epochs: 3, batch_size: 32, lr: 0.05, model: small_cnn, threads: 1}"
    scoring = "n_probes: 2, score_every: 3, batch_size: 128, threads: 1"  # the last checkpoint only
    snakemake(tmp_path, f"{RUN}/metrics.json", *tiny, recipe, f"curvature={{{scoring}}}")
    float32 = np.load(tmp_path / RUN / "scores/epoch3.npz")["train_curvature"]
    float32_auroc = auroc(tmp_path)
    snakemake(tmp_path, f"{RUN}/metrics.json", *tiny, recipe, f"curvature={{{scoring}, precision: bf16}}")
    bf16 = np.load(tmp_path / RUN / "scores/epoch3.npz")["train_curvature"]
    log = (tmp_path / "logs/cifar10/noise0.1/seed1/score_epoch3.log").read_text()
    # the job says it scored in bf16, and not that it fell back to float32
    assert re.search(r"scoring \d+ samples on cpu \(.*, bf16; .* at epoch 3", log) and "cannot be propagated" not in log, log
    assert not np.array_equal(bf16, float32)  # scored the other way ...
    assert auroc(tmp_path) == pytest.approx(float32_auroc, abs=0.002)  # ... finding the same labels
    assert np.median(np.abs(bf16 - float32) / float32) < 0.02
