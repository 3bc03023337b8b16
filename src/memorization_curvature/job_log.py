"""A job's log file: the package's log records, and any uncaught error, with timestamps.

Only where a job's messages go, never what it computes: outside the code digests (:mod:`.provenance`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

from .io import BadInput

log = logging.getLogger("memorization_curvature")


@contextlib.contextmanager
def logging_to(path: str | Path | None, *, code: str = "") -> Iterator[None]:
    """Send the package's log records (and any uncaught error) to ``path``, with timestamps.

    ``code`` is the digest of the package source the step runs (see :mod:`.provenance`); it is
    logged so that every output can be traced to the code that made it.
    """
    global _current
    # a SLURM job put back in the queue (a training before its time limit) starts again with the same job
    # id, and Snakemake deletes the job's log before it runs: the log of its earlier starts, kept beside
    # it under the job id (keep_for_next_start), comes first. Any other job's is stale.
    job_id = os.environ.get("SLURM_JOB_ID")
    continued = False
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        earlier = _earlier_starts(path, job_id) if job_id else None
        continued = earlier is not None and earlier.exists()
        with open(path, "w") as log_file:
            if continued:
                log_file.write(earlier.read_text())
        for stale in Path(path).parent.glob(_earlier_starts(path, "*").name):
            stale.unlink(missing_ok=True)
        _current = Path(path)
        handlers: list[logging.Handler] = [logging.FileHandler(path, mode="a")]
    else:
        handlers = [logging.StreamHandler(sys.stderr)]
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    if continued:
        log.info("SLURM job %s starts again (requeued), after what its earlier starts logged above", job_id)
    if code:
        log.info("package source digest %s", code)
    try:
        yield
    except BadInput as error:
        # a known problem with an input: one clear line, no traceback
        log.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    except Exception:
        log.exception("step failed")
        raise
    finally:
        _current = None
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


_current: Path | None = None


def _earlier_starts(path: str | Path, job_id: str) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.slurm-job-{job_id}")


def keep_for_next_start() -> None:
    """Keep the log so far for the next start of this SLURM job (which finds it as it opens the log)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if _current is not None and job_id:
        for handler in log.handlers:
            handler.flush()
        _earlier_starts(_current, job_id).write_text(_current.read_text())
