"""Local GPU assignment through the workflow: with `--resources gpu=N` every GPU job holds its own
slot, read back from the jobs' logs and their timestamps; a killed job does not block the next run."""

import os
import re
import signal
import subprocess
import time
from datetime import datetime

import pytest

from workflow_helpers import finished_workflow, snakemake, snakemake_command

RUN = "results/digits/noise0.1/seed0"
LOGS = "logs/digits/noise0.1/seed0"
CONFIG = {"datasets": ["digits"], "noise_rates": [0.1], "seeds": [0], "train": {"epochs": 4}, "curvature": {"n_probes": 1},
          "figures": {"dynamics": False}, "baselines": {"history": [], "confident_learning": False},
          "duplicates": {"enabled": False}}
SCORES = [f"{RUN}/scores/epoch{epoch}.npz" for epoch in range(1, 5)]
GPU_JOBS = ["score_epoch1", "score_epoch2", "score_epoch3", "score_epoch4", "train"]
STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO memorization_curvature: "


def _time(stamp):
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")


def held_slots(workdir):
    """(job, slot, CUDA_VISIBLE_DEVICES, claimed at, released at) from every GPU job's log."""
    held = []
    for log in sorted((workdir / LOGS).glob("*.log")):
        text = log.read_text()
        if log.stem not in GPU_JOBS:
            assert "GPU slot" not in text  # label corruption declares no GPU
            continue
        claims = re.findall(STAMP + r"claimed GPU slot (\d+) of (\d+) \(CUDA_VISIBLE_DEVICES=(\d+)", text, re.M)
        releases = re.findall(STAMP + r"released GPU slot (\d+)", text, re.M)
        assert len(claims) == len(releases) == 1, (log.name, text[-2000:])
        (claimed, slot, slots, visible), (released, released_slot) = claims[0], releases[0]
        assert slot == released_slot and slots == "2"
        held.append((log.stem, int(slot), visible, _time(claimed), _time(released)))
    return held


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    # training (one GPU job), then the four scoring jobs two at a time on the two slots; targets first:
    # --resources takes every word after it
    return finished_workflow(tmp_path_factory.mktemp("gpu_slots"), CONFIG, *SCORES, "--cores", "4", "--resources",
                             "gpu=2")


def test_no_two_overlapping_jobs_hold_the_same_slot(workdir):
    held = held_slots(workdir)
    assert sorted(job for job, *_ in held) == GPU_JOBS
    overlapping = 0
    for i, (job_a, slot_a, visible_a, start_a, end_a) in enumerate(held):
        assert visible_a == str(slot_a)  # the job sees only its slot's GPU
        for job_b, slot_b, _, start_b, end_b in held[i + 1:]:
            if start_a < end_b and start_b < end_a:
                overlapping += 1
                assert slot_a != slot_b, (job_a, job_b, slot_a)
    assert overlapping >= 1  # the two slots were in use at the same time


def test_the_number_of_gpus_reruns_nothing(workdir):
    assert "Nothing to be done" in snakemake(workdir, *SCORES, "-n", "--resources", "gpu=1")


def test_a_job_killed_while_holding_a_slot_does_not_block_the_next_run(workdir):
    log = workdir / LOGS / "score_epoch4.log"
    log.unlink()
    command = snakemake_command(workdir, "--forcerun", SCORES[3], "--cores", "1", "--resources", "gpu=1")
    started = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "claimed GPU slot 0" in log.read_text()):
            assert started.poll() is None and time.monotonic() < deadline, "the job never claimed its slot"
            time.sleep(0.02)
    finally:
        os.killpg(started.pid, signal.SIGKILL)  # snakemake and its job, holding slot 0
        started.wait()
    assert "released GPU slot" not in log.read_text()
    snakemake(workdir, "--unlock")
    snakemake(workdir, *SCORES, "--resources", "gpu=1", timeout=120)
    text = log.read_text()
    assert "claimed GPU slot 0 of 1" in text and "waiting for a free GPU slot" not in text
