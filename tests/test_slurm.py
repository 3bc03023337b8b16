"""The workflow through the SLURM profile on a real single-node SLURM started for the test."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_helpers import REPO, SHORT_CONFIG, short_run, snakemake, write_config

SETUP = REPO / ".ci" / "slurm_local.sh"
JOBCOMP = Path("/var/log/slurm/jobcomp.log")  # where .ci/slurm_local.sh has SLURM log finished jobs
# the shared short run's configuration (its local run is the reference); data.threads: 1, as the machine
# has 2 cores (a speed setting: the results are the same)
CONFIG = {**SHORT_CONFIG, "data": {"threads": 1}}
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
    # lean (no accounting database; job status from squeue, finished jobs in the controller's job
    # completion log), with a node sized like a GPU node: 16 CPUs, 64 GB (scheduling only) and 2 GPUs
    # A requeued job waits the job credentials' lifetime before it may start again (120 s by default),
    # then the next scheduling pass (up to 60 s): 5 s each here, so that a training through several time
    # limits takes minutes, not a quarter of an hour.
    # Finished jobs' records are kept for an hour (300 s by default), so that the tests read them however
    # long after the job they look.
    env = {**os.environ, "SLURM_WITH_DBD": "0", "SLURM_NODE_CPUS": "16", "SLURM_FAKE_GPUS": "2",
           "SLURM_CRED_EXPIRE_S": "5", "SLURM_SCHEDULER_PARAMETERS": "sched_interval=5", "SLURM_MIN_JOB_AGE_S": "3600"}
    up = subprocess.run(["bash", str(SETUP), "up"], env=env, capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stderr[-3000:]
    yield
    down = subprocess.run(["bash", str(SETUP), "down"], env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]


def slurm_record(job_id):
    """The controller's record of a job (kept MinJobAge = 3600 s after it ends here), as a dict."""
    text = subprocess.run(["scontrol", "-d", "-o", "show", "job", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+(?:/\w+)?)=(\S*)", text))


def completion_log(job_ids):
    """Each job's line in SLURM's job completion log (jobcomp/filetxt), as a dict."""
    lines = {}
    for line in JOBCOMP.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobId") in job_ids:
            lines[fields["JobId"]] = fields
    return lines


def cluster_command(workdir, *args):
    return [
        # with only what `pip install -e '.[slurm]'` installs, as the README tells cluster users
        "timeout", "900", sys.executable, str(REPO / "tests/declared_only.py"), "slurm", "--", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), *args, "--workflow-profile", str(REPO / "profiles" / "slurm"),
        # the profile's requests as they are; the test cluster's partition and account, squeue for job
        # status (no accounting)
        "--default-resources", "slurm_partition=debug", "slurm_account=root",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2", "--jobs", "4",
    ]


# A training that needs at least three 1-minute limits: with a margin of 42 s (train.time_limit_margin_s,
# speed only) a start trains at most about 15 s (a minute, less the job's start-up, the margin and 1.5
# epochs), and its 80 epochs take 30 s or more here (0.4 s each quiet, more beside other tests). Started
# with the module (the other test runs meanwhile), with its reference: the same training uninterrupted
# on this machine.
LONG_EPOCHS = 80
LONG = {**CONFIG, "train": {"epochs": LONG_EPOCHS, "threads": 1, "time_limit_margin_s": 42}}
LONG_TARGET = f"{RUN}/train_metrics.csv"


@pytest.fixture(scope="module")
def long_training(slurm, tmp_path_factory):
    local, cluster = tmp_path_factory.mktemp("long_local"), tmp_path_factory.mktemp("long_cluster")
    for folder in (local, cluster):
        write_config(folder, LONG)
    # a limit of one minute for the training (the profile asks 12 hours)
    started = subprocess.Popen(cluster_command(cluster, LONG_TARGET, "--set-resources", "train:runtime=1"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    snakemake(local, LONG_TARGET, timeout=900)
    yield local, cluster, started
    if started.poll() is None:
        started.kill()


def test_workflow_runs_as_slurm_jobs_on_gpus_with_grouped_scoring_and_local_results(slurm, long_training, tmp_path,
                                                                                      tmp_path_factory):
    local, cluster = short_run(tmp_path_factory), tmp_path / "cluster"  # local: the same run on this machine
    cluster.mkdir()
    write_config(cluster, CONFIG)
    # the README's way of choosing the group size: 2 checkpoints per job
    command = cluster_command(cluster, TARGET, "--group-components", "scoring_{dataset}_{variant}_{seed}=2")
    result = subprocess.run(command, capture_output=True, text=True, timeout=700)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    submitted = re.findall(r"submitted with SLURM jobid (\d+)", output)
    records = {job_id: slurm_record(job_id) for job_id in submitted}
    finished = completion_log(set(submitted))
    assert set(finished) == set(submitted) and all(f["JobState"] == "COMPLETED" for f in finished.values())
    # every submission of this run, as SLURM logged it, was one Snakemake reported
    (run_name,) = {records[job_id]["JobName"] for job_id in submitted}  # snakemake's run id
    logged = [line for line in JOBCOMP.read_text().splitlines() if f"Name={run_name} " in line]
    assert len(logged) == len(submitted)

    by_kind = {}
    for job_id, record in records.items():
        by_kind.setdefault(re.sub(r"_wildcards.*|_digits.*", "", record["Comment"]), []).append(job_id)
    assert sorted(by_kind) == ["rule_prepare", "rule_scoring", "rule_train"], by_kind
    assert len(by_kind["rule_train"]) == 1
    assert len(by_kind["rule_scoring"]) == 2  # 4 checkpoints in groups of 2
    for job_id in by_kind["rule_train"] + by_kind["rule_scoring"]:
        # asked for a GPU and got one, with the profile's CPUs, memory and time (a group: 2 x 5 minutes)
        record = records[job_id]
        assert record["TresPerJob"] == "gres:gpu:1" and record["JOB_GRES"] == "gpu:1", record
    assert [records[j]["TimeLimit"] for j in by_kind["rule_scoring"]] == ["00:10:00"] * 2
    assert records[by_kind["rule_train"][0]]["NumCPUs"] == "8"
    assert records[by_kind["rule_prepare"][0]]["JOB_GRES"] == "(null)"

    # each scoring job ran inside one of the two group submissions, two in each, and saw its GPU
    ran_in = []
    for epoch in range(1, 5):
        log = (cluster / f"logs/digits/noise0.1/seed0/score_epoch{epoch}.log").read_text()
        ran_in.append(re.search(r"no GPU slot claimed: SLURM job (\d+) holds 1 GPU", log).group(1))
    assert sorted(ran_in) == sorted(by_kind["rule_scoring"] * 2)

    assert pd.read_csv(local / TARGET).equals(pd.read_csv(cluster / TARGET))
    for epoch in range(1, 5):
        a = torch.load(local / RUN / f"checkpoints/epoch{epoch}.pt", weights_only=True)["state_dict"]
        b = torch.load(cluster / RUN / f"checkpoints/epoch{epoch}.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert np.array_equal(np.load(local / RUN / f"scores/epoch{epoch}.npz")["train_curvature"],
                              np.load(cluster / RUN / f"scores/epoch{epoch}.npz")["train_curvature"])


def test_a_training_longer_than_its_time_limit_goes_back_in_the_queue_until_done(long_training):
    local, cluster, started = long_training
    output, _ = started.communicate(timeout=900)
    assert started.returncode == 0, output[-4000:]
    records = [slurm_record(job_id) for job_id in re.findall(r"submitted with SLURM jobid (\d+)", output)]
    # one submission: no retry
    (record,) = [r for r in records if r.get("Comment", "").startswith("rule_train")]
    assert record["TimeLimit"] == "00:01:00" and record["JobState"] == "COMPLETED"
    starts = int(record["Restarts"]) + 1
    assert starts >= 3, record

    log = (cluster / "logs/digits/noise0.1/seed0/train.log").read_text()
    requeued = re.findall(r"after epoch (\d+) of training: the next epoch may not fit in the (\d+) s left.*"
                          r"goes back in the queue", log)
    resumed = [int(e) for e in re.findall(r"resuming after epoch (\d+) of training", log)]
    assert len(requeued) == len(resumed) == starts - 1, log[-3000:]
    assert log.count("+ 42 s margin = ") == len(requeued)  # the configured margin, read by the job
    assert resumed == [int(epoch) for epoch, _ in requeued]  # each start resumes where the last stopped
    # every epoch trained once, none repeated: each start stopped cleanly before its limit
    assert [int(e) for e in re.findall(r"epoch (\d+)/\d+ loss", log)] == list(range(1, LONG_EPOCHS + 1))

    # the result of the uninterrupted training, bit for bit
    timing = ["seconds", "eval_seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(local / LONG_TARGET).drop(columns=timing),
                                  pd.read_csv(cluster / LONG_TARGET).drop(columns=timing))
    a, b = np.load(local / RUN / "train_history.npz"), np.load(cluster / RUN / "train_history.npz")
    assert a.files == b.files and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a.files)
    for epoch in (1, int(requeued[0][0]), int(requeued[0][0]) + 1, LONG_EPOCHS):
        x = torch.load(local / RUN / f"checkpoints/epoch{epoch}.pt", weights_only=True)["state_dict"]
        y = torch.load(cluster / RUN / f"checkpoints/epoch{epoch}.pt", weights_only=True)["state_dict"]
        assert all(torch.equal(x[k], y[k]) for k in x), epoch
    assert not (cluster / RUN / ".train_resume").exists()
