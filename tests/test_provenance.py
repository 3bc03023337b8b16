"""Code digests: what a script's digest covers, and that only behaviour changes it."""

import ast

import pytest

from memorization_curvature import provenance

REPO = provenance._PACKAGE_DIR.parents[1]
SCRIPTS = REPO / "scripts"


def test_comments_docstrings_and_formatting_do_not_count():
    source = 'def f(x):\n    """Doc."""\n    return x + 1  # why\n'
    same = '# a comment\ndef f(x):\n\n    """Another\n    docstring."""\n    return (x\n            + 1)\n'
    assert provenance.normalized(ast.parse(source)) == provenance.normalized(ast.parse(same))
    # a function whose body is only its docstring does what `pass` does
    assert provenance.normalized(ast.parse('def g():\n    """Doc."""\n')) == provenance.normalized(
        ast.parse("def g():\n    pass\n"))
    for changed in ("def f(x):\n    return x + 2\n", "def f(y):\n    return y + 1\n",
                    "def f(x):\n    'Doc.'\n    return x + 1\nZ = 1\n", "def f(x):\n    x\n    return x + 1\n"):
        assert provenance.normalized(ast.parse(changed)) != provenance.normalized(ast.parse(source)), changed


def forget():
    """Provenance reads each module once per process: forget what it read."""
    for cached in (provenance._parse, provenance._module_code, provenance._module_imports):
        cached.cache_clear()


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A made-up package: stage modules and concern modules, installed as the package provenance reads."""
    root = tmp_path / "memorization_curvature"
    (root / "stages").mkdir(parents=True)
    files = {
        "__init__.py": "from . import light\n\ndef __getattr__(name):\n    from .public import api\n    return api\n",
        "stages/__init__.py": '"""Nothing here."""\n',
        "stages/work.py": "from .. import io\n\n"
                          "def one():\n    from .. import heavy\n    return _helper()\n\n"
                          "def _helper():\n    from ..helped import f\n    return f()\n\n"
                          "def alone():\n    from .. import unrelated\n    return 1\n\n"
                          "def defaulted(post=_helper):\n    return post()\n\n"
                          "class Worker:\n    def run(self):\n        from .. import classy\n        return _helper()\n\n"
                          "def with_class():\n    return Worker().run()\n\n"
                          "def placed():\n    from .. import where\n    return where.gpu()\n",
        "stages/aliased.py": "def _quiet(f):\n    return f\n\n"
                             "def _post():\n    from .. import deep\n\n"
                             "def step():\n    return POST()\n\n"
                             "POST = _post\nstep = _quiet(step)\n",
        "stages/sibling.py": "def step():\n    from . import work\n",
        "stages/twice.py": "def step():\n    return 1\n\ndef step():\n    return 2\n",
        "stages/whole.py": "def step():\n    import memorization_curvature as package\n    return package.api\n",
        "stages/dynamic.py": "def step():\n    import importlib\n    return importlib.import_module('..deep', __package__)\n",
        "light.py": "", "io.py": "",
        "heavy.py": "from .deep import h\n\ndef later():\n    from . import lazy\n",
        "deep.py": "import memorization_curvature.deeper\n",
        "deeper.py": "from memorization_curvature import deepest\n",
        "where.py": "from . import unrelated\n",
        **{f"{name}.py": "" for name in ("helped", "lazy", "deepest", "unrelated", "public", "classy")},
    }
    for name, text in files.items():
        (root / name).write_text(text)
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", root)
    monkeypatch.setitem(provenance.OUTSIDE_RESULTS, "where", ("decides where", {"gpu"}))
    forget()
    yield root
    forget()


def script(tmp_path, text):
    path = tmp_path / "run.py"
    path.write_text(text)
    return path


def test_a_script_runs_its_steps_the_helpers_they_use_and_whole_imported_modules(package, tmp_path):
    run = script(tmp_path, "from memorization_curvature.stages import work\nwork.one()\n")
    # heavy.py whole, with what it imports anywhere (lazy) and transitively, by relative or absolute
    # imports (deep, deeper, deepest); public: only behind __init__'s lazy attribute
    assert provenance.script_modules(run) == [
        "__init__", "deep", "deeper", "deepest", "heavy", "helped", "io", "lazy", "light", "script", "stages",
        "stages.work", "stages.work._helper", "stages.work.one"]
    alone = script(tmp_path, "from memorization_curvature.stages.work import alone\nalone()\n")
    assert provenance.script_modules(alone) == ["__init__", "io", "light", "script", "stages", "stages.work",
                                                "stages.work.alone", "unrelated"]
    before = provenance.script_digest(alone)
    (package / "stages/work.py").write_text((package / "stages/work.py").read_text().replace(
        "return _helper()\n\ndef _helper", "return _helper() + 1\n\ndef _helper"))
    (package / "heavy.py").write_text("from .deep import h\nx = 2\n")
    forget()
    assert provenance.script_digest(alone) == before  # another step and a module `alone` never runs
    (package / "unrelated.py").write_text("x = 1\n")
    forget()
    assert provenance.script_digest(alone) != before
    # a class the step uses: its methods' imports and the functions they call; nobody else's
    run.write_text("from memorization_curvature.stages import work\nwork.with_class()\n")
    assert provenance.script_modules(run) == [
        "__init__", "classy", "helped", "io", "light", "script", "stages", "stages.work", "stages.work.Worker",
        "stages.work._helper", "stages.work.with_class"]


def test_every_name_a_step_mentions_counts(package, tmp_path):
    # a default argument (the name is also the parameter's) ...
    run = script(tmp_path, "from memorization_curvature.stages import work\nwork.defaulted()\n")
    assert {"stages.work._helper", "helped"} <= set(provenance.script_modules(run))
    # ... and what the module's top-level statements use: an alias, a decorator applied by assignment
    run = script(tmp_path, "from memorization_curvature.stages import aliased\naliased.step()\n")
    assert {"stages.aliased._post", "stages.aliased._quiet", "deep"} <= set(provenance.script_modules(run))


def test_modules_that_only_place_a_job_are_outside_the_digest(package, tmp_path):
    run = script(tmp_path, "from memorization_curvature.stages import work\nwork.placed()\n")
    # where.py and what only it imports (unrelated) are not in it
    assert "where" not in provenance.script_modules(run) and "unrelated" not in provenance.script_modules(run)
    before = provenance.script_digest(run)
    (package / "where.py").write_text("from . import unrelated\nGPU = 3\n")
    forget()
    assert provenance.script_digest(run) == before


@pytest.mark.parametrize("text,message", [
    ("from memorization_curvature.stages import work\nwork.missing()\n", "missing"),
    ("from memorization_curvature.stages import work\nprint(work)\n", "calls none of its steps"),
    ("from memorization_curvature.stages import sibling\nsibling.step()\n", "relative import"),
    ("from memorization_curvature.stages import twice\ntwice.step()\n", "twice"),
    ("from memorization_curvature.stages import whole\nwhole.step()\n", "import memorization_curvature"),
    ("from memorization_curvature.stages import dynamic\ndynamic.step()\n", "import importlib"),
])
def test_what_a_digest_cannot_follow_is_refused(package, tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        provenance.script_modules(script(tmp_path, text))


def modules_of(name):
    return set(provenance.script_modules(SCRIPTS / f"{name}.py"))


def test_the_workflow_scripts_run_what_their_steps_import():
    assert {"curvature", "difference", "training", "batches", "models", "checkpoints", "stages.score.score"} <= \
        modules_of("score")
    assert "stages.score.average" not in modules_of("score")  # the other step of the same rule file
    train = modules_of("train")
    assert "curvature" not in train and {"training", "resume", "models", "epoch_statistics"} <= train
    assert "baselines" not in train and "cleaning" not in train  # the peer methods' and cleaning code rerun no training
    assert "figures" not in modules_of("history_baselines") and "figures" in modules_of("compare_methods")
    assert "cleaning" not in modules_of("evaluate") and "suspects" in modules_of("evaluate")
    for light in ("corrupt", "average", "evaluate", "figure_grids", "figure_scores", "compare_methods",
                  "history_baselines", "confident_learning", "find_duplicates", "compare_memorization", "suspects",
                  "clean_labels", "cleaning_table"):
        assert not modules_of(light) & {"curvature", "training", "batches", "models"}, light
    for script_path in SCRIPTS.glob("*.py"):
        assert not set(provenance.script_modules(script_path)) & set(provenance.OUTSIDE_RESULTS), script_path


def used_names(tree, module):
    """Names the code in ``tree`` takes from the package module ``module`` (imported by name, or as
    attributes of the module imported whole, however it is imported)."""
    names, aliases = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] == module:
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            aliases |= {a.asname or a.name for a in node.names if a.name == module}
        elif isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name.split(".")[-1] == module}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
              and n.value.id in aliases}
    return names


def test_jobs_use_from_the_modules_outside_the_digests_only_what_places_them():
    # a result-changing function added to gpu_slots or config and called from a job would escape the
    # digests: only the names listed in OUTSIDE_RESULTS may be used
    package = provenance._PACKAGE_DIR
    sources = [*SCRIPTS.glob("*.py"), *package.glob("*.py"), *(package / "stages").glob("*.py")]
    for module, (_, allowed) in provenance.OUTSIDE_RESULTS.items():
        for path in sources:
            if path.stem in provenance.OUTSIDE_RESULTS:  # planning and placement code itself
                continue
            used = used_names(ast.parse(path.read_text()), module)
            assert used <= allowed, f"{path} uses {sorted(used - allowed)} of {module}"
