"""`curvature.checkpoints_per_job`: one process scores several checkpoints ahead of their jobs, with
the same jobs, outputs and scores as one job per checkpoint."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from memorization_curvature import score_ahead
from workflow_helpers import SHORT_CONFIG as CONFIG
from workflow_helpers import SHORT_RUN as RUN
from workflow_helpers import SHORT_TARGET as TARGET
from workflow_helpers import short_run, snakemake, snakemake_command, write_config

LOGS = "logs/digits/noise0.1/seed0"
EPOCHS = range(1, CONFIG["train"]["epochs"] + 1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A finished run scored one checkpoint per job (shared with other test files: read only)."""
    return short_run(tmp_path_factory)


@pytest.fixture(scope="module")
def more_probes(reference, tmp_path_factory):
    """The reference run scored again, one checkpoint per job, with more probes."""
    workdir = tmp_path_factory.mktemp("more_probes") / "run"
    shutil.copytree(reference, workdir, symlinks=True)
    write_config(workdir, with_curvature(n_probes=3))
    assert "rule train:" not in snakemake(workdir, TARGET)
    return workdir


def with_curvature(**settings):
    return {**CONFIG, "curvature": {**CONFIG["curvature"], **settings}}


def copied(reference, workdir):
    """A copy of the reference run without its scores and the logs of its scoring jobs."""
    shutil.copytree(reference, workdir, symlinks=True)
    shutil.rmtree(workdir / RUN / "scores")
    (workdir / TARGET).unlink()
    for log in (workdir / LOGS).glob("score_epoch*.log"):
        log.unlink()
    return workdir


def rescored(reference, folder, checkpoints_per_job, cores):
    """The reference run's checkpoints scored again with ``checkpoints_per_job``."""
    workdir = copied(reference, folder / f"ahead{checkpoints_per_job}")
    write_config(workdir, with_curvature(checkpoints_per_job=checkpoints_per_job))
    out = snakemake(workdir, TARGET, "--cores", str(cores))
    assert "rule train:" not in out
    return workdir


def scored_where(workdir):
    """epoch -> the jobs (log names) that scored it, and the jobs that took scores made ahead."""
    scored, took = {}, []
    for log in sorted((workdir / LOGS).glob("score_epoch*.log")):
        text = log.read_text()
        for epoch in re.findall(r"scored epoch (\d+) in ", text):
            scored.setdefault(int(epoch), []).append(log.stem)
        if "scored ahead by another job: its scores moved into place" in text:
            took.append(log.stem)
    return scored, took


def assert_same_scores(workdir, reference):
    for epoch in EPOCHS:
        ours, theirs = (np.load(w / RUN / f"scores/epoch{epoch}.npz") for w in (workdir, reference))
        assert score_ahead.KEY in ours.files  # with the key it was made with
        for name in ("epoch", "test_curvature", "train_curvature"):
            assert np.array_equal(ours[name], theirs[name]), (epoch, name)
    assert (workdir / TARGET).read_text() == (reference / TARGET).read_text()


def test_parallel_jobs_share_the_checkpoints_and_score_each_once(reference, tmp_path):
    workdir = rescored(reference, tmp_path, 2, cores=2)
    assert_same_scores(workdir, reference)
    scored, _ = scored_where(workdir)
    assert sorted(scored) == list(EPOCHS) and all(len(jobs) == 1 for jobs in scored.values()), scored
    assert all(sum(job == name for jobs in scored.values() for job in jobs) <= 2 for name in
               {job for jobs in scored.values() for job in jobs})  # at most 2 checkpoints per process


def test_one_job_scores_a_rerun_after_a_parameter_change_and_the_others_take_its_scores(reference, more_probes,
                                                                                          tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir, symlinks=True)  # a finished run
    for log in (workdir / LOGS).glob("score_epoch*.log"):
        log.unlink()
    assert all(score_ahead.KEY in np.load(workdir / RUN / f"scores/epoch{e}.npz").files for e in EPOCHS)
    (workdir / RUN / "scores/epoch3.npz").unlink()  # scored ahead with no old file, as well as over old ones
    write_config(workdir, with_curvature(n_probes=3, checkpoints_per_job=4))  # its old scores left in place
    assert "rule train:" not in snakemake(workdir, TARGET, "--cores", "1")
    assert_same_scores(workdir, more_probes)
    assert (more_probes / TARGET).read_text() != (reference / TARGET).read_text()
    scored, took = scored_where(workdir)
    (first,) = {jobs[0] for jobs in scored.values()}  # one process scored all four checkpoints again
    assert sorted(scored) == list(EPOCHS) and all(len(jobs) == 1 for jobs in scored.values())
    assert sorted(took) == sorted(f"score_epoch{e}" for e in EPOCHS if f"score_epoch{e}" != first)
    assert (workdir / LOGS / f"{first}.log").read_text().count("ahead of its job") == 3
    assert not (workdir / RUN / "scores/.ahead").exists()  # cleared once averaged
    # the setting changes speed only: back to one checkpoint per job, nothing to do
    write_config(workdir, with_curvature(n_probes=3))
    assert "Nothing to be done" in snakemake(workdir, TARGET, "-n")


def test_a_corrupt_later_checkpoint_fails_its_own_job_only(reference, tmp_path):
    workdir = copied(reference, tmp_path / "corrupt")
    checkpoint = workdir / RUN / "checkpoints/epoch3.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    write_config(workdir, with_curvature(checkpoints_per_job=4))
    # the job of epoch 1 scores epoch 2 ahead, fails on epoch 3 and stops there, and succeeds
    assert "rule train:" not in snakemake(workdir, f"{RUN}/scores/epoch1.npz", "--cores", "1")
    log = (workdir / LOGS / "score_epoch1.log").read_text()
    assert "scored epoch 2 ahead of its job" in log
    (failure,) = [line for line in log.splitlines() if "WARNING" in line]
    assert re.search(r"epoch 3 .*cannot load checkpoint of epoch 3", failure), failure
    assert "scored epoch 4" not in log and "ERROR" not in log
    assert sorted(p.name for p in (workdir / RUN / "scores/.ahead").glob("*.npz")) == ["epoch2.npz"]
    # the others finish; the corrupt checkpoint's own job fails with its clear message
    result = subprocess.run(snakemake_command(workdir, "--cores", "1", "--keep-going", TARGET),
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "cannot load checkpoint of epoch 3" in (workdir / LOGS / "score_epoch3.log").read_text()
    assert "moved into place" in (workdir / LOGS / "score_epoch2.log").read_text()
    for epoch in (1, 2, 4):
        ours, theirs = (np.load(w / RUN / f"scores/epoch{epoch}.npz") for w in (workdir, reference))
        for name in ("epoch", "test_curvature", "train_curvature"):
            assert np.array_equal(ours[name], theirs[name]), (epoch, name)
    assert not (workdir / RUN / "scores/epoch3.npz").exists()
