"""The ready-made configurations that regenerate the paper's mislabel table plan the right jobs."""

import re
import shutil
from pathlib import Path

import pytest

from dataset_files import write_cifar10, write_cifar100, write_mnist
from workflow_helpers import REPO, snakemake

CONFIGS = sorted((REPO / "configs" / "paper").glob("*.yaml"))


def job_counts(text):
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_paper_config_dry_run(tmp_path, config):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    # the dry run checks that the dataset's files are there (not their content)
    {"cifar10": write_cifar10, "cifar100": write_cifar100}.get(config.stem, lambda root: None)(tmp_path / "data")
    write_mnist(tmp_path / "data", "MNIST", n_train=2, n_test=2)
    write_mnist(tmp_path / "data", "FashionMNIST", n_train=2, n_test=2)
    counts = job_counts(snakemake(tmp_path, "-n", "--configfile", str(config)))
    runs = 4 * 3  # noise rates 1, 2, 5, 10 % and seeds 1-3
    assert counts == {"prepare": 1, "corrupt": runs, "train": runs, "score": runs * 200, "average": runs,
                      "evaluate": runs, "figure_grids": runs, "figure_scores": runs, "figure_dynamics": runs,
                      "history_baselines": runs, "crossval": runs, "confident_learning": runs,
                      "compare_methods": runs, "find_duplicates": runs, "aggregate": 1, "summary_figures": 1,
                      "methods_summary": 1, "all": 1,
                      # cleaning by curvature at the run's noise rate, the unchanged control and the oracle
                      "suspects": runs, "clean_labels": 3 * runs, "retrain": 3 * runs, "cleaning_table": runs,
                      "cleaning_summary": 1}


def test_every_paper_dataset_has_a_config():
    assert {c.stem for c in CONFIGS} == {"cifar10", "cifar100", "mnist", "fashion_mnist"}


def test_a_train_key_on_the_command_line_overrides_the_paper_recipe(tmp_path):
    # the paper's no-weight-decay runs, or a short trial: --config merges into the recipe, key by key
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    write_cifar10(tmp_path / "data")
    out = snakemake(tmp_path, "-n", "--configfile", str(REPO / "configs/paper/cifar10.yaml"),
                    "--config", "train={epochs: 3, weight_decay: 0}", "seeds=[1]", "noise_rates=[0.1]")
    counts = job_counts(out)
    assert counts["train"] == 1 and counts["score"] == 3


def scoring_groups(text):
    """Scoring checkpoints per group job of a dry run's listing, keyed by group id, one entry per group."""
    groups = []
    for block in text.split("Group job ")[1:]:
        header, listing = block.split("\n", 1)
        members = re.split(r"^\S", listing, maxsplit=1, flags=re.M)[0]  # indented lines: the group's jobs
        groups.append((header.split(" ", 1)[0], len(re.findall(r"^    rule score:$", members, re.M))))
    return groups


def test_the_slurm_profile_scores_a_paper_run_in_a_handful_of_submissions(tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    write_cifar10(tmp_path / "data")
    out = snakemake(tmp_path, "-n", "--configfile", str(REPO / "configs/paper/cifar10.yaml"),
                    "--workflow-profile", str(REPO / "profiles/slurm"), "--default-resources", "slurm_partition=gpu",
                    "slurm_account=lab", declared_only=("slurm",), timeout=300)
    groups = scoring_groups(out)
    runs = {f"scoring_cifar10_noise{rate}_{seed}" for rate in ("0.01", "0.02", "0.05", "0.1") for seed in (1, 2, 3)}
    assert {name for name, _ in groups} == runs
    # each run's 200 checkpoints in 5 submissions of 40 (the profile's group-components)
    assert len(groups) == 5 * len(runs) and {size for _, size in groups} == {40}
    assert job_counts(out)["score"] == 2400  # still one job (and one output) per checkpoint
