"""The ready-made configurations that regenerate the paper's mislabel table plan the right jobs."""

import re
import shutil

import yaml

from dataset_files import write_cifar10, write_cifar100
from workflow_helpers import REPO, job_counts, snakemake

CONFIGS = sorted((REPO / "configs" / "paper").glob("*.yaml"))


def with_defaults(path):
    """The configuration ``path`` gives: config.yaml with the file's keys merged in, as Snakemake does."""
    def merged(base, extra):
        return {key: merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict)
                else value for key, value in {**base, **extra}.items()}

    return merged(yaml.safe_load((REPO / "config.yaml").read_text()), yaml.safe_load(path.read_text()))


def test_the_paper_configs_differ_in_their_dataset_only():
    # so that the dry run below of one of them shows what each plans
    configs = {path.stem: with_defaults(path) for path in CONFIGS}
    assert {name: config["datasets"] for name, config in configs.items()} == {name: [name] for name in configs}
    assert all({**config, "datasets": None} == {**configs["cifar10"], "datasets": None} for config in configs.values())


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


def scoring_groups(text, rule="score"):
    """Jobs of `rule` per group job of a dry run's listing, keyed by group id, one entry per group."""
    groups = []
    for block in text.split("Group job ")[1:]:
        header, listing = block.split("\n", 1)
        members = re.split(r"^\S", listing, maxsplit=1, flags=re.M)[0]  # indented lines: the group's jobs
        groups.append((header.split(" ", 1)[0], len(re.findall(rf"^    rule {rule}:$", members, re.M))))
    return groups


def test_a_paper_config_plans_its_runs_and_the_slurm_profile_scores_each_in_a_handful_of_submissions(tmp_path):
    # the four configurations differ in their dataset only (above), and each dataset's files are read by
    # tests/test_workflow_datasets.py: one of them planned here stands for all four
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    write_cifar10(tmp_path / "data")  # the dry run checks that the dataset's files are there (not their content)
    out = snakemake(tmp_path, "-n", "--configfile", str(REPO / "configs/paper/cifar10.yaml"),
                    "--workflow-profile", str(REPO / "profiles/slurm"), "--default-resources", "slurm_partition=gpu",
                    "slurm_account=lab", declared_only=("slurm",), timeout=300)
    runs = 4 * 3  # noise rates 1, 2, 5, 10 % and seeds 1-3
    assert job_counts(out) == {
        "prepare": 1, "corrupt": runs, "train": runs, "score": runs * 200, "average": runs, "evaluate": runs,
        "figure_grids": runs, "figure_scores": runs, "figure_dynamics": runs, "history_baselines": runs,
        "crossval": runs, "confident_learning": runs, "compare_methods": runs, "find_duplicates": runs,
        "final_outputs": runs, "privacy_audit": runs,
        "aggregate": 1, "summary_figures": 1, "methods_summary": 1, "all": 1,
        # cleaning by curvature at the run's noise rate, the unchanged control and the oracle
        "suspects": runs, "clean_labels": 3 * runs, "retrain": 3 * runs, "cleaning_table": runs,
        "cleaning_summary": 1}
    groups = scoring_groups(out)
    names = {f"scoring_cifar10_noise{rate}_{seed}" for rate in ("0.01", "0.02", "0.05", "0.1") for seed in (1, 2, 3)}
    assert {name for name, _ in groups} == names
    # each run's 200 checkpoints in 5 submissions of 40 (the profile's group-components), each checkpoint
    # still one job (and one output)
    assert len(groups) == 5 * runs and {size for _, size in groups} == {40}


def test_the_paper_size_privacy_audit_plans_its_shadow_models_as_cluster_jobs(tmp_path):
    # Curvature Clues' CIFAR-100 setup: 64 shadow models, each a training and a scoring job like the run's
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    write_cifar100(tmp_path / "data")
    out = snakemake(tmp_path, "-n", "--configfile", str(REPO / "configs/privacy_cifar100.yaml"),
                    "--workflow-profile", str(REPO / "profiles/slurm"), "--default-resources", "slurm_partition=gpu",
                    "slurm_account=lab", declared_only=("slurm",), timeout=300)
    counts = job_counts(out)
    assert {rule: counts.get(rule) for rule in ("train", "score", "shadow_masks", "shadow_train", "shadow_score",
                                                "shadow_attack", "retrain")} == {
        "train": 1, "score": 200, "shadow_masks": 1, "shadow_train": 64, "shadow_score": 64, "shadow_attack": 1,
        "retrain": None}
    # the shadow models' scorings go to SLURM in groups of their own: 4 submissions of 16; the run's 200
    # checkpoints in 5 of 40, none waiting for a shadow training
    shadow_groups = [(name, size) for name, size in scoring_groups(out, rule="shadow_score") if size]
    assert shadow_groups == [("shadow_scoring_cifar100_noise0_0", 16)] * 4
    run_groups = [(name, size) for name, size in scoring_groups(out) if size]
    assert run_groups == [("scoring_cifar100_noise0_0", 40)] * 5
    assert len(scoring_groups(out)) == 9  # no group holds both
    # a shadow training asks for a GPU and a training's time per start
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["set-resources"]
    assert profile["shadow_train"]["gpu"] == profile["shadow_score"]["gpu"] == 1
    assert profile["shadow_train"]["runtime"] == profile["train"]["runtime"]
