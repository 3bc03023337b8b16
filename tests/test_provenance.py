import pytest

from memorization_curvature import provenance


def test_digest_follows_the_source(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", tmp_path)
    (tmp_path / "curvature.py").write_text("x = 1\n")
    (tmp_path / "training.py").write_text("y = 1\n")
    before = provenance.source_digest("curvature", "training")
    assert provenance.source_digest("training", "curvature") == before  # order does not matter
    (tmp_path / "curvature.py").write_text("x = 2\n")
    assert provenance.source_digest("curvature", "training") != before
    with pytest.raises(ValueError, match="nope"):
        provenance.source_digest("nope")


def test_rules_depend_on_different_code():
    assert provenance.source_digest("curvature") != provenance.source_digest("training")


def test_a_script_runs_the_modules_its_stage_imports(tmp_path, monkeypatch):
    # a made-up package: stages imports heavy modules inside the functions that need them
    package = tmp_path / "memorization_curvature"
    package.mkdir()
    files = {
        "__init__.py": "def __getattr__(name):\n    from .public import api\n    return api\n",
        "stages.py": "from . import light\n\n"
                     "def one():\n    from . import heavy\n    return _helper()\n\n"
                     "def _helper():\n    from .helped import f\n    return f()\n\n"
                     "def other(_helper=None):\n    from . import unrelated\n    one = 1\n    return one\n\n"
                     "class Worker:\n    def run(self):\n        from . import classy\n        return _helper()\n\n"
                     "def with_class():\n    return Worker().run()\n",
        "light.py": "def g():\n    from . import lazy\n",
        "heavy.py": "from .deep import h\n",
        **{f"{name}.py": "" for name in ("helped", "lazy", "deep", "unrelated", "public", "classy")},
    }
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", package)
    provenance._parse.cache_clear()
    script = tmp_path / "run_one.py"
    script.write_text("from memorization_curvature import stages\nstages.one()\n")
    try:
        assert provenance.script_modules(script) == ["__init__", "deep", "heavy", "helped", "lazy", "light", "stages"]
        # `other` names `one` and `_helper` only as local variables: it calls neither
        script.write_text("from memorization_curvature import stages\nstages.other()\n")
        assert provenance.script_modules(script) == ["__init__", "lazy", "light", "stages", "unrelated"]
        before = provenance.script_digest(script)
        (package / "heavy.py").write_text("from .deep import h  # edited\n")
        assert provenance.script_digest(script) == before  # `other` never runs heavy.py
        (package / "unrelated.py").write_text("x = 1\n")
        assert provenance.script_digest(script) != before
        # a class the stage uses: its methods' imports and the functions they call; nobody else's
        script.write_text("from memorization_curvature import stages\nstages.with_class()\n")
        assert provenance.script_modules(script) == ["__init__", "classy", "helped", "lazy", "light", "stages"]
        script.write_text("from memorization_curvature import stages\nstages.missing()\n")
        with pytest.raises(ValueError, match="missing"):
            provenance.script_modules(script)
    finally:
        provenance._parse.cache_clear()


SCRIPTS = provenance._PACKAGE_DIR.parents[1] / "scripts"


def test_the_workflow_scripts_run_what_their_stages_import():
    modules = {script.stem: set(provenance.script_modules(script)) for script in SCRIPTS.glob("*.py")}
    assert {"curvature", "training", "batches", "models", "config"} <= modules["score"]
    assert "curvature" not in modules["train"] and {"training", "resume", "models"} <= modules["train"]
    assert {"data", "stages", "__init__"} <= modules["figure_grids"]  # load_prepared reads through data
    for light in ("corrupt", "average", "evaluate", "figure_grids", "figure_scores", "compare_methods",
                  "history_baselines", "confident_learning", "find_duplicates", "compare_memorization"):
        assert not modules[light] & {"curvature", "training", "batches", "models"}, light
