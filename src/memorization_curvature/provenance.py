"""Digests of the package's own source, so that a code change reruns exactly what it affects.

Snakemake's code trigger sees only the script of a rule, not the package the script calls. Each
rule passes the digest of the modules it depends on as a ``params:`` value; editing one of those
modules changes the digest, and Snakemake reruns the rule and everything downstream.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_digest(*modules: str) -> str:
    """SHA-256 (first 16 hex digits) of the named modules' source, e.g. ``source_digest("curvature")``."""
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        path = _PACKAGE_DIR / f"{name}.py"
        if not path.is_file():
            raise ValueError(f"no module {name!r} in {_PACKAGE_DIR}")
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
