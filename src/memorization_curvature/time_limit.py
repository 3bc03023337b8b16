"""Trainings longer than a SLURM time limit: stop before the limit and go back in the queue.

SLURM ends a job at its time limit (state TIMEOUT, a failure) and does not requeue it. So a job that
trains reads its SLURM job's time left, and after each epoch (once the state to resume from is kept,
:class:`memorization_curvature.resume.Progress`) asks whether the next epoch still fits: the longest
epoch of this start, times :data:`SAFETY`, plus a margin (``train.time_limit_margin_s``, 20 s by
default). If it may not, the job puts its own SLURM job back in the queue (``scontrol requeue``: same
job id, so Snakemake keeps waiting for it) and its next start resumes from the kept state. A training therefore finishes across as many time limits
as it needs, each start training at least one epoch, with the result of an uninterrupted run.

Only a batch job that Snakemake's SLURM executor submitted for this rule alone is requeued (its
``Comment`` is ``rule_<rule>...``): requeueing a job that runs a whole workflow would restart
everything else in it. Where the job cannot go back in the queue (another kind of job, or one
submitted with ``--no-requeue``), it stops with an error before the limit instead, its state kept: a
retry or a rerun resumes it.

SLURM starts a requeued job no sooner than its credential lifetime later (``AuthInfo=cred_expire``,
120 s by default) plus the wait in the queue. Outside SLURM, or without a time limit, nothing is done.
This module decides only where a training stops and resumes, never what it computes (tests compare
the result with an uninterrupted run bit for bit), so it is outside every code digest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import time
from typing import Callable, Iterator

from . import job_log

log = logging.getLogger("memorization_curvature")

# The next epoch must fit in the time left with this much to spare (train.time_limit_margin_s, speed
# only): writing the job's outputs after the last epoch, the requeue itself, the clock of SLURM's
# time-limit check.
MARGIN_S = 20.0
# Epochs vary (a loaded file system, another job on the node): plan for this multiple of the longest.
SAFETY = 1.5
# How long a requeued job waits for SLURM to stop it before it says so and fails.
STOP_WAIT_S = 600.0


class OutOfTime(RuntimeError):
    """The next epoch may not fit in the time limit and the job cannot go back in the queue."""


def seconds_of(slurm_time: str) -> float | None:
    """Seconds in SLURM's time format (``[D-]HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``); None for
    ``UNLIMITED`` and ``NOT_SET``; 0 for ``INVALID`` (SLURM's word for a time left below zero, and
    squeue's for one above 365 days as well: :meth:`SlurmTimeLimit._time_left` tells them apart)."""
    text = slurm_time.strip()
    if text in ("UNLIMITED", "NOT_SET", "Partition_Limit"):
        return None
    if text == "INVALID":
        return 0.0
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text)
    if match is None:
        raise ValueError(f"not a SLURM time: {slurm_time!r} (expected [D-][HH:]MM:SS, UNLIMITED or INVALID)")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


Run = Callable[[list], subprocess.CompletedProcess]


def _run(command: list) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


class SlurmTimeLimit:
    """The time limit of the SLURM job ``job_id`` running rule ``rule``'s job, checked after each epoch."""

    def __init__(self, job_id: str, rule: str, *, margin_s: float = MARGIN_S, run: Run = _run,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.job_id, self.rule, self._run, self._clock, self._sleep = job_id, rule, run, clock, sleep
        self.margin_s = float(margin_s)
        self._started = self._last = clock()
        self.longest_epoch, self._epochs = 0.0, []
        record = self._record()
        self.restarts = int(record.get("Restarts", "0") or 0)
        self.limit = seconds_of(record.get("TimeLimit", "UNLIMITED"))
        comment = record.get("Comment", "")
        self.requeue_refused = None
        if record.get("BatchFlag") != "1":
            self.requeue_refused = "it is not a batch job"
        elif not (comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_")):
            self.requeue_refused = (f"it was not submitted for this {rule} job alone (its comment is {comment!r}, "
                                    f"Snakemake's SLURM executor writes 'rule_{rule}...')")
        elif record.get("Requeue") != "1":
            self.requeue_refused = "it was submitted with requeueing disabled (Requeue=0; sbatch --requeue allows it)"
        self._deadline = None if self.limit is None else self._clock() + self._time_left()

    def _record(self) -> dict:
        done = self._run(["scontrol", "-o", "show", "job", self.job_id])
        if done.returncode != 0:
            raise RuntimeError(f"scontrol show job {self.job_id} failed: {done.stderr.strip()}")
        return dict(re.findall(r"(\w+)=(\S*)", done.stdout))

    def _time_left(self) -> float:
        done = self._run(["squeue", "-h", "-j", self.job_id, "-o", "%L"])
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"squeue -j {self.job_id} -o %L failed: {done.stderr.strip() or 'no output'}")
        text = done.stdout.strip().splitlines()[0].strip()
        if text == "INVALID":
            # squeue writes INVALID for a time left above 365 days as well as below zero: the job's
            # record tells them apart (its limit and the time it has run)
            record = self._record()
            limit, run = seconds_of(record.get("TimeLimit", "UNLIMITED")), record.get("RunTime", "INVALID")
            if limit is None:
                return float("inf")
            return 0.0 if run == "INVALID" else max(limit - seconds_of(run), 0.0)
        left = seconds_of(text)
        return float("inf") if left is None else left

    def describe(self) -> str:
        if self._deadline is None:
            return f"SLURM job {self.job_id} has no time limit"
        plan = ("goes back in the queue" if self.requeue_refused is None
                else f"stops with an error (it cannot go back in the queue: {self.requeue_refused})")
        return (f"SLURM job {self.job_id} (start {self.restarts + 1}) has {self._deadline - self._clock():.0f} s "
                f"left of its {self.limit:.0f} s limit; when the next epoch may not fit (with a margin of "
                f"{self.margin_s:g} s), the job keeps its state and {plan}")

    def after_epoch(self, done: str, seconds: float | None = None) -> None:
        """Called once the state after an epoch (``done``, e.g. "epoch 3 of fold 2"; ``seconds``: how long
        the epoch itself took, if known) is kept and another epoch follows: return if the next epoch
        fits, else requeue this job (or stop with an error)."""
        now = self._clock()
        interval = now - self._last
        # the first interval of a start also holds the job's start (imports, data, model): the epoch's
        # own time stands for it where it is known
        self._epochs.append(interval if self._epochs or seconds is None else seconds)
        self.longest_epoch = max(self._epochs)
        self._last = now
        if self._deadline is None:
            return
        needed = SAFETY * self.longest_epoch + self.margin_s
        if self._deadline - now >= needed:
            return
        self._deadline = now + self._time_left()  # the limit may have been raised (scontrol update)
        left = self._deadline - now
        if left >= needed:
            return
        why = (f"the next epoch may not fit in the {left:.0f} s left of SLURM job {self.job_id}'s time limit "
               f"(longest epoch so far {self.longest_epoch:.1f} s, x{SAFETY:g} + {self.margin_s:g} s margin = {needed:.0f} s)")
        if self.requeue_refused is not None:
            raise OutOfTime(f"stopping after {done}: {why}, and the job cannot go back in the queue: "
                            f"{self.requeue_refused}. The state after {done} is kept: a retry or a rerun of "
                            "the workflow resumes from it")
        log.info("after %s: %s; the state is kept and SLURM job %s goes back in the queue (scontrol requeue); "
                 "its next start resumes from here", done, why, self.job_id)
        job_log.keep_for_next_start()
        requeued = self._run(["scontrol", "requeue", self.job_id])
        if requeued.returncode != 0:
            raise OutOfTime(f"stopping after {done}: {why}, and `scontrol requeue {self.job_id}` failed: "
                            f"{requeued.stderr.strip()}. The state after {done} is kept: a retry or a rerun of "
                            "the workflow resumes from it")
        # SLURM now ends this start of the job (SIGTERM, then SIGKILL after KillWait)
        waited = self._clock()
        while self._clock() - waited < STOP_WAIT_S:
            self._sleep(1.0)
        raise OutOfTime(f"SLURM job {self.job_id} was requeued after {done} but not stopped within "
                        f"{STOP_WAIT_S:.0f} s; the state after {done} is kept: a rerun resumes from it")


@contextlib.contextmanager
def for_job(snakemake) -> Iterator[SlurmTimeLimit | None]:
    """The time limit of the SLURM job running this Snakemake job (None outside SLURM), logged."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        yield None
        return
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        # a task of a job array (--slurm-array-jobs): the task started last has the array's id as its own
        # job id, which names every task of the array to scontrol and squeue (a requeue would requeue
        # them all); <array>_<task> names this task alone
        job_id = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    try:
        limit = SlurmTimeLimit(job_id, snakemake.rule, margin_s=snakemake.config["train"]["time_limit_margin_s"])
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
        log.warning("cannot read the time limit of SLURM job %s (%s): this training will not stop before "
                    "it, and if the limit ends it, a retry or a rerun resumes from its last complete epoch",
                    job_id, error)
        yield None
        return
    log.info("%s", limit.describe())
    yield limit
