"""One scoring process for several checkpoints, with one job and one output per checkpoint as before.

A scoring job pays a fixed start-up (the interpreter, torch and torchvision, the dataset; on a GPU the
CUDA context) that at CIFAR size is a large part of the scoring itself (bench/job_startup.py). With
``curvature.checkpoints_per_job: B`` (B > 1), a job that has scored its own checkpoint goes on to the
next checkpoints of its run whose jobs have not started, up to B in all, and leaves their scores in
``scores/.ahead/``. Their jobs then find them there and move them into place without importing torch.
A job whose checkpoint another process is scoring helps with other checkpoints meanwhile, so jobs on
several GPUs (or in several SLURM groups) share a run's checkpoints instead of waiting on each other.

Snakemake's view is unchanged (same jobs, inputs, outputs), so B is a speed-only setting: changing it
reruns nothing. An entry is used only if it was made from the same checkpoint, data and labels files
(size and modification time) and the same scoring parameters and code; each checkpoint is claimed
with an exclusive lock that the kernel drops if its process dies.

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

FOLDER = ".ahead"


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

    def _entry(self, epoch: int) -> tuple[Path, Path]:
        return self.folder / f"epoch{epoch}.npz", self.folder / f"epoch{epoch}.key"

    def key(self, epoch: int) -> str:
        """What an entry's scores depend on: the files (size, mtime) and the settings."""
        files = [_stat(self.checkpoint_of(epoch))] + [_stat(p) for p in self.inputs]
        text = json.dumps({"files": files, "settings": self.settings}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

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
        scores, key = self._entry(epoch)
        try:
            return scores.exists() and key.read_text() == self.key(epoch)
        except FileNotFoundError:
            return False

    def store(self, epoch: int, arrays: dict) -> None:
        from . import io

        scores, key = self._entry(epoch)
        io.save_npz(scores, **arrays)
        with io.atomic_path(key) as tmp:
            Path(tmp).write_text(self.key(epoch))

    def take(self, epoch: int) -> None:
        """Move the entry of ``epoch`` to its output."""
        scores, key = self._entry(epoch)
        os.replace(scores, self.output_of(epoch))
        key.unlink()

    def others(self) -> Iterator[int]:
        """Epochs another job may score ahead, claimed: the run's next scored epochs after this job's,
        then the earlier ones; skipping those with an output or an entry, or claimed elsewhere."""
        after = [e for e in self.epochs if e > self.own]
        before = [e for e in self.epochs if e < self.own]
        for epoch in after + before:
            if self.output_of(epoch).exists() or not self.checkpoint_of(epoch).exists() or self.ready(epoch):
                continue
            if not self.claim(epoch, wait=False):
                continue
            # finished by another process just now (a job writes its output before it lets go)
            if self.output_of(epoch).exists() or not self.checkpoint_of(epoch).exists() or self.ready(epoch):
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
