"""Resumable training: a state after every epoch, kept where Snakemake does not delete it.

Snakemake deletes the declared outputs of an interrupted job before it runs the job again, which
would throw away every per-epoch checkpoint. So after each epoch the training job also keeps, in a
folder beside its outputs that is not declared (``.train_resume/``): a hard link to the epoch's
checkpoint (no extra disk), and the full training state (model, optimizer, random generator, the
metrics and per-sample statistics so far). A rerun with the same fingerprint (parameters, input
files' size and modification
time, and the code that trains) puts the checkpoints back and continues with the next epoch; a state
with any other fingerprint is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from . import io

log = logging.getLogger(__name__)

STATE = "state.pt"


def fingerprint(params: dict, files, code: str) -> str:
    """SHA-256 of the training parameters, the code digest, and each input file's path, size and
    modification time.

    The files are not read: hashing a 190 GB ImageNet file would cost minutes at every start and
    every requeue. Snakemake rewrites an input whenever it reruns the job that makes it, which gives
    the file a new modification time, so a state made from other inputs is still never used.
    """
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode() + code.encode())
    for path in files:
        stat = os.stat(path)
        digest.update(f"\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _keep(source: str | Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source`` (a copy where links are not possible)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def save(folder: Path, state: dict, checkpoint: str | Path) -> None:
    """Keep the epoch's checkpoint and the state after it (the state written last, atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    _keep(checkpoint, folder / f"epoch{state['epoch']}.pt")
    io.save_torch(folder / STATE, state)


def load(folder: Path, expected: str, checkpoints) -> dict | None:
    """The kept state if it has the expected fingerprint, with its checkpoints put back; else None."""
    path = folder / STATE
    if not path.exists():
        return None
    try:
        state = io.load_torch(path)
    except Exception as error:  # noqa: BLE001 - a broken state is simply not used
        log.warning("ignoring unreadable training state %s (%s); training from the start", path, error)
        return None
    if state.get("fingerprint") != expected:
        log.warning("ignoring training state %s: made with other parameters, inputs or code", path)
        return None
    kept = [folder / f"epoch{e}.pt" for e in range(1, state["epoch"] + 1)]
    if state["epoch"] > len(checkpoints) or not all(p.exists() for p in kept):
        log.warning("ignoring training state %s: its checkpoints are incomplete", path)
        return None
    for source, target in zip(kept, checkpoints):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        _keep(source, Path(target))
    log.info("resuming after epoch %d from %s", state["epoch"], path)
    return state


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
