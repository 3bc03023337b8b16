"""The Snakemake files pass Snakemake's own linter and snakefmt, as the workflows we follow do in CI."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_snakemake_lint_is_clean():
    # `snakemake --lint`, with only what `pip install -e .` installs
    result = subprocess.run([sys.executable, str(REPO / "tests/declared_only.py"), "", "--", "--lint",
                             "--snakefile", str(REPO / "Snakefile")], capture_output=True, text=True, cwd=REPO,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_leaves_the_workflow_unchanged():
    result = run("snakefmt", "--check", "Snakefile", "rules")
    assert result.returncode == 0, result.stdout + result.stderr
