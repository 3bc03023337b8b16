"""A job's log file: the package's log records, and any uncaught error, with timestamps.

Only where a job's messages go, never what it computes: outside the code digests (:mod:`.provenance`).
"""

from __future__ import annotations

import contextlib
import logging
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
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers: list[logging.Handler] = [logging.FileHandler(path, mode="w")]
    else:
        handlers = [logging.StreamHandler(sys.stderr)]
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
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
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
