"""Code digests: a rule reruns when the code its job runs can behave differently, and only then.

Snakemake's code trigger sees only a rule's script, and by the bytes of the file. Each rule instead
passes :func:`script_digest` of its script as a ``params:`` value (the workflow profiles switch the
code trigger off), and Snakemake reruns the rule, and what follows it, when the digest changes.

The digest covers the *normalized syntax tree* (comments, docstrings and formatting do not count) of:

- the script itself;
- the steps it calls, function by function: in a module of :mod:`.stages` (one per rule file), the
  step functions the script names, the module's functions and classes they use, and the module's
  top-level statements (its imports), never its other steps;
- every package module those import, anywhere in them, and transitively: whole modules, each one
  concern (data, training, curvature, figures, ...), so that a module is in or out, never in part;
- the package's ``__init__.py`` (its module-level imports only: its lazy import serves the public API).

Modules that decide only where, when or how a job runs, or that check the configuration when the
workflow is planned, are outside every digest (:data:`OUTSIDE_RESULTS`); tests show that results are
the same whatever they decide, and that jobs use from them only what is listed there.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_PACKAGE = _PACKAGE_DIR.name
_STAGES = "stages"

# module -> (why it is outside the digests, the names jobs may use from it)
OUTSIDE_RESULTS = {
    "choices": ("the accepted values: a job checks a value against them and stops, never computes with them",
                {"DATASETS", "MODELS", "HISTORY_METHODS", "CLEANING_ACTIONS", "PLACEMENTS", "CURVATURE_FORMS",
                 "CURVATURE_METHODS", "CURVATURE_PRECISIONS", "TRAINING_STATISTICS"}),
    "config": ("checks the configuration when the workflow is planned; jobs read speed-only settings from it",
               {"runtime_settings", "run_epochs", "scored_epochs"}),
    "gpu_slots": ("chooses the GPU a job runs on", {"for_job", "check_claimed_gpu"}),
    "score_ahead": ("chooses which process scores a checkpoint, by the key it stores beside the arrays unchanged",
                    {"Pool", "LocksUnavailable", "clear", "key_of", "save"}),
    "job_log": ("sends a job's messages to its log file", {"logging_to"}),
    "time_limit": ("decides where a training stops for its SLURM time limit and resumes, not what it computes",
                   {"for_job"}),
    "provenance": ("computes these digests when the workflow is planned", set()),
}

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEFINITIONS = _FUNCTIONS + (ast.ClassDef,)


def script_digest(script: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of what the workflow script ``script`` can run (module docstring)."""
    digest = hashlib.sha256()
    for name, code in sorted(script_units(script).items()):
        digest.update(name.encode() + b"\0" + code.encode() + b"\0")
    return digest.hexdigest()[:16]


def script_modules(script: str | Path) -> list[str]:
    """The names of the units in ``script``'s digest: ``script``, package modules (``curvature``),
    stage modules' top-level statements (``stages.score``) and steps (``stages.score.average``)."""
    return sorted(script_units(script))


def script_units(script: str | Path) -> dict[str, str]:
    """Unit name -> normalized syntax tree of every piece of code the workflow script ``script`` can run."""
    tree = ast.parse(Path(script).read_text(), filename=str(script))
    units = {"script": normalized(tree)}
    modules, steps = _script_imports(tree)
    modules.add("__init__")
    if steps:
        units["stages"] = _module_code(f"{_STAGES}/__init__")
    for stage, functions in steps.items():
        module = _parse(f"{_STAGES}/{stage}")
        preamble = [node for node in module.body if not isinstance(node, _DEFINITIONS)]
        units[f"stages.{stage}"] = _dump(ast.Module(body=preamble, type_ignores=[]))
        modules |= set().union(*(_imports(node, level=2) for node in preamble))
        for name in _reached_definitions(module, functions, stage):
            definition = next(node for node in module.body if isinstance(node, _DEFINITIONS) and node.name == name)
            units[f"stages.{stage}.{name}"] = _dump(definition)
            modules |= _imports(definition, level=2)
    for name in _closure(modules):
        units[name] = _module_code(name)
    return units


def normalized(node: ast.AST) -> str:
    """The syntax tree of ``node`` without docstrings, line numbers or formatting, as text (the
    docstrings are taken out of ``node`` itself)."""
    return _dump(_without_docstrings(node))


def _without_docstrings(node: ast.AST) -> ast.AST:
    for child in ast.walk(node):
        if isinstance(child, (ast.Module,) + _DEFINITIONS) and child.body and _is_docstring(child.body[0]):
            child.body = child.body[1:] or [ast.Pass()]
    return node


def _dump(node: ast.AST) -> str:
    return ast.dump(node, include_attributes=False)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _script_imports(tree: ast.Module) -> tuple[set[str], dict[str, set[str]]]:
    """(package modules the script imports, {stage module: the steps it names})."""
    modules, stage_aliases, steps = set(), {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != _PACKAGE:
                continue
            if parts[1:] == [_STAGES]:
                stage_aliases.update({a.asname or a.name: a.name for a in node.names})
            elif parts[1:2] == [_STAGES]:
                steps.setdefault(parts[2], set()).update(a.name for a in node.names)
            elif len(parts) > 1:
                modules.add(parts[1])
            else:
                if _STAGES in {a.name for a in node.names}:
                    raise ValueError("a script names its stage module: from memorization_curvature.stages import X")
                modules.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(_PACKAGE + "."):
                    modules.add(alias.name.split(".")[1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in stage_aliases:
            steps.setdefault(stage_aliases[node.value.id], set()).add(node.attr)
    for alias, stage in stage_aliases.items():
        if stage not in steps:
            raise ValueError(f"the script imports stages.{stage} but calls none of its steps")
    return modules - set(OUTSIDE_RESULTS), steps


def _reached_definitions(module: ast.Module, names: set[str], stage: str) -> set[str]:
    """``names``, the module's functions and classes its top-level statements use (they run for every
    step: an alias, a decorator applied by assignment), and those these use, transitively. Every name
    a definition mentions counts, local or not (a default argument, a parameter named like a helper):
    a step may reach more than it runs, never less."""
    definitions: dict[str, ast.AST] = {}
    for node in module.body:
        if isinstance(node, _DEFINITIONS):
            if node.name in definitions:
                raise ValueError(f"stages/{stage}.py defines {node.name} twice; the digest would read the first")
            definitions[node.name] = node
    unknown = names - set(definitions)
    if unknown:
        raise ValueError(f"stages/{stage}.py defines no {sorted(unknown)}")
    preamble = [node for node in module.body if not isinstance(node, _DEFINITIONS)]
    reached, pending = set(), list(names) + [n for node in preamble for n in _names(node) if n in definitions]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending += [n for n in _names(definitions[name]) if n in definitions]
    return reached


def _names(node: ast.AST) -> set[str]:
    """Every name ``node`` mentions (decorators, default arguments and annotations included)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _closure(modules: set[str]) -> set[str]:
    """``modules`` and every package module they import, transitively (``__init__``: module level only)."""
    found, pending = set(), list(modules)
    while pending:
        name = pending.pop()
        if name in found or name in OUTSIDE_RESULTS:
            continue
        found.add(name)
        pending += _module_imports(name)
    return found


@functools.cache
def _module_imports(name: str) -> frozenset[str]:
    """The package modules ``name`` imports (``__init__``: at module level only)."""
    tree = _parse(name)
    if name == "__init__":
        return frozenset(set().union(*(_imports(node) for node in tree.body if not isinstance(node, _DEFINITIONS))))
    return frozenset(_imports(tree))


def _imports(node: ast.AST, level: int = 1) -> set[str]:
    """Package modules imported anywhere under ``node``, relative (at ``level``: 1 in the package, 2 in
    :mod:`.stages`) or absolute."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.ImportFrom):
            if child.level == level:
                found.update([child.module.split(".")[0]] if child.module else [a.name for a in child.names])
            elif child.level == 0 and child.module and child.module.split(".")[0] == "importlib":
                raise ValueError(f"from {child.module} import ...: a digest follows only imports of the package's "
                                 "modules by name")
            elif child.level == 0 and child.module and child.module.split(".")[0] == _PACKAGE:
                parts = child.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in child.names])
            elif child.level:
                raise ValueError(f"unexpected relative import (level {child.level}) of {child.module!r}")
        elif isinstance(child, ast.Import):
            if any(a.name in (_PACKAGE, "importlib") or a.name.startswith("importlib.") for a in child.names):
                raise ValueError(f"import {', '.join(a.name for a in child.names)}: a digest follows only imports "
                                 "of the package's modules by name (from . import x, from .x import y)")
            found.update(a.name.split(".")[1] for a in child.names if a.name.startswith(_PACKAGE + "."))
        elif isinstance(child, ast.Name) and child.id == "__import__":
            raise ValueError("__import__: a digest follows only imports of the package's modules by name")
    if _STAGES in found:
        raise ValueError("a package module imports the stages: only scripts call steps")
    return found


def _module_path(name: str) -> Path:
    path = _PACKAGE_DIR / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"no module {name!r} in {_PACKAGE_DIR}")
    return path


@functools.cache
def _parse(name: str) -> ast.Module:
    path = _module_path(name)
    return _without_docstrings(ast.parse(path.read_text(), filename=str(path)))


@functools.cache
def _module_code(name: str) -> str:
    return _dump(_parse(name))
