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
