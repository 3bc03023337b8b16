"""One GPU per local job: a job that declares ``gpu=1`` claims a free slot before torch starts CUDA.

Snakemake counts GPUs (``--resources gpu=N`` runs at most N such jobs at once) but does not say which
GPU a local job may use, so every job would see all of them and take the first. Here each job takes
an exclusive ``flock`` on one of N lock files (``gpu0.lock`` ... in a folder every job of the box
shares) and sets ``CUDA_VISIBLE_DEVICES`` to that slot's GPU, so ``cuda`` in the job is its own GPU.
The kernel drops a lock when its process ends, however it ends, so a killed job never blocks a slot.

No slot is claimed where something else already places the job: under SLURM (which sets
``CUDA_VISIBLE_DEVICES`` itself), for an explicit ``cpu`` or ``cuda:K`` device, or when Snakemake was
not given ``--resources gpu=N`` (every job then sees every GPU, as before).

Lock files only: no ``torch`` import, so that nothing can touch CUDA before the slot is chosen.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger("memorization_curvature")

# Set by the Snakefile from `--resources gpu=N`; jobs inherit it.
SLOTS_VARIABLE = "MEMCURV_GPU_SLOTS"


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
    ``CUDA_VISIBLE_DEVICES`` when Snakemake itself was started with a subset."""
    visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
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


def for_job(job, device: str):
    """:func:`claimed` for a Snakemake job (the ``snakemake`` object of a script): the GPUs its rule
    declares, the slot folder of its config."""
    return claimed(device, int(job.resources.get("gpu", 0)), job.config["gpu_slots"]["folder"])


@contextlib.contextmanager
def claimed(device: str, declared: int, folder: str | Path, *, slots: int | None = None,
            poll_seconds: float = 1.0) -> Iterator[int | None]:
    """Hold a free GPU slot (its number; None when none is claimed, see :func:`why_not_claimed`) for
    the body, with ``CUDA_VISIBLE_DEVICES`` set to its GPU. Waits while all N slots are held, which
    happens only when jobs of several workflows share ``folder``."""
    slots = slots_from_environment() if slots is None else slots
    reason = why_not_claimed(device, declared, slots)
    if reason is not None:
        if declared >= 1:
            log.info("no GPU slot claimed: %s", reason)
        yield None
        return
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
        yield slot
    finally:
        log.info("released GPU slot %d", slot)
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous
        os.close(fd)
