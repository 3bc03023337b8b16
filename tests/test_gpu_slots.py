"""GPU slots: which jobs claim one, which GPU a slot stands for, and exclusive holding across processes."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from memorization_curvature import gpu_slots


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gpu_slots.SLOTS_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("device, declared, slots, environment, reason", [
    ("auto", 1, 2, {}, None),
    ("cuda", 1, 2, {}, None),
    ("auto", 0, 2, {}, "declares no GPU"),
    ("cuda:1", 1, 2, {}, "device cuda:1 given explicitly"),
    ("cpu", 1, 2, {}, "device cpu given explicitly"),
    ("auto", 1, 2, {"SLURM_JOB_ID": "17", "SLURM_GPUS_ON_NODE": "1"}, "SLURM job 17 holds 1 GPU(s)"),
    ("auto", 1, None, {}, "without --resources gpu=N"),
])
def test_which_jobs_claim_a_slot(clean_environment, device, declared, slots, environment, reason):
    for name, value in environment.items():
        clean_environment.setenv(name, value)
    found = gpu_slots.why_not_claimed(device, declared, slots)
    assert (found is None) if reason is None else (reason in found)


def test_slots_stand_for_the_gpus_snakemake_may_use(clean_environment):
    assert gpu_slots.gpu_ids(3) == ["0", "1", "2"]
    clean_environment.setenv("CUDA_VISIBLE_DEVICES", "4,6,7")
    assert gpu_slots.gpu_ids(2) == ["4", "6"]
    with pytest.raises(ValueError, match="gpu=4 but CUDA_VISIBLE_DEVICES=4,6,7 names only 3"):
        gpu_slots.gpu_ids(4)


HOLDER = textwrap.dedent("""
    import sys, time
    from memorization_curvature import gpu_slots
    with gpu_slots.claimed("auto", 1, sys.argv[1], slots=1) as slot:
        print(slot, flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(folder, seconds):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "0"  # holds slot 0 from here on
    return process


def test_slot_sets_the_visible_gpu_and_restores_it(clean_environment, tmp_path):
    clean_environment.setenv("CUDA_VISIBLE_DEVICES", "5,3")
    with gpu_slots.claimed("auto", 1, tmp_path, slots=2) as slot:
        assert slot == 0 and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,3"
    holder = _holder(tmp_path, 600)  # another process holds slot 0
    try:
        with gpu_slots.claimed("auto", 1, tmp_path, slots=2) as slot:
            assert slot == 1 and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    finally:
        holder.kill()
        holder.wait()
    with gpu_slots.claimed("cuda:1", 1, tmp_path, slots=2) as none:
        assert none is None and os.environ["CUDA_VISIBLE_DEVICES"] == "5,3"


def test_a_held_slot_makes_the_next_job_wait_until_it_is_free(clean_environment, tmp_path):
    holder = _holder(tmp_path, 1.5)
    started = time.monotonic()
    with gpu_slots.claimed("auto", 1, tmp_path, slots=1, poll_seconds=0.05) as slot:
        waited = time.monotonic() - started
        assert slot == 0
    assert waited > 1.0  # the holder kept it 1.5 s after saying so
    holder.wait()


def test_a_killed_holder_frees_its_slot(clean_environment, tmp_path):
    holder = _holder(tmp_path, 600)
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with gpu_slots.claimed("auto", 1, tmp_path, slots=1, poll_seconds=0.05) as slot:
        assert slot == 0
    assert time.monotonic() - started < 0.5
