"""One scoring process for several checkpoints, with one job and one output per checkpoint as before.

A scoring job pays a fixed start-up (the interpreter, torch and torchvision, the dataset; on a GPU the
CUDA context) that at CIFAR size is a large part of the scoring itself (bench/job_startup.py). With
``curvature.checkpoints_per_job: B`` (B > 1), a job that has scored its own checkpoint goes on to the
next checkpoints of its run whose jobs have not started, up to B in all, and leaves their scores in
``scores/.ahead/``. Their jobs then find them there and move them into place without importing torch.
A job whose checkpoint another process is scoring helps with other checkpoints meanwhile, so jobs on
several GPUs (or in several SLURM groups) share a run's checkpoints instead of waiting on each other.

Snakemake's view is unchanged (same jobs, inputs, outputs), so B is a speed-only setting: changing it
reruns nothing. Every score file, an output or an entry, holds the key it was made with (``KEY``): the
checkpoint, data and labels files (size and modification time, read before the checkpoint is loaded)
and the scoring parameters and code. The key alone says whether a checkpoint still needs scoring, never
whether a file exists: an output left by a run with other parameters or code (Snakemake removes it only
when its job starts) is scored ahead again, and an entry is used only if its key is the current one.
Each checkpoint is claimed with an exclusive lock that the kernel drops if its process dies.

No torch here: a job whose scores were made ahead must not pay for importing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

FOLDER = ".ahead"
KEY = "scoring_key"  # the member of a score file (.npz) holding the key it was made with


class LocksUnavailable(OSError):
    """The file system of the scores does not support ``flock`` (some cluster file systems)."""


def epoch_of(path: str | Path) -> int:
    match = re.fullmatch(r"epoch(\d+)\.\w+", Path(path).name)
    if match is None:
        raise ValueError(f"{path}: expected a file named epoch<N>.<ext>, as the workflow writes them")
    return int(match.group(1))


def _with_epoch(path: Path, epoch: int) -> Path:
    return path.with_name(re.sub(r"^epoch\d+", f"epoch{epoch}", path.name))


def _stat(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


def key_of(checkpoint: str | Path, inputs: Sequence[str | Path], settings: dict[str, Any]) -> str:
    """What the scores of ``checkpoint`` depend on: the files (size, mtime) and the settings. Cheap (file
    status only): take it before loading the checkpoint, so that scores made from a checkpoint replaced
    meanwhile carry the key of the one they were made from."""
    files = [_stat(Path(checkpoint))] + [_stat(Path(p)) for p in inputs]
    text = json.dumps({"files": files, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def save(path: str | Path, arrays: dict, key: str) -> None:
    """Write scores with the key they were made with (the readers read their arrays by name)."""
    from . import io

    io.save_npz(path, **arrays, **{KEY: np.asarray(key)})


def stored_key(path: str | Path) -> str | None:
    """The key the score file ``path`` was made with; None where there is no file, no key (made before
    keys were stored) or no readable file."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return str(arrays[KEY]) if KEY in arrays.files else None
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a broken file is not a current one; its job will rewrite it
        return None


class Pool:
    """The scored checkpoints of one run, for processes that score ahead of their jobs.

    ``checkpoint`` and ``output``: the job's own files; ``epochs``: every scored epoch of the run;
    ``inputs``: the other files the scores depend on (data, labels); ``settings``: the parameters and
    the code digest of the scoring.
    """

    def __init__(self, checkpoint: str | Path, output: str | Path, epochs: Sequence[int],
                 inputs: Sequence[str | Path], settings: dict[str, Any]):
        self.checkpoint, self.output = Path(checkpoint), Path(output)
        self.own = epoch_of(self.checkpoint)
        self.epochs = sorted(set(epochs) | {self.own})
        self.folder = self.output.parent / FOLDER
        self.inputs = [Path(p) for p in inputs]
        self.settings = settings
        self._locks: dict[int, int] = {}

    def checkpoint_of(self, epoch: int) -> Path:
        return _with_epoch(self.checkpoint, epoch)

    def output_of(self, epoch: int) -> Path:
        return _with_epoch(self.output, epoch)

    def _entry(self, epoch: int) -> Path:
        return self.folder / f"epoch{epoch}.npz"

    def key(self, epoch: int) -> str:
        """The key of ``epoch``'s scores now (:func:`key_of`)."""
        return key_of(self.checkpoint_of(epoch), self.inputs, self.settings)

    # claims: one exclusive lock per checkpoint, held while it is scored or its entry moved
    def claim(self, epoch: int, *, wait: bool) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"epoch{epoch}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as error:
            os.close(fd)
            raise LocksUnavailable(error.errno, f"no file locks in {self.folder}: {error.strerror}") from error
        self._locks[epoch] = fd
        return True

    def release(self, epoch: int) -> None:
        os.close(self._locks.pop(epoch))

    def ready(self, epoch: int) -> bool:
        """Scores of ``epoch`` made ahead from the same files, settings and code."""
        try:
            return stored_key(self._entry(epoch)) == self.key(epoch)
        except FileNotFoundError:  # no checkpoint
            return False

    def _to_score(self, epoch: int) -> bool:
        """Whether ``epoch`` has a checkpoint but neither an output nor an entry with its current key."""
        try:
            key = self.key(epoch)
        except FileNotFoundError:  # not written yet, or deleted once scored (train.keep_checkpoints)
            return False
        return stored_key(self.output_of(epoch)) != key and stored_key(self._entry(epoch)) != key

    def store(self, epoch: int, arrays: dict, key: str) -> None:
        """Leave scores made ahead, with ``key`` taken before their checkpoint was loaded, in one file."""
        save(self._entry(epoch), arrays, key)

    def take(self, epoch: int) -> None:
        """Move the entry of ``epoch`` to its output."""
        os.replace(self._entry(epoch), self.output_of(epoch))

    def others(self) -> Iterator[int]:
        """Epochs another job may score ahead, claimed: the run's next scored epochs after this job's,
        then the earlier ones; skipping those with an output or an entry of the current key (an output
        of other settings or code does not count), or claimed elsewhere."""
        after = [e for e in self.epochs if e > self.own]
        before = [e for e in self.epochs if e < self.own]
        for epoch in after + before:
            if not self._to_score(epoch) or not self.claim(epoch, wait=False):
                continue
            # finished by another process just now (a job writes its output before it lets go)
            if not self._to_score(epoch):
                self.release(epoch)
                continue
            yield epoch


def clear(score_paths: Sequence[str | Path]) -> int:
    """Remove what scoring ahead left beside ``score_paths`` once they are all made (entries of jobs
    that did not run, lock files); the number of entries removed."""
    removed = 0
    for folder in {Path(p).parent / FOLDER for p in score_paths}:
        if folder.is_dir():
            for path in folder.iterdir():
                removed += path.suffix == ".npz"
                path.unlink(missing_ok=True)
            folder.rmdir()
    return removed
