"""GPU slots: which jobs claim one, which GPU a slot stands for, and exclusive holding across processes;
the GPUs counted without CUDA, more slots than GPUs refused, a claimed GPU that CUDA cannot use."""

import logging
import os
import shlex
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

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


@pytest.fixture
def machine(clean_environment, tmp_path):
    """This test's machine: only ``bin`` on PATH (no nvidia-smi until a test writes one) and no driver
    folder (until a test makes one)."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    clean_environment.setenv("PATH", str(bin_folder))
    clean_environment.setattr(gpu_slots, "DRIVER_GPUS", tmp_path / "driver" / "gpus")
    clean_environment.setattr(gpu_slots, "DEVICE_FILES", tmp_path / "dev")
    clean_environment.delenv(gpu_slots.UNCHECKED_VARIABLE, raising=False)
    return SimpleNamespace(env=clean_environment, bin=bin_folder, driver=tmp_path / "driver" / "gpus",
                           slots=tmp_path / "slots", dev=tmp_path / "dev")


def nvidia_smi(machine, *lines, status=0):
    script = machine.bin / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + "".join(f"echo {shlex.quote(line)}\n" for line in lines) + f"exit {status}\n")
    script.chmod(0o755)


TWO_GPUS = ("GPU 0: NVIDIA H200 (UUID: GPU-aaaa)", "  MIG 1g.18gb     Device  0: (UUID: MIG-bbbb)",
            "GPU 1: NVIDIA H200 (UUID: GPU-cccc)")


@pytest.mark.parametrize("visible, gpus", [("0,1,2", 3), ("7", 1), ("GPU-aaaa,GPU-cccc", 2), ("", 0), (" ", 0),
                                           ("-1", 0), ("NoDevFiles", 0), ("0,-1,2", 1)])  # as CUDA reads it
def test_gpus_are_counted_from_cuda_visible_devices_when_it_is_set(machine, visible, gpus):
    nvidia_smi(machine, *TWO_GPUS)  # not asked: the variable says what this process may use
    machine.env.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu_slots.count_gpus() == (gpus, f"CUDA_VISIBLE_DEVICES={visible!r}")


def test_gpus_are_counted_by_nvidia_smi_else_the_driver_else_none(machine):
    assert gpu_slots.count_gpus() == (0, f"CUDA_VISIBLE_DEVICES unset; no nvidia-smi on PATH; no {machine.driver}; "
                                         f"no {machine.dev}/nvidia<k>")
    machine.dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):  # the driver's device files: two GPUs
        (machine.dev / name).touch()
    assert gpu_slots.count_gpus() == (2, f"{machine.dev}/nvidia<k> (no nvidia-smi on PATH; no {machine.driver})")
    for k in range(3):
        (machine.driver / f"0000:0{k}:00.0").mkdir(parents=True)
    gpus, counted = gpu_slots.count_gpus()
    assert gpus == 3 and counted.startswith(f"{machine.driver}/")
    nvidia_smi(machine, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", status=9)
    gpus, counted = gpu_slots.count_gpus()  # a failing nvidia-smi: the driver's folder
    assert gpus == 3 and "nvidia-smi -L failed (exit 9: NVIDIA-SMI has failed" in counted
    nvidia_smi(machine, *TWO_GPUS)  # GPUs, not their MIG instances
    assert gpu_slots.count_gpus() == (2, f"{machine.bin / 'nvidia-smi'} -L")


def test_more_slots_than_gpus_are_refused_unless_there_is_no_gpu(machine):
    nvidia_smi(machine, *TWO_GPUS)
    refused = gpu_slots.too_many_slots(3)
    assert "gpu=3 asks for 3 GPU slots but snakemake sees only 2 GPU(s)" in refused and "nvidia-smi -L" in refused
    assert gpu_slots.too_many_slots(2) is None and gpu_slots.too_many_slots(1) is None
    machine.env.setenv("CUDA_VISIBLE_DEVICES", "4")
    assert "snakemake sees only 1 GPU(s) (counted from CUDA_VISIBLE_DEVICES='4')" in gpu_slots.too_many_slots(2)
    machine.env.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: slots only limit how many jobs run at once
    assert gpu_slots.too_many_slots(8) is None


def _job(folder):
    return SimpleNamespace(resources={"gpu": 1}, config={"gpu_slots": {"folder": str(folder)}})


def test_a_job_whose_claimed_gpu_cuda_cannot_use_fails(machine):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA can use a GPU here: the failure needs a machine where it cannot")
    nvidia_smi(machine, "GPU 0: NVIDIA H200 (UUID: GPU-aaaa)")  # a GPU this torch cannot use
    machine.env.setenv(gpu_slots.SLOTS_VARIABLE, "1")
    with pytest.raises(RuntimeError, match=r"claimed GPU slot 0 of 1 \(CUDA_VISIBLE_DEVICES=0\) on a machine with 1 "
                       r"GPU\(s\) .*CUDA cannot use it: torch .+: .+\. Device auto would otherwise run on the CPU"):
        with gpu_slots.for_job(_job(machine.slots), "auto"):
            pytest.fail("the job ran (on the CPU) with a claimed GPU that CUDA cannot use")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # released and restored
    with gpu_slots.claimed("auto", 1, machine.slots, slots=1, poll_seconds=0.05) as slot:
        assert slot == 0


def test_a_scoring_job_asks_cuda_only_when_it_needs_it(machine):
    # a job that may only move scores made ahead into place claims its slot without torch; the check
    # comes when it builds a scorer
    nvidia_smi(machine, "GPU 0: NVIDIA H200 (UUID: GPU-aaaa)")
    machine.env.setenv(gpu_slots.SLOTS_VARIABLE, "1")
    job = textwrap.dedent(f"""
        import sys
        from types import SimpleNamespace
        from memorization_curvature import gpu_slots
        job = SimpleNamespace(resources={{"gpu": 1}}, config={{"gpu_slots": {{"folder": {str(machine.slots)!r}}}}})
        with gpu_slots.for_job(job, "auto", check_cuda=False):
            print("torch" in sys.modules)
            try:
                gpu_slots.check_claimed_gpu()
            except gpu_slots.UnusableGPU as error:
                print("refused:", error)
        gpu_slots.check_claimed_gpu()  # released: nothing to check
    """)
    out = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "False"
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        assert lines[1].startswith("refused: claimed GPU slot 0 of 1 (CUDA_VISIBLE_DEVICES=0)") and "<problem>" not in lines[1]


def test_a_machine_without_gpu_keeps_its_slots_and_says_so(machine, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="memorization_curvature")
    monkeypatch.setattr(gpu_slots, "cuda_problem", lambda: pytest.fail("no GPU: nothing to ask CUDA about"))
    machine.env.setenv(gpu_slots.SLOTS_VARIABLE, "2")
    with gpu_slots.for_job(_job(machine.slots), "auto") as slot:
        assert slot == 0 and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert (f"this machine has no GPU (CUDA_VISIBLE_DEVICES unset; no nvidia-smi on PATH; no {machine.driver}; "
            f"no {machine.dev}/nvidia<k>): device auto runs on the CPU, as auto means without a GPU") in caplog.text
    caplog.clear()
    machine.env.setenv("CUDA_VISIBLE_DEVICES", "")  # said explicitly: no GPU, and no slot names one
    with gpu_slots.for_job(_job(machine.slots), "auto") as slot:
        assert slot == 0 and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert "claimed GPU slot 0 of 2 (CUDA_VISIBLE_DEVICES=," in caplog.text
    assert "this machine has no GPU (CUDA_VISIBLE_DEVICES='')" in caplog.text
