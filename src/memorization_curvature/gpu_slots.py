"""One GPU per local job: a job that declares ``gpu=1`` claims a free slot before torch starts CUDA.

Snakemake counts GPUs (``--resources gpu=N`` runs at most N such jobs at once) but does not say which
GPU a local job may use, so every job would see all of them and take the first. Here each job takes
an exclusive ``flock`` on one of N lock files (``gpu0.lock`` ... in a folder every job of the box
shares) and sets ``CUDA_VISIBLE_DEVICES`` to that slot's GPU, so ``cuda`` in the job is its own GPU.
The kernel drops a lock when its process ends, however it ends, so a killed job never blocks a slot.

No slot is claimed where something else already places the job: under SLURM (which sets
``CUDA_VISIBLE_DEVICES`` itself), for an explicit ``cpu`` or ``cuda:K`` device, or when Snakemake was
not given ``--resources gpu=N`` (every job then sees every GPU, as before).

More slots than GPUs would map a slot to a GPU that does not exist, and ``auto`` would then train on
the CPU without a word. So the GPUs are counted (:func:`count_gpus`, without CUDA): the Snakefile
refuses ``gpu=N`` above them (:func:`too_many_slots`), and a job that claimed a GPU CUDA cannot use
fails (:func:`for_job`). A machine with no GPU at all keeps its slots (they still limit how many jobs
run at once) and each job says in its log that ``auto`` runs on the CPU there.

No module-level ``torch`` import, so that nothing can touch CUDA before the slot is chosen: torch is
imported only by :func:`cuda_problem`, once the claimed GPU is the only one visible.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger("memorization_curvature")

# Set by the Snakefile from `--resources gpu=N`; jobs inherit it.
SLOTS_VARIABLE = "MEMCURV_GPU_SLOTS"
# Where the NVIDIA driver lists the GPUs it drives, one folder each (when nvidia-smi is missing).
DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")
# Where the driver's device files are (nvidia0, nvidia1, ...: one per GPU), the last way to count.
DEVICE_FILES = Path("/dev")
# Set while a job holds a GPU slot whose GPU CUDA has not been asked about yet (check_claimed_gpu).
UNCHECKED_VARIABLE = "MEMCURV_UNCHECKED_GPU"


def count_gpus() -> tuple[int, str]:
    """(the GPUs this process may use, how they were counted), without CUDA: from
    ``CUDA_VISIBLE_DEVICES`` when it is set (as CUDA reads it: set but empty, ``-1`` or ``NoDevFiles``:
    none), else ``nvidia-smi -L`` (its ``GPU k: ...`` lines), else the folders of :data:`DRIVER_GPUS`,
    else the driver's device files ``/dev/nvidia<k>``, else none (a GPU none of these sees, as on a
    ROCm machine, counts as none: such a machine gives its GPUs by ``CUDA_VISIBLE_DEVICES``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len(_visible_ids(visible)), f"CUDA_VISIBLE_DEVICES={visible!r}"
    tried = []
    smi = shutil.which("nvidia-smi")
    if smi is None:
        tried.append("no nvidia-smi on PATH")
    else:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            tried.append(f"{smi} -L failed ({error})")
        else:
            if listed.returncode == 0:
                return sum(line.startswith("GPU ") for line in listed.stdout.splitlines()), f"{smi} -L"
            said = (listed.stdout.strip() or listed.stderr.strip()).splitlines()
            tried.append(f"{smi} -L failed (exit {listed.returncode}{': ' + said[0] if said else ''})")
    try:
        gpus = sum(1 for _ in DRIVER_GPUS.iterdir())
    except OSError:
        tried.append(f"no {DRIVER_GPUS}")
    else:
        return gpus, f"{DRIVER_GPUS}/ ({'; '.join(tried)})"
    devices = [d for d in DEVICE_FILES.glob("nvidia*") if re.fullmatch(r"nvidia\d+", d.name)]
    if devices:
        return len(devices), f"{DEVICE_FILES}/nvidia<k> ({'; '.join(tried)})"
    tried.append(f"no {DEVICE_FILES}/nvidia<k>")
    return 0, "; ".join(["CUDA_VISIBLE_DEVICES unset"] + tried)


def _visible_ids(visible: str) -> list[str]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` names, as CUDA reads it: up to the first entry that is neither
    an index nor a UUID (``-1`` or ``NoDevFiles``, the usual ways to hide every GPU, name none)."""
    ids = []
    for entry in (e.strip() for e in visible.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        ids.append(entry)
    return ids


def too_many_slots(slots: int) -> str | None:
    """Why ``--resources gpu=slots`` cannot be honoured on this machine (more slots than its GPUs,
    which are at least one), else None. A machine with no GPU keeps its slots (see :func:`claimed`)."""
    gpus, counted = count_gpus()
    if 1 <= gpus < slots:
        return (f"--resources gpu={slots} asks for {slots} GPU slots but snakemake sees only {gpus} GPU(s) "
                f"(counted from {counted}): a slot beyond them would stand for a GPU that does not exist; "
                f"give gpu=N with N at most {gpus}")
    return None


def slots_from_environment() -> int | None:
    """N of `snakemake --resources gpu=N`, as the Snakefile exported it; None when not given."""
    value = os.environ.get(SLOTS_VARIABLE, "")
    return int(value) if value.strip() else None


def why_not_claimed(device: str, declared: int, slots: int | None) -> str | None:
    """None when the job should claim a slot, else the reason it keeps the GPUs it sees."""
    if declared < 1:
        return "the job declares no GPU"
    if device not in ("auto", "cuda"):
        return f"device {device} given explicitly"
    if os.environ.get("SLURM_JOB_ID"):
        return (f"SLURM job {os.environ['SLURM_JOB_ID']} holds {os.environ.get('SLURM_GPUS_ON_NODE', 'no')} GPU(s) "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')})")
    if not slots:
        return "snakemake ran without --resources gpu=N: every GPU visible"
    return None


def gpu_ids(slots: int) -> list[str]:
    """The GPU each slot stands for: the box's first ``slots`` GPUs, or the first ``slots`` of
    ``CUDA_VISIBLE_DEVICES`` when Snakemake itself was started with a subset (set but empty: no GPU,
    and every slot keeps it empty)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [g.strip() for g in (given or "").split(",") if g.strip()]
    if given is not None and not visible:
        return [""] * slots
    if not visible:
        return [str(k) for k in range(slots)]
    if len(visible) < slots:
        raise ValueError(f"--resources gpu={slots} but CUDA_VISIBLE_DEVICES={','.join(visible)} names only "
                         f"{len(visible)} GPU(s); give gpu=N with N at most the GPUs snakemake may use")
    return visible[:slots]


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def cuda_problem() -> str | None:
    """What torch says when CUDA can use no GPU of those visible now, else None. Imports torch (and
    lets it start CUDA): call it only once ``CUDA_VISIBLE_DEVICES`` is the job's for good."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return None
    said = f"torch {torch.__version__} (built for CUDA {torch.version.cuda})"
    try:
        torch.cuda.init()
    except Exception as error:  # what torch says is the point: its own words, whatever the error
        return f"{said}: {type(error).__name__}: {error}"
    return f"{said}: torch.cuda.is_available() is False, {torch.cuda.device_count()} CUDA device(s)"


def for_job(job, device: str, *, check_cuda: bool = True):
    """:func:`claimed` for a Snakemake job (the ``snakemake`` object of a script): the GPUs its rule
    declares, the slot folder of its config; a claimed GPU that CUDA cannot use fails the job, at once
    or (``check_cuda`` False: a scoring job, which may only move scores made ahead into place without
    torch) when the job first needs CUDA (:func:`check_claimed_gpu`)."""
    return claimed(device, int(job.resources.get("gpu", 0)), job.config["gpu_slots"]["folder"],
                   check_cuda=check_cuda)


def check_claimed_gpu() -> None:
    """Raise :class:`UnusableGPU` if this job holds a GPU slot whose GPU CUDA cannot use (a claim made
    with ``check_cuda`` False); nothing otherwise. Imports torch only in that case."""
    unchecked = os.environ.get(UNCHECKED_VARIABLE)
    if unchecked:
        problem = cuda_problem()
        if problem is not None:
            raise UnusableGPU(unchecked.replace("<problem>", problem))
        os.environ.pop(UNCHECKED_VARIABLE, None)


class UnusableGPU(RuntimeError):
    """The job claimed a GPU slot and CUDA cannot use the slot's GPU: ``auto`` would run on the CPU."""


@contextlib.contextmanager
def claimed(device: str, declared: int, folder: str | Path, *, slots: int | None = None,
            poll_seconds: float = 1.0, check_cuda: bool = False) -> Iterator[int | None]:
    """Hold a free GPU slot (its number; None when none is claimed, see :func:`why_not_claimed`) for
    the body, with ``CUDA_VISIBLE_DEVICES`` set to its GPU. Waits while all N slots are held, which
    happens only when jobs of several workflows share ``folder``.

    On a machine with no GPU (:func:`count_gpus`) the slot is held all the same and the log says so;
    on one with GPUs and ``check_cuda``, :class:`UnusableGPU` when CUDA cannot use the slot's GPU
    (:func:`cuda_problem`), rather than a run on the CPU."""
    slots = slots_from_environment() if slots is None else slots
    reason = why_not_claimed(device, declared, slots)
    if reason is not None:
        if declared >= 1:
            log.info("no GPU slot claimed: %s", reason)
        yield None
        return
    gpus, counted = count_gpus()  # before the claim changes CUDA_VISIBLE_DEVICES
    ids = gpu_ids(slots)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for slot in range(slots):
            fd = _try_lock(folder / f"gpu{slot}.lock")
            if fd is not None:
                break
        else:
            if not waited:
                log.info("waiting for a free GPU slot: all %d in %s are held", slots, folder)
                waited = True
            time.sleep(poll_seconds)
            continue
        break
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[slot]
    log.info("claimed GPU slot %d of %d (CUDA_VISIBLE_DEVICES=%s, lock %s)", slot, slots, ids[slot],
             folder / f"gpu{slot}.lock")
    try:
        if gpus == 0:
            log.info("this machine has no GPU (%s): %s; the slot only limits how many GPU jobs run at once", counted,
                     "device auto runs on the CPU, as auto means without a GPU" if device == "auto"
                     else f"device {device} asks torch for a GPU all the same")
        else:
            # the error, should CUDA not use the slot's GPU, with what torch says in place of <problem>
            os.environ[UNCHECKED_VARIABLE] = (
                f"claimed GPU slot {slot} of {slots} (CUDA_VISIBLE_DEVICES={ids[slot]}) on a machine with {gpus} "
                f"GPU(s) (counted from {counted}), but CUDA cannot use it: <problem>. Device {device} would otherwise "
                f"run on the CPU; fix the GPU or torch's CUDA, or set the device to cpu explicitly")
            if check_cuda:
                check_claimed_gpu()
        yield slot
    finally:
        os.environ.pop(UNCHECKED_VARIABLE, None)
        log.info("released GPU slot %d", slot)
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous
        os.close(fd)
