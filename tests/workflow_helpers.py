"""Running the workflow through the snakemake command line, as users do."""

import fcntl
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake_command(workdir, *args, declared_only=(), snakefile=REPO / "Snakefile"):
    """The snakemake command line on ``workdir``, seeing only the distributions the project declares
    with the extras ``declared_only`` (tests/declared_only.py; None: everything installed).

    Besides checking that the declared dependencies suffice, this keeps out the SLURM executor plugin
    (installed with the test extras), whose import asks `scontrol` for the cluster's configuration and
    waits about 9 s where no SLURM answers: for every snakemake start.
    """
    launcher = ["-m", "snakemake"] if declared_only is None else [
        str(REPO / "tests/declared_only.py"), ",".join(declared_only), "--"]
    return [sys.executable, *launcher, "--snakefile", str(snakefile), "--directory", str(workdir), *args]


def snakemake(workdir, *args, timeout=600, env=None, **options):
    """Run :func:`snakemake_command` on 2 cores (in ``env``: None, this process's environment); fail
    the test with its output if it fails."""
    result = subprocess.run(snakemake_command(workdir, "--cores", "2", *args, **options),
                            capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def gpu_environment(folder, gpus):
    """This process's environment where ``nvidia-smi -L`` lists ``gpus`` GPUs (a script in ``folder``
    first on PATH), CUDA_VISIBLE_DEVICES and SLURM_JOB_ID unset: what gpu_slots counts, whatever this
    machine has."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f'echo "GPU {k}: Test GPU (UUID: GPU-test-{k})"\n' for k in range(gpus))
    script = folder / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + (lines or 'echo "No devices were found"\n'))
    script.chmod(0o755)
    env = {name: value for name, value in os.environ.items() if name not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env["PATH"] = os.pathsep.join([str(folder), env.get("PATH", "")])
    return env


def write_config(workdir, config):
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def finished_workflow(workdir, config, *args, env=None):
    """``workdir`` with ``config`` and the snakemake run of ``args`` (targets, options) done in it."""
    write_config(workdir, config)
    snakemake(workdir, *args, env=env)
    return workdir


def session_folder(tmp_path_factory):
    """A folder of this test session that every xdist worker sees (each worker's own is one below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_workflow(tmp_path_factory, name, build):
    """The finished workflow ``name`` that ``build(workdir)`` makes, shared by the test files of the session
    (on any worker) that ask for it: the first builds it under a lock, the others wait for it. Tests only
    read it, or dry-run on it with --nolock and other settings in a file of their own (:func:`planned`;
    a dry run writes nothing but Snakemake's cache of file states, which no test trusts); to change
    anything, copy it first. A failed build fails every test that asks for it, without building again."""
    root = session_folder(tmp_path_factory) / "shared_workflows"
    root.mkdir(exist_ok=True)
    workdir, finished, failed = root / name, root / f"{name}.finished", root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if failed.exists():
            raise RuntimeError(f"the shared workflow {name} failed to build:\n{failed.read_text()}")
        if not finished.exists():
            shutil.rmtree(workdir, ignore_errors=True)  # a builder killed mid-build left it half made
            workdir.mkdir()
            try:
                build(workdir)
            except BaseException as error:
                failed.write_text(str(error)[-3000:])
                raise
            finished.touch()
    return workdir


def job_counts(text):
    """rule -> jobs, from a run's or a dry run's "Job stats" table."""
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def planned(workdir, settings, *args, **options):
    """The output of a dry run on ``workdir`` with ``settings`` over its config.yaml (merged key by key,
    as Snakemake merges --configfile), leaving the workdir as it is: other tests may read it meanwhile."""
    overlay = Path(workdir).parent / f"settings-{os.getpid()}-{threading.get_ident()}.yaml"
    overlay.write_text(yaml.safe_dump(settings, sort_keys=False))  # in the order given
    try:
        return snakemake(workdir, "-n", "--nolock", *args, "--configfile", str(overlay), **options)
    finally:
        overlay.unlink()


# A short noise run scored at every epoch, up to its curvature table: the resume and score-ahead tests
# compare with it.
SHORT_RUN = "results/digits/noise0.1/seed0"
SHORT_CONFIG = {"datasets": ["digits"], "noise_rates": [0.1], "seeds": [0], "train": {"epochs": 4, "threads": 1},
                "curvature": {"n_probes": 2}, "figures": {"dynamics": True},
                "baselines": {"history": [], "confident_learning": False}, "duplicates": {"enabled": False}}
SHORT_TARGET = f"{SHORT_RUN}/curvature.csv"


def short_run(tmp_path_factory):
    """The finished :data:`SHORT_CONFIG` run, shared (read only)."""
    return shared_workflow(tmp_path_factory, "short_run",
                           lambda workdir: finished_workflow(workdir, SHORT_CONFIG, SHORT_TARGET))


# A finished workflow with every rule: a noise run with cleanings by curvature and a peer method
# (the default grid: the run's noise rate, removed), a run with injected duplicates, every peer method
# (SSFT too), duplicates and Feldman-Zhang's scores (made up, in the published layout).
FULL_EPOCHS = 4
FULL_CONFIG = {
    "datasets": ["digits"],
    "noise_rates": [0.1],
    "injected_duplicates": [40],
    "seeds": [0],
    "train": {"epochs": FULL_EPOCHS, "threads": 1},
    "curvature": {"n_probes": 4},
    "baselines": {"ssft": True, "cv_folds": 2},
    "feldman_zhang": {"files": {"digits": "fz_scores.npz"}, "top_k": 100},
    "cleaning": {"methods": ["curvature", "aum"]},
}


def write_score_file(workdir, labels):
    """A made-up memorization score file in the published layout: tr_mem, tr_labels per training image."""
    np.savez(workdir / "fz_scores.npz", tr_mem=np.random.default_rng(0).uniform(0, 1, len(labels)), tr_labels=labels)


def full_run(tmp_path_factory):
    """The finished :data:`FULL_CONFIG` workflow, shared (read only)."""
    def build(workdir):
        write_config(workdir, FULL_CONFIG)
        snakemake(workdir, "results/digits/data.npz")
        write_score_file(workdir, np.load(workdir / "results/digits/data.npz")["train_labels"])
        snakemake(workdir)

    return shared_workflow(tmp_path_factory, "full_run", build)


def checkout_copy(folder):
    """A copy of this checkout's workflow and package (no results, environments or history) in ``folder``."""
    copy = Path(folder) / "checkout"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "logs", "benchmarks", ".snakemake", "__pycache__", "*.egg-info", ".pytest_cache"))
    return copy


# A run with the shadow-model attack (tests/test_shadow_models.py): six shadow models, each trained on its
# half of 269 digits training images, 90 % of them labelled with another class, by a recipe that memorizes
# them, on flipped images too (so that the flipped image is a second query).
SHADOW_MODELS = 6
SHADOW_RUN = "results/digits/noise0.9/seed0"
SHADOW_CONFIG = {
    "datasets": ["digits"], "noise_rates": [0.9], "seeds": [0], "data": {"test_fraction": 0.85},
    "train": {"threads": 1},
    "recipes": {"digits": {"epochs": 24, "batch_size": 16, "lr": 0.05, "weight_decay": 0, "augment_shift": 0,
                           "augment_flip": True}},
    "curvature": {"n_probes": 1, "score_every": 12}, "figures": {"dynamics": False},
    "baselines": {"history": [], "confident_learning": False}, "duplicates": {"enabled": False},
    "privacy": {"enabled": False, "shadow_models": SHADOW_MODELS, "mask_seed": 0}}
SHADOW_TARGET = f"{SHADOW_RUN}/privacy_attack.csv"


def shadow_run(tmp_path_factory):
    """The finished :data:`SHADOW_CONFIG` run up to its attack, shared (read only), and its snakemake output."""
    def build(workdir):
        write_config(workdir, SHADOW_CONFIG)
        (workdir / "snakemake_output.txt").write_text(snakemake(workdir, SHADOW_TARGET))

    workdir = shared_workflow(tmp_path_factory, "shadow_run", build)
    return workdir, (workdir / "snakemake_output.txt").read_text()
