"""Run the snakemake command line seeing only what the project declares, as after `pip install -e .`.

    python tests/declared_only.py EXTRAS -- SNAKEMAKE ARGS...      (EXTRAS: "" or e.g. "slurm")

The distributions importable are the project's requirements in pyproject.toml (with the named extras)
and, transitively, theirs as installed; importing a module of any other installed distribution (the
test extras: pytest, pygments through it, ...) fails as if it were not installed. So a command works
here only if the dependencies a user installs cover it.

Working out what to block reads every installed distribution's metadata (0.7 s); with DECLARED_ONLY_CACHE
set to a folder (the test session sets one), each set of extras is worked out once and kept there, for an
installation whose site-packages folders have not changed since.
"""

from __future__ import annotations

import importlib.abc
import hashlib
import importlib.metadata
import json
import os
import pkgutil
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions(extras: tuple[str, ...] = ()) -> set[str]:
    """Canonical names of every distribution the project's declared requirements pull in."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pending = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        pending += [Requirement(r) for r in project["optional-dependencies"][extra]]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while pending:
        requirement = pending.pop()
        key = (canonical(requirement.name), tuple(sorted(requirement.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = importlib.metadata.distribution(requirement.name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here (another platform's dependency): nothing of it can be imported
        for line in requires:
            child = Requirement(line)
            environments = [{"extra": e} for e in requirement.extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                pending.append(child)
    return {canonical(project["name"])} | {name for name, _ in seen}


class _Undeclared(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: set[str]):
        self.blocked = blocked

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {fullname!r} (installed, but not declared)", name=fullname)
        return None


def undeclared_modules(extras: tuple[str, ...]) -> set[str]:
    """Top-level modules of installed distributions the project does not declare (with ``extras``)."""
    declared = declared_distributions(extras)
    return {module for module, owners in importlib.metadata.packages_distributions().items()
            if not any(canonical(owner) in declared for owner in owners)}


def cached_undeclared_modules(extras: tuple[str, ...], folder: str) -> set[str]:
    """:func:`undeclared_modules`, kept in ``folder`` under the extras, pyproject.toml and the state of
    every folder on sys.path (an install or uninstall changes its folder's modification time)."""
    state = [sorted(extras), (REPO / "pyproject.toml").read_text()]
    state += [(entry, os.stat(entry).st_mtime_ns) for entry in sys.path if os.path.isdir(entry)]
    path = Path(folder) / f"undeclared-{hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]}.json"
    if path.exists():
        return set(json.loads(path.read_text()))
    blocked = undeclared_modules(extras)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(sorted(blocked)))
    partial.replace(path)  # whole or absent, whichever process writes it
    return blocked


def block_undeclared(extras: tuple[str, ...]) -> set[str]:
    cache = os.environ.get("DECLARED_ONLY_CACHE")
    blocked = cached_undeclared_modules(extras, cache) if cache else undeclared_modules(extras)
    sys.meta_path.insert(0, _Undeclared(blocked))
    # Snakemake finds its plugins by listing the installed modules: list only the declared ones
    listed = pkgutil.iter_modules
    pkgutil.iter_modules = lambda *args, **kwargs: (m for m in listed(*args, **kwargs) if m.name not in blocked)
    return blocked


if __name__ == "__main__":
    extras = tuple(e for e in sys.argv[1].split(",") if e)
    assert sys.argv[2] == "--", sys.argv
    block_undeclared(extras)
    sys.argv = ["snakemake", *sys.argv[3:]]
    from snakemake.cli import main

    main()
