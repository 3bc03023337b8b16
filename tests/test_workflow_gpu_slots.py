"""Local GPU assignment through the workflow: with `--resources gpu=N` every GPU job holds its own
slot, read back from the jobs' logs and their timestamps; a killed job does not block the next run.
The machine's GPUs are what a fake `nvidia-smi -L` lists: none for the runs that train and score (each
job says so in its log), more slots than GPUs refused before any job, a claimed GPU that CUDA cannot
use failing its job."""

import os
import re
import signal
import subprocess
import time
from datetime import datetime

import pytest

from workflow_helpers import finished_workflow, gpu_environment, snakemake, snakemake_command, write_config

RUN = "results/digits/noise0.1/seed0"
LOGS = "logs/digits/noise0.1/seed0"
CONFIG = {"datasets": ["digits"], "noise_rates": [0.1], "seeds": [0], "train": {"epochs": 4}, "curvature": {"n_probes": 1},
          "figures": {"dynamics": False}, "baselines": {"history": [], "confident_learning": False},
          "duplicates": {"enabled": False}, "privacy": {"enabled": False}}
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
        assert "this machine has no GPU" in text and "device auto runs on the CPU" in text
        held.append((log.stem, int(slot), visible, _time(claimed), _time(released)))
    return held


@pytest.fixture(scope="module")
def no_gpu(tmp_path_factory):
    """The environment of a machine with no GPU (whatever this one has): slots are claimed all the same."""
    return gpu_environment(tmp_path_factory.mktemp("no_gpu"), 0)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, no_gpu):
    # training (one GPU job), then the four scoring jobs two at a time on the two slots; targets first:
    # --resources takes every word after it
    return finished_workflow(tmp_path_factory.mktemp("gpu_slots"), CONFIG, *SCORES, "--cores", "4", "--resources",
                             "gpu=2", env=no_gpu)


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


def test_the_number_of_gpus_reruns_nothing(workdir, no_gpu):
    assert "Nothing to be done" in snakemake(workdir, *SCORES, "-n", "--resources", "gpu=1", env=no_gpu)


def test_a_job_killed_while_holding_a_slot_does_not_block_the_next_run(workdir, no_gpu):
    log = workdir / LOGS / "score_epoch4.log"
    log.unlink()
    command = snakemake_command(workdir, "--forcerun", SCORES[3], "--cores", "1", "--resources", "gpu=1")
    started = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=no_gpu)
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and "claimed GPU slot 0" in log.read_text()):
            assert started.poll() is None and time.monotonic() < deadline, "the job never claimed its slot"
            time.sleep(0.02)
    finally:
        os.killpg(started.pid, signal.SIGKILL)  # snakemake and its job, holding slot 0
        started.wait()
    assert "released GPU slot" not in log.read_text()
    snakemake(workdir, "--unlock", env=no_gpu)
    snakemake(workdir, *SCORES, "--resources", "gpu=1", timeout=120, env=no_gpu)
    text = log.read_text()
    assert "claimed GPU slot 0 of 1" in text and "waiting for a free GPU slot" not in text


def _run(workdir, *args, env):
    return subprocess.run(snakemake_command(workdir, "--cores", "2", *args), capture_output=True, text=True, env=env,
                          timeout=600)


def test_more_gpu_slots_than_gpus_are_refused_before_any_job(tmp_path):
    write_config(tmp_path, CONFIG)
    two_gpus = gpu_environment(tmp_path / "bin", 2)
    refused = _run(tmp_path, *SCORES, "-n", "--resources", "gpu=3", env=two_gpus)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0, said[-3000:]
    assert "--resources gpu=3 asks for 3 GPU slots but snakemake sees only 2 GPU(s)" in said, said[-3000:]
    assert f"counted from {tmp_path / 'bin' / 'nvidia-smi'} -L" in said
    assert "Job stats" not in said  # refused while the Snakefile is read: no job planned
    assert _run(tmp_path, *SCORES, "-n", "--resources", "gpu=2", env=two_gpus).returncode == 0
    no_gpu = dict(two_gpus, CUDA_VISIBLE_DEVICES="")  # said explicitly: no GPU, slots all the same
    assert _run(tmp_path, *SCORES, "-n", "--resources", "gpu=3", env=no_gpu).returncode == 0


def test_a_job_whose_claimed_gpu_cuda_cannot_use_fails_rather_than_train_on_the_cpu(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA can use a GPU here: the failure needs a machine where it cannot")
    write_config(tmp_path, CONFIG)
    one_gpu = gpu_environment(tmp_path / "bin", 1)  # a GPU that no CUDA here can use
    failed = _run(tmp_path, f"{RUN}/train_metrics.csv", "--resources", "gpu=1", env=one_gpu)
    assert failed.returncode != 0, (failed.stdout + failed.stderr)[-3000:]
    text = (tmp_path / LOGS / "train.log").read_text()
    assert "claimed GPU slot 0 of 1 (CUDA_VISIBLE_DEVICES=0" in text, text[-3000:]
    assert re.search(r"UnusableGPU: claimed GPU slot 0 of 1 \(CUDA_VISIBLE_DEVICES=0\) on a machine with 1 GPU\(s\) "
                     r".*CUDA cannot use it: torch .+", text), text[-3000:]
    assert "training " not in text and not (tmp_path / RUN / "train_metrics.csv").exists()
