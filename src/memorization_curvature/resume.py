"""Resumable jobs: what a job's trainings have done, kept where Snakemake does not delete it.

Snakemake deletes the declared outputs of an interrupted job before it runs the job again, which
would throw away every per-epoch checkpoint. So a job that trains keeps, in a folder beside its
outputs that is not declared (``.train_resume/`` for the training, ``.<output>.resume/`` for the
others), a :class:`Progress`: after each epoch the full state of the training under way (model,
optimizer, schedule, random generators, what the job records per epoch), the results of the job's
trainings already finished (a cross-validation's folds, SSFT's halves), and hard links to the
checkpoints written so far (no extra disk). A rerun with the same fingerprint (parameters, input
files' size and modification time, and the code that trains) puts the checkpoints back and continues
with the next epoch, exactly as the uninterrupted job would have; a state with any other fingerprint
is never used. After each kept state, the job's SLURM time limit (if any) decides whether the next
epoch still fits (:mod:`memorization_curvature.time_limit`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

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


def folder_for(output: str | Path) -> Path:
    """Where the job writing ``output`` keeps its progress: ``.<output's name>.resume/`` beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.resume")


def _keep(source: str | Path, target: Path) -> None:
    """``target`` becomes a hard link to ``source`` (a copy where links are not possible)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class Progress:
    """A job's trainings, each named (``training``, ``fold2``, ``half0_finetune``), resumable.

    :meth:`epoch_done` keeps the state after an epoch of the training under way (and the epoch's
    checkpoint, if any); :meth:`finish` keeps a finished training's result; :meth:`resumed` and
    :meth:`finished` give them back after a restart. ``time_limit`` (a
    :class:`memorization_curvature.time_limit.SlurmTimeLimit` or None) is asked after each kept state.
    """

    def __init__(self, folder: str | Path, expected: str, time_limit=None):
        self.folder, self.expected, self.time_limit = Path(folder), expected, time_limit
        self.state = self._load() or {"fingerprint": expected, "finished": {}, "training": None}

    def _load(self) -> dict | None:
        path = self.folder / STATE
        if not path.exists():
            return None
        try:
            state = io.load_torch(path)
        except Exception as error:  # noqa: BLE001 - a broken state is simply not used
            log.warning("ignoring unreadable training state %s (%s); training from the start", path, error)
            return None
        if state.get("fingerprint") != self.expected:
            log.warning("ignoring training state %s: made with other parameters, inputs or code", path)
            return None
        training = state["training"]
        kept = [self.folder / f"epoch{e}.pt" for e in range(1, training["epoch"] + 1)] if training and training.get(
            "checkpoints") else []
        if not all(p.exists() for p in kept):
            log.warning("ignoring training state %s: its checkpoints are incomplete", path)
            return None
        done = ", ".join(state["finished"]) or "none"
        where = f"epoch {training['epoch']} of {training['name']}" if training else "the last finished training"
        log.info("resuming after %s from %s (trainings finished: %s)", where, path, done)
        return state

    def finished(self, name: str) -> dict | None:
        """The result :meth:`finish` kept for training ``name``, or None."""
        return self.state["finished"].get(name)

    def resumed(self, name: str) -> dict | None:
        """The state after the last epoch kept of training ``name`` (to pass to ``training.train`` as
        ``resume``, with what the job kept beside it), or None."""
        training = self.state["training"]
        return training if training is not None and training["name"] == name else None

    def restore_checkpoints(self, checkpoints: Sequence[str | Path]) -> None:
        """Put the kept checkpoints of the training under way back where the job writes them."""
        training = self.state["training"]
        epochs = training["epoch"] if training and training.get("checkpoints") else 0
        if epochs > len(checkpoints):
            raise ValueError(f"{epochs} checkpoints kept for {len(checkpoints)} paths")
        for epoch, target in zip(range(1, epochs + 1), checkpoints):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            _keep(self.folder / f"epoch{epoch}.pt", Path(target))

    def epoch_done(self, name: str, training_state: dict, *, more: bool, checkpoint: str | Path | None = None,
                   recorded: dict | None = None) -> None:
        """Keep the state after an epoch of training ``name`` (``training_state``: what ``training.train``
        hands ``on_state``, with anything else the job must resume from), the epoch's ``checkpoint`` and
        what the job ``recorded`` of this epoch alone (tensors, kept in a file of their own, so that an
        epoch's state costs the same at the last epoch as at the first: :meth:`recorded`);
        ``more``: another epoch of this job follows (then the time limit is asked)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        epoch = training_state["epoch"]
        # the epoch's files first: a state never names a file not kept
        if checkpoint is not None:
            _keep(checkpoint, self.folder / f"epoch{epoch}.pt")
        if recorded is not None:
            io.save_torch(self.folder / f"{name}_recorded{epoch}.pt", recorded)
        self.state["training"] = {**training_state, "name": name, "checkpoints": checkpoint is not None}
        io.save_torch(self.folder / STATE, self.state)
        if more and self.time_limit is not None:
            self.time_limit.after_epoch(f"epoch {epoch} of {name}", training_state.get("epoch_seconds"))

    def recorded(self, name: str) -> list[dict]:
        """What :meth:`epoch_done` kept as ``recorded`` for each epoch of training ``name`` resumed."""
        training = self.resumed(name)
        return [io.load_torch(self.folder / f"{name}_recorded{e}.pt") for e in range(1, training["epoch"] + 1)] \
            if training else []

    def finish(self, name: str, result: dict) -> None:
        """Keep the result of the finished training ``name``; the next training starts from its start."""
        self.state["finished"][name] = result
        self.state["training"] = None
        self.folder.mkdir(parents=True, exist_ok=True)
        io.save_torch(self.folder / STATE, self.state)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
