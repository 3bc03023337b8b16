"""Digests of the package's own source, so that a code change reruns exactly what it affects.

Snakemake's code trigger sees only the script of a rule, not the package the script calls. Each
rule passes :func:`script_digest` of its script as a ``params:`` value: the digest of every package
module the script can run, found by reading the source (never kept by hand). Editing one of those
modules changes the digest, and Snakemake reruns the rule and everything downstream.

What "can run" means: the modules the script imports; from :mod:`stages`, only the stage functions
the script calls, the helpers of ``stages`` they call and the modules those import (``stages``
imports its heavy modules inside the functions that need them); from every other module, all its
imports, wherever they are (conservative); and transitively so. ``stages.py`` and the package's
``__init__.py`` are always part of it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_PACKAGE = _PACKAGE_DIR.name
_STAGES = "stages"


def source_digest(*modules: str) -> str:
    """SHA-256 (first 16 hex digits) of the named modules' source, e.g. ``source_digest("curvature")``."""
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        digest.update(name.encode() + b"\0" + _module_path(name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def script_digest(script: str | Path) -> str:
    """The digest of every package module the workflow script ``script`` can run."""
    return source_digest(*script_modules(script))


def script_modules(script: str | Path) -> list[str]:
    """The package modules the workflow script ``script`` can run (see the module docstring)."""
    tree = ast.parse(Path(script).read_text(), filename=str(script))
    modules, stage_functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == _PACKAGE:
                modules.update(alias.name for alias in node.names)
            elif node.module.startswith(_PACKAGE + "."):
                modules.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            modules.update(a.name.split(".")[1] for a in node.names if a.name.startswith(_PACKAGE + "."))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == _STAGES:
            stage_functions.add(node.attr)
    return sorted(_closure(modules | {"__init__", _STAGES}, stage_functions))


def _closure(modules: set[str], stage_functions: set[str]) -> set[str]:
    found, pending = set(), list(modules)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        tree = _parse(name)
        if name == _STAGES:
            pending += _module_level_imports(tree) | _imports_of_functions(tree, stage_functions)
        elif name == "__init__":
            # its lazy import serves the public API (memorization_curvature.curvature_scores), never a script
            pending += _module_level_imports(tree)
        else:
            pending += _imports(tree)
    return found


def _module_path(name: str) -> Path:
    path = _PACKAGE_DIR / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"no module {name!r} in {_PACKAGE_DIR}")
    return path


@functools.cache
def _parse(name: str) -> ast.Module:
    path = _module_path(name)
    return ast.parse(path.read_text(), filename=str(path))


def _imports(node: ast.AST) -> set[str]:
    """Package modules imported anywhere under ``node`` (relative or absolute imports)."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.ImportFrom):
            if child.level == 1:
                found.update([child.module.split(".")[0]] if child.module else [a.name for a in child.names])
            elif child.level == 0 and child.module and child.module.split(".")[0] == _PACKAGE:
                parts = child.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in child.names])
        elif isinstance(child, ast.Import):
            found.update(a.name.split(".")[1] for a in child.names if a.name.startswith(_PACKAGE + "."))
    return found


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _module_level_imports(tree: ast.Module) -> set[str]:
    """Imports that run when the module is imported: everything but the bodies of its functions and
    of its classes' methods."""
    statements = [node for node in tree.body if not isinstance(node, _FUNCTIONS + (ast.ClassDef,))]
    statements += [node for c in tree.body if isinstance(c, ast.ClassDef) for node in c.body
                   if not isinstance(node, _FUNCTIONS)]
    return set().union(*(_imports(node) for node in statements))


def _imports_of_functions(tree: ast.Module, names: set[str]) -> set[str]:
    """Imports inside the module's functions ``names`` and the module's functions and classes they use
    (a class: all its methods)."""
    functions = {node.name: node for node in tree.body if isinstance(node, _FUNCTIONS + (ast.ClassDef,))}
    defined = set(functions) | {n.id for node in tree.body for n in ast.walk(node)
                                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    unknown = names - defined
    if unknown:
        raise ValueError(f"{_STAGES}.py defines no {sorted(unknown)}")
    reached, pending = set(), list(names & set(functions))
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        pending += _called_functions(functions[name], set(functions))
    return set().union(*(_imports(functions[name]) for name in reached))


def _called_functions(function: ast.FunctionDef | ast.ClassDef, module_functions: set[str]) -> set[str]:
    """The module's functions that ``function`` refers to (a local variable of the same name does not count)."""
    arguments = [function.args] if isinstance(function, _FUNCTIONS) else [
        node.args for node in function.body if isinstance(node, _FUNCTIONS)]
    local = {a.arg for args in arguments for a in ast.walk(args) if isinstance(a, ast.arg)}
    local |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            and n.id in module_functions and n.id not in local}
