"""The workflow through the SLURM profile on a real single-node SLURM started for the test."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_helpers import REPO, snakemake, write_config

SETUP = REPO / ".ci" / "slurm_local.sh"
# data.threads: 1, as the test node has 2 CPUs and a job asking for more than a node has pends forever
CONFIG = {"datasets": ["digits"], "noise_rates": [0.1], "seeds": [0], "train": {"epochs": 2, "threads": 1},
          "data": {"threads": 1}, "curvature": {"n_probes": 2}}
RUN = "results/digits/noise0.1/seed0"
TARGET = f"{RUN}/curvature.csv"


def _cannot_run_slurm():
    if sys.platform != "linux":
        return "SLURM runs on Linux only"
    if os.geteuid() != 0:
        return "starting SLURM's daemons needs root"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "neither SLURM nor apt-get to install it is on this machine"
    return None


pytestmark = pytest.mark.skipif(_cannot_run_slurm() is not None, reason=str(_cannot_run_slurm()))


@pytest.fixture(scope="module")
def slurm():
    env = {**os.environ, "SLURM_WITH_DBD": "0"}  # lean: no accounting database; status from squeue
    up = subprocess.run(["bash", str(SETUP), "up"], env=env, capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stderr[-3000:]
    yield
    down = subprocess.run(["bash", str(SETUP), "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]


def test_workflow_runs_as_slurm_jobs_with_local_results(slurm, tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for folder in (local, cluster):
        folder.mkdir()
        write_config(folder, CONFIG)
    snakemake(local, TARGET)
    command = [
        # with only what `pip install -e '.[slurm]'` installs, as the README tells cluster users
        "timeout", "600", sys.executable, str(REPO / "tests/declared_only.py"), "slurm", "--", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(cluster), "--workflow-profile", str(REPO / "profiles" / "slurm"),
        # the test cluster: its partition and account, no GPUs, squeue for job status (no accounting)
        "--default-resources", "slurm_partition=debug", "slurm_account=root",
        "--set-resources", "train:gpu=0", "score:gpu=0", "train:cpus_per_gpu=0", "score:cpus_per_gpu=0",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2", "--jobs", "4",
        TARGET,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=700)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output))
    rules = {}
    for job_id, rule in submitted.items():
        rules.setdefault(rule, []).append(job_id)
    assert len(rules.get("train", [])) == 1 and len(rules.get("score", [])) == 2, rules
    for job_id in rules["train"] + rules["score"]:
        record = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in record, record  # SLURM's own record of the job

    assert pd.read_csv(local / TARGET).equals(pd.read_csv(cluster / TARGET))
    for epoch in (1, 2):
        a = torch.load(local / RUN / f"checkpoints/epoch{epoch}.pt", weights_only=True)["state_dict"]
        b = torch.load(cluster / RUN / f"checkpoints/epoch{epoch}.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert np.array_equal(np.load(local / RUN / f"scores/epoch{epoch}.npz")["train_curvature"],
                              np.load(cluster / RUN / f"scores/epoch{epoch}.npz")["train_curvature"])
