"""`curvature.checkpoints_per_job`: one process scores several checkpoints ahead of their jobs, with
the same jobs, outputs and scores as one job per checkpoint."""

import re
import shutil

import numpy as np
import pytest

from workflow_helpers import finished_workflow, snakemake, write_config

RUN = "results/digits/noise0.1/seed0"
LOGS = "logs/digits/noise0.1/seed0"
CONFIG = {"datasets": ["digits"], "noise_rates": [0.1], "seeds": [0], "train": {"epochs": 4},
          "curvature": {"n_probes": 2}, "figures": {"dynamics": True},
          "baselines": {"history": [], "confident_learning": False}, "duplicates": {"enabled": False}}
TARGET = f"{RUN}/curvature.csv"
EPOCHS = range(1, 5)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return finished_workflow(tmp_path_factory.mktemp("one_per_job"), CONFIG, TARGET)


def rescored(reference, folder, checkpoints_per_job, cores):
    """The reference run's checkpoints scored again with ``checkpoints_per_job``."""
    workdir = folder / f"ahead{checkpoints_per_job}"
    shutil.copytree(reference, workdir, symlinks=True)
    shutil.rmtree(workdir / RUN / "scores")
    (workdir / TARGET).unlink()
    for log in (workdir / LOGS).glob("score_epoch*.log"):
        log.unlink()
    write_config(workdir, {**CONFIG, "curvature": {**CONFIG["curvature"], "checkpoints_per_job": checkpoints_per_job}})
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
        assert sorted(ours.files) == sorted(theirs.files) == ["epoch", "test_curvature", "train_curvature"]
        for name in ours.files:
            assert np.array_equal(ours[name], theirs[name]), (epoch, name)
    assert (workdir / TARGET).read_text() == (reference / TARGET).read_text()


def test_one_job_scores_the_run_and_the_others_take_its_scores(reference, tmp_path):
    workdir = rescored(reference, tmp_path, 4, cores=1)
    assert_same_scores(workdir, reference)
    scored, took = scored_where(workdir)
    (first,) = {jobs[0] for jobs in scored.values()}  # one process scored all four checkpoints ...
    assert sorted(scored) == list(EPOCHS) and all(len(jobs) == 1 for jobs in scored.values())
    assert sorted(took) == sorted(f"score_epoch{e}" for e in EPOCHS if f"score_epoch{e}" != first)  # ... once each
    assert not (workdir / RUN / "scores/.ahead").exists()  # cleared once averaged
    # the setting changes speed only: back to one per job, nothing to do
    write_config(workdir, CONFIG)
    assert "Nothing to be done" in snakemake(workdir, TARGET, "-n")


def test_parallel_jobs_share_the_checkpoints_and_score_each_once(reference, tmp_path):
    workdir = rescored(reference, tmp_path, 2, cores=2)
    assert_same_scores(workdir, reference)
    scored, _ = scored_where(workdir)
    assert sorted(scored) == list(EPOCHS) and all(len(jobs) == 1 for jobs in scored.values()), scored
    assert all(sum(job == name for jobs in scored.values() for job in jobs) <= 2 for name in
               {job for jobs in scored.values() for job in jobs})  # at most 2 checkpoints per process
