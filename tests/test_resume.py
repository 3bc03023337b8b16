"""Training killed with SIGKILL mid-run resumes from its last complete epoch, bit for bit."""

import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_helpers import REPO, SHORT_CONFIG as CONFIG, SHORT_RUN as RUN, SHORT_TARGET as TARGET
from workflow_helpers import checkout_copy, short_run, snakemake, snakemake_command, write_config

EPOCHS = CONFIG["train"]["epochs"]


def run_killed_at(workdir, epoch):
    """Start the workflow, SIGKILL it (Snakemake and its jobs) once ``epoch`` is complete."""
    process = subprocess.Popen(
        snakemake_command(workdir, "--cores", "2", TARGET), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = workdir / RUN / ".train_resume" / f"epoch{epoch}.pt"
    deadline = time.time() + 300
    while not marker.exists():
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def tensors(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run trained and scored without a break (shared with other test files: read only)."""
    return short_run(tmp_path_factory)


def test_killed_training_resumes_and_gives_identical_results(reference, tmp_path):
    # without keeping the checkpoints once scored (train.keep_checkpoints: false), as on a full disk
    killed = tmp_path / "killed"
    killed.mkdir()
    write_config(killed, {**CONFIG, "train": {**CONFIG["train"], "keep_checkpoints": False}})

    kill_after = random.Random(0).randint(1, EPOCHS - 2)
    run_killed_at(killed, kill_after)
    kept = sorted(int(m.group(1)) for p in (killed / RUN / ".train_resume").glob("epoch*.pt")
                  if (m := re.match(r"epoch(\d+)\.pt", p.name)))
    assert kept and kept[-1] < EPOCHS and not (killed / RUN / "train_metrics.csv").exists()
    # the epoch's checkpoint is kept before its state is written: a kill in between leaves the
    # previous epoch's state, the last complete one
    saved = torch.load(killed / RUN / ".train_resume/state.pt", weights_only=True)["training"]["epoch"]
    assert saved in (kept[-1], kept[-1] - 1) and saved >= kill_after - 1
    # the checkpoints trained before the kill, to compare with the reference's
    before = {epoch: tensors(killed / RUN / f".train_resume/epoch{epoch}.pt") for epoch in range(1, saved + 1)}
    assert before
    snakemake(killed, "--unlock")
    snakemake(killed, "--rerun-incomplete", TARGET)

    log = (killed / "logs/digits/noise0.1/seed0/train.log").read_text()
    assert f"resuming after epoch {saved}" in log
    trained = [int(e) for e in re.findall(r"epoch (\d+)/\d+ loss", log)]
    assert trained == list(range(saved + 1, EPOCHS + 1))  # at most the interrupted epoch is repeated

    for epoch, weights in before.items():
        theirs = tensors(reference / RUN / f"checkpoints/epoch{epoch}.pt")
        assert weights.keys() == theirs.keys() and all(torch.equal(weights[k], theirs[k]) for k in weights), epoch
    assert not list((killed / RUN / "checkpoints").glob("*.pt"))  # deleted once scored
    for epoch in range(1, EPOCHS + 1):  # the scores of every checkpoint: the same weights, bit for bit
        sa, sb = np.load(reference / RUN / f"scores/epoch{epoch}.npz"), np.load(killed / RUN / f"scores/epoch{epoch}.npz")
        assert np.array_equal(sa["train_curvature"], sb["train_curvature"]), epoch
        assert np.array_equal(sa["test_curvature"], sb["test_curvature"]), epoch
    timing = ["seconds", "eval_seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(reference / RUN / "train_metrics.csv").drop(columns=timing),
                                  pd.read_csv(killed / RUN / "train_metrics.csv").drop(columns=timing))
    for name in ("loss", "margin", "p_given", "mean_probs"):  # mean_probs: summed across the kill
        assert np.array_equal(np.load(reference / RUN / "train_history.npz")[name],
                              np.load(killed / RUN / "train_history.npz")[name])
    assert pd.read_csv(reference / TARGET).equals(pd.read_csv(killed / TARGET))
    assert not (killed / RUN / ".train_resume").exists()  # cleared once training completed
    # without the checkpoints, rescoring them (here: more probes) needs the training again
    write_config(killed, {**CONFIG, "train": {**CONFIG["train"], "keep_checkpoints": False},
                          "curvature": {**CONFIG["curvature"], "n_probes": 3}})
    plan = snakemake(killed, "-n", TARGET)
    assert re.search(r"^\s*train\s+1$", plan, re.M) and re.search(rf"^\s*score\s+{EPOCHS}$", plan, re.M), plan


@pytest.fixture(scope="module")
def killed_after_epoch_2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("killed")
    write_config(folder, CONFIG)
    run_killed_at(folder, 2)
    snakemake(folder, "--unlock")
    return folder


@pytest.mark.parametrize("change", ["parameters", "inputs", "code"])
def test_state_from_other_parameters_inputs_or_code_is_not_used(killed_after_epoch_2, tmp_path, change):
    tmp_path = Path(shutil.copytree(killed_after_epoch_2, tmp_path / "run"))  # times kept: the state still fits
    snakefile = REPO / "Snakefile"
    if change == "parameters":
        write_config(tmp_path, {**CONFIG, "train": {**CONFIG["train"], "lr": 0.02}})
    elif change == "inputs":  # the labels rewritten (as a rerun of their job would): a new modification time
        labels = tmp_path / RUN / "labels.csv"
        labels.write_text(labels.read_text())
        os.utime(labels, ns=(labels.stat().st_atime_ns, labels.stat().st_mtime_ns + 10**9))
    else:  # the same workflow with an edited training module
        checkout = checkout_copy(tmp_path / "edited")
        (checkout / "src/memorization_curvature/training.py").write_text(
            (checkout / "src/memorization_curvature/training.py").read_text() + "\n_EDITED = 1\n")
        snakefile = checkout / "Snakefile"
    # run until the training logs its first epoch: from the state, or from the start (then stopped there)
    log = tmp_path / "logs/digits/noise0.1/seed0/train.log"
    log.unlink()  # the killed run's
    process = subprocess.Popen(
        snakemake_command(tmp_path, "--cores", "2", "--rerun-incomplete", f"{RUN}/train_metrics.csv",
                          snakefile=snakefile), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.time() + 300
    while not (log.exists() and re.search(r"epoch \d+/\d+ loss", log.read_text())):
        assert process.poll() is None and time.time() < deadline, "the training did not start"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    text = log.read_text()
    assert "ignoring training state" in text and "resuming" not in text
    assert re.findall(r"epoch (\d+)/\d+ loss", text)[0] == "1"


def test_corrupted_checkpoint_is_named_and_regenerating_it_recovers(reference, tmp_path):
    workdir = Path(shutil.copytree(reference, tmp_path / "run"))  # the finished reference run, with its metadata
    checkpoint = workdir / RUN / "checkpoints/epoch2.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated, as by a full disk
    # as if it broke before this checkpoint was scored
    (workdir / RUN / "scores/epoch2.npz").unlink()
    (workdir / TARGET).unlink()
    failed = subprocess.run(
        snakemake_command(workdir, "--cores", "2", TARGET), capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0
    assert "cannot load checkpoint of epoch 2" in failed.stdout + failed.stderr
    assert "checkpoints/epoch2.pt" in failed.stdout + failed.stderr
    checkpoint.unlink()  # as the message says: delete it and rerun
    snakemake(workdir, TARGET)
    assert np.array_equal(np.load(reference / RUN / "scores/epoch2.npz")["train_curvature"],
                          np.load(workdir / RUN / "scores/epoch2.npz")["train_curvature"])


def test_fingerprint_checks_inputs_without_reading_them(tmp_path, monkeypatch):
    import builtins

    from memorization_curvature import resume

    data, labels = tmp_path / "data.npz", tmp_path / "labels.csv"
    data.write_bytes(b"x" * 1000)
    labels.write_text("index,given_label\n0,1\n")
    params = {"model": "small_cnn", "config": {"lr": 0.01}}
    first = resume.fingerprint(params, [data, labels], "code1")

    def no_reading(*args, **kwargs):
        raise AssertionError(f"the fingerprint opened {args[0]}")

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", no_reading)
        assert resume.fingerprint(params, [data, labels], "code1") == first  # same inputs: same print
    # the job that makes an input rewrites it: another modification time, even at the same size
    stat = data.stat()
    data.write_bytes(b"y" * 1000)
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert resume.fingerprint(params, [data, labels], "code1") != first
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert resume.fingerprint(params, [data, labels], "code1") == first
    data.write_bytes(b"x" * 1001)  # another size
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert resume.fingerprint(params, [data, labels], "code1") != first
    assert resume.fingerprint(params, [labels], "code1") != first
    assert resume.fingerprint({**params, "config": {"lr": 0.02}}, [data, labels], "code1") != first
