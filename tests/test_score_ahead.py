"""Scoring ahead of a job: which entries count, which checkpoints a process takes, and that a job whose
scores were made ahead finishes without importing torch."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from memorization_curvature import score_ahead

SETTINGS = {"n_probes": 2, "h": 0.001, "code": "abc"}


@pytest.fixture
def run(tmp_path):
    """A run's folders: checkpoints of epochs 1-4, data and labels files, no scores yet."""
    for epoch in range(1, 5):
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / f"checkpoints/epoch{epoch}.pt").write_bytes(b"weights %d" % epoch)
    (tmp_path / "scores").mkdir()
    for name in ("data.npz", "labels.csv"):
        (tmp_path / name).write_text(name)
    return tmp_path


def pool(run, epoch, settings=SETTINGS, epochs=(1, 2, 3, 4)):
    return score_ahead.Pool(run / f"checkpoints/epoch{epoch}.pt", run / f"scores/epoch{epoch}.npz", epochs,
                            [run / "data.npz", run / "labels.csv"], settings)


def test_an_entry_counts_only_for_the_same_files_and_settings(run):
    maker = pool(run, 1)
    maker.store(3, {"train_curvature": np.arange(3.0)}, maker.key(3))
    assert pool(run, 3).ready(3)
    assert not pool(run, 3, {**SETTINGS, "n_probes": 10}).ready(3)  # other parameters
    assert not pool(run, 3, {**SETTINGS, "code": "abd"}).ready(3)  # other code
    stat = (run / "checkpoints/epoch3.pt").stat()
    os.utime(run / "checkpoints/epoch3.pt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # retrained
    assert not pool(run, 3).ready(3)
    maker.store(3, {"train_curvature": np.arange(3.0)}, maker.key(3))
    (run / "labels.csv").write_text("other labels")  # labels corrupted again
    assert not pool(run, 3).ready(3)


def test_a_process_takes_the_next_free_checkpoints_then_the_earlier_ones(run):
    score_ahead.save(run / "scores/epoch4.npz", {"train_curvature": np.zeros(1)}, pool(run, 4).key(4))  # its job ran
    other = pool(run, 3)
    assert other.claim(1, wait=False)  # another process is on epoch 1
    taker = pool(run, 2)
    taken = list(taker.others())  # each one claimed by the taker
    assert taken == [3]  # not 4 (done), not 1 (claimed), not 2 (its own)
    assert not pool(run, 1).claim(3, wait=False)
    taker.release(3)
    other.release(1)
    assert list(pool(run, 2).others()) == [3, 1]
    assert pool(run, 2, epochs=(2, 4)).epochs == [2, 4]  # only the scored epochs (score_every)


def test_a_job_whose_scores_were_made_ahead_moves_them_without_torch(run):
    arrays = {"epoch": np.asarray(2), "train_curvature": np.arange(5.0)}
    job = textwrap.dedent(f"""
        import sys
        from memorization_curvature.stages import score
        score.score({str(run / "data.npz")!r}, {str(run / "labels.csv")!r}, {str(run / "checkpoints/epoch2.pt")!r},
                    {str(run / "scores/epoch2.npz")!r}, n_probes=2, h=0.001, form="paper", method="finite_difference",
                     seed=0, precision="float32", score_test=False, code="abc", checkpoints_per_job=4,
                     scored_epochs=[1, 2, 3, 4])
        print("torch" in sys.modules)
    """)
    # the settings the entry was made with, as stages.score passes them
    settings = dict(n_probes=2, h=0.001, form="paper", method="finite_difference", seed=0, precision="float32",
                    score_test=False, code="abc")
    maker = pool(run, 1, settings)
    maker.store(2, arrays, maker.key(2))
    out = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    moved = np.load(run / "scores/epoch2.npz")
    assert np.array_equal(moved["train_curvature"], arrays["train_curvature"])
    assert not pool(run, 2, settings).ready(2)


def test_averaging_clears_what_was_left(run):
    pool(run, 1).store(3, {"train_curvature": np.arange(3.0)}, pool(run, 1).key(3))
    assert pool(run, 1).claim(4, wait=False)
    assert score_ahead.clear([run / "scores/epoch1.npz"]) == 1
    assert not (run / "scores" / score_ahead.FOLDER).exists()


def test_a_file_not_named_by_epoch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="model.pt: expected a file named epoch<N>"):
        score_ahead.epoch_of(tmp_path / "model.pt")


def test_a_file_system_without_locks_is_named(run, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(score_ahead.LocksUnavailable, match="no file locks in .*scores/.ahead: No locks available"):
        pool(run, 1).claim(1, wait=False)


def scored_by(scored):
    """A stand-in for stages.score._Scorer's maker: scores a checkpoint of the `run` fixture by its epoch,
    recording the epochs it scored; a checkpoint that does not hold b"weights" fails as a corrupt one does."""
    from memorization_curvature import checkpoints

    def scorer(path):
        epoch = score_ahead.epoch_of(path)
        if not Path(path).read_bytes().startswith(b"weights"):
            raise checkpoints.CheckpointError(f"cannot load checkpoint of epoch {epoch} {path}: truncated")
        scored.append(epoch)
        return {"epoch": np.asarray(epoch), "train_curvature": np.full(3, float(epoch))}

    return lambda: scorer


def job(run, epoch, scored, budget, settings=SETTINGS):
    """The scoring job of ``epoch`` with ``checkpoints_per_job: budget``, Snakemake having removed its output."""
    from memorization_curvature.stages.score import _score_with_pool

    (run / f"scores/epoch{epoch}.npz").unlink(missing_ok=True)
    _score_with_pool(pool(run, epoch, settings), False, scored_by(scored), budget)


def test_outputs_made_with_other_settings_are_scored_ahead_on_a_rerun(run):
    scored = []
    for epoch in (1, 2, 3, 4):
        job(run, epoch, scored, budget=1)
    assert scored == [1, 2, 3, 4] and list(pool(run, 2).others()) == []  # every output is current
    rerun = {**SETTINGS, "n_probes": 10}
    scored.clear()
    job(run, 2, scored, budget=4, settings=rerun)  # the old outputs of 1, 3 and 4 are still there
    assert scored == [2, 3, 4, 1]
    for epoch in (3, 4, 1):
        assert (run / f"scores/epoch{epoch}.npz").exists()  # until its job starts
        scored.clear()
        job(run, epoch, scored, budget=4, settings=rerun)
        assert scored == []  # taken from .ahead
        assert np.array_equal(np.load(run / f"scores/epoch{epoch}.npz")["train_curvature"], np.full(3, float(epoch)))
    assert list(pool(run, 2, rerun).others()) == []


def test_a_failure_while_scoring_ahead_stops_scoring_ahead_and_fails_only_its_own_job(run, caplog):
    from memorization_curvature import checkpoints

    (run / "checkpoints/epoch3.pt").write_bytes(b"weig")  # truncated
    scored = []
    with caplog.at_level("INFO", logger="memorization_curvature"):
        job(run, 2, scored, budget=4)
    assert scored == [2]  # its own; 3 failed, and 4 was not tried
    assert np.array_equal(np.load(run / "scores/epoch2.npz")["train_curvature"], np.full(3, 2.0))
    (failure,) = [r for r in caplog.records if "ahead" in r.getMessage() and r.levelname == "WARNING"]
    assert "epoch 3" in failure.getMessage() and "cannot load checkpoint of epoch 3" in failure.getMessage()
    assert sorted(p.name for p in (run / "scores" / score_ahead.FOLDER).iterdir()) == [
        f"epoch{e}.lock" for e in (2, 3)]  # no entry, not even a partial one
    other = pool(run, 1)
    assert other.claim(3, wait=False)  # released
    other.release(3)
    with pytest.raises(checkpoints.CheckpointError, match="cannot load checkpoint of epoch 3"):
        job(run, 3, scored, budget=4)  # its own job fails, clearly
    job(run, 4, scored, budget=1)
    assert scored == [2, 4]


def test_the_key_of_an_entry_is_that_of_the_checkpoint_it_was_scored_from(run):
    scored = []
    make = scored_by(scored)

    def retrained_while_scored():
        def scorer(path):
            arrays = make()(path)
            stat = os.stat(path)  # a new checkpoint written meanwhile (same size, later mtime)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            return arrays
        return scorer

    from memorization_curvature.stages.score import _score_with_pool

    _score_with_pool(pool(run, 2), False, retrained_while_scored, 2)
    assert scored == [2, 3]
    assert not pool(run, 3).ready(3)  # made from the checkpoint before, so not for the one now
