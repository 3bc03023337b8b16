"""Scoring ahead of a job: which entries count, which checkpoints a process takes, and that a job whose
scores were made ahead finishes without importing torch."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from memorization_curvature import io, score_ahead

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
    maker.store(3, {"train_curvature": np.arange(3.0)})
    assert pool(run, 3).ready(3)
    assert not pool(run, 3, {**SETTINGS, "n_probes": 10}).ready(3)  # other parameters
    assert not pool(run, 3, {**SETTINGS, "code": "abd"}).ready(3)  # other code
    stat = (run / "checkpoints/epoch3.pt").stat()
    os.utime(run / "checkpoints/epoch3.pt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # retrained
    assert not pool(run, 3).ready(3)
    maker.store(3, {"train_curvature": np.arange(3.0)})
    (run / "labels.csv").write_text("other labels")  # labels corrupted again
    assert not pool(run, 3).ready(3)


def test_a_process_takes_the_next_free_checkpoints_then_the_earlier_ones(run):
    io.save_npz(run / "scores/epoch4.npz", train_curvature=np.zeros(1))  # its job has run
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
    pool(run, 1, settings).store(2, arrays)
    out = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    moved = np.load(run / "scores/epoch2.npz")
    assert np.array_equal(moved["train_curvature"], arrays["train_curvature"])
    assert not pool(run, 2, settings).ready(2)


def test_averaging_clears_what_was_left(run):
    pool(run, 1).store(3, {"train_curvature": np.arange(3.0)})
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
