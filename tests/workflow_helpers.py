"""Running the workflow through the snakemake command line, as users do."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def finished_workflow(workdir, config, *args, env=None):
    """``workdir`` with ``config`` and the snakemake run of ``args`` (targets, options) done in it."""
    write_config(workdir, config)
    snakemake(workdir, *args, env=env)
    return workdir


def checkout_copy(folder):
    """A copy of this checkout's workflow and package (no results, environments or history) in ``folder``."""
    copy = Path(folder) / "checkout"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "logs", "benchmarks", ".snakemake", "__pycache__", "*.egg-info", ".pytest_cache"))
    return copy
