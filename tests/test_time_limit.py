"""Trainings across SLURM time limits: when a job stops, and that every training job resumes bit for bit.

The decisions are tested against scripted answers of SLURM's commands here; tests/test_slurm.py runs a
training through a real SLURM with a 1-minute limit.
"""

import logging
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from memorization_curvature import io, time_limit
from memorization_curvature.stages import baselines, cleaning, data, train
from memorization_curvature.stages import privacy as stage_privacy

JOB = "42"
RECORD = "JobId=42 JobName=abc Restarts=0 BatchFlag=1 Requeue=1 TimeLimit=00:01:00 Comment=rule_train_wildcards_x"


@pytest.mark.parametrize("text, seconds", [("1-02:03:04", 93784.0), ("2:03:04", 7384.0), ("03:04", 184.0),
                                           ("0:00", 0.0), ("INVALID", 0.0), ("UNLIMITED", None), ("NOT_SET", None)])
def test_slurm_times_are_read_in_every_form_squeue_writes(text, seconds):
    assert time_limit.seconds_of(text) == seconds


def test_a_time_in_another_form_is_refused_by_name():
    with pytest.raises(ValueError, match=r"'12h'.*\[D-\]\[HH:\]MM:SS"):
        time_limit.seconds_of("12h")


class Slurm:
    """SLURM's commands as a job sees them: its record, its time left on a clock the test moves."""

    def __init__(self, record=RECORD, limit=60.0, requeue_error=None):
        self.record, self.limit, self.requeue_error = record, limit, requeue_error
        self.now, self.commands, self.stopped_at = 0.0, [], None

    def run(self, command):
        self.commands.append(command)
        if command[:2] == ["scontrol", "-o"]:
            return subprocess.CompletedProcess(command, 0, self.record + "\n", "")
        if command[0] == "squeue":
            left = max(self.limit - self.now, 0)
            text = "INVALID" if left <= 0 else f"{int(left) // 60}:{int(left) % 60:02d}"
            return subprocess.CompletedProcess(command, 0, text + "\n", "")
        if command[:2] == ["scontrol", "requeue"]:
            if self.requeue_error:
                return subprocess.CompletedProcess(command, 1, "", self.requeue_error)
            return subprocess.CompletedProcess(command, 0, "", "")
        raise AssertionError(command)

    def sleep(self, seconds):
        self.now += seconds

    def limit_for(self, rule="train", **options):
        return time_limit.SlurmTimeLimit(JOB, rule, run=self.run, clock=lambda: self.now, sleep=self.sleep,
                                         **options)


class Stopped(Exception):
    """SLURM's SIGTERM to a requeued job."""


def test_the_job_requeues_itself_once_the_next_epoch_may_not_fit(caplog):
    slurm = Slurm()
    limit = slurm.limit_for()

    def stop(seconds):
        raise Stopped
    limit._sleep = stop
    assert "60 s left of its 60 s limit" in limit.describe() and "goes back in the queue" in limit.describe()
    caplog.set_level(logging.INFO, logger="memorization_curvature")
    stops = []
    for epoch in range(1, 10):
        slurm.now += 8.0  # epochs of 8 s: the next needs 1.5 * 8 + 20 = 32 s
        try:
            limit.after_epoch(f"epoch {epoch} of training")
        except Stopped:
            stops.append(epoch)
            break
    # after epoch 4 (32 s used) 28 s are left: too few
    assert stops == [4]
    assert slurm.commands[-1] == ["scontrol", "requeue", JOB]
    assert sum(c[0] == "squeue" for c in slurm.commands) == 2  # at the start and to confirm, not every epoch
    assert "after epoch 4 of training: the next epoch may not fit in the 28 s left" in caplog.text


@pytest.mark.parametrize("margin_s,stop", [(20, 4), (0, 7), (40, 2)])
def test_the_margin_decides_where_the_job_stops(margin_s, stop):
    slurm = Slurm()
    limit = slurm.limit_for(margin_s=margin_s)
    assert f"with a margin of {margin_s} s" in limit.describe()
    limit._sleep = lambda seconds: (_ for _ in ()).throw(Stopped())
    for epoch in range(1, 10):
        slurm.now += 8.0  # the next epoch needs 12 s plus the margin
        try:
            limit.after_epoch(f"epoch {epoch}")
        except Stopped:
            break
    assert epoch == stop  # the first after which fewer than 12 s + margin are left


def test_a_limit_raised_meanwhile_lets_the_job_go_on():
    slurm = Slurm()
    limit = slurm.limit_for()
    slurm.limit = 3600.0  # scontrol update TimeLimit=60 while it runs
    for epoch in range(1, 20):
        slurm.now += 8.0
        limit.after_epoch(f"epoch {epoch}")
    assert ["scontrol", "requeue", JOB] not in slurm.commands


def test_no_time_limit_never_stops():
    slurm = Slurm(record=RECORD.replace("TimeLimit=00:01:00", "TimeLimit=UNLIMITED"))
    limit = slurm.limit_for()
    assert "no time limit" in limit.describe()
    for epoch in range(1, 50):
        slurm.now += 1000.0
        limit.after_epoch(f"epoch {epoch}")
    assert not [c for c in slurm.commands if c[0] == "squeue" or c[1] == "requeue"]


@pytest.mark.parametrize("record, rule, words", [
    (RECORD.replace("Comment=rule_train_wildcards_x", "Comment=my_own_workflow"), "train",
     "not submitted for this train job alone (its comment is 'my_own_workflow'"),
    (RECORD, "crossval", "not submitted for this crossval job alone"),
    (RECORD.replace("Requeue=1", "Requeue=0"), "train", "requeueing disabled (Requeue=0"),
    (RECORD.replace("BatchFlag=1", "BatchFlag=0"), "train", "not a batch job"),
])
def test_a_job_that_cannot_go_back_in_the_queue_stops_with_its_reason(record, rule, words):
    slurm = Slurm(record=record)
    limit = slurm.limit_for(rule)
    assert words in limit.describe()
    with pytest.raises(time_limit.OutOfTime, match=r"stopping after epoch 4 of training: the next epoch .*"
                                                   r"The state after epoch 4 of training is kept") as stopped:
        for epoch in range(1, 10):
            slurm.now += 8.0
            limit.after_epoch(f"epoch {epoch} of training")
    assert words in str(stopped.value)
    assert ["scontrol", "requeue", JOB] not in slurm.commands


def test_a_refused_requeue_stops_the_job_with_slurms_words():
    slurm = Slurm(requeue_error="Requested operation is presently disabled")
    limit = slurm.limit_for()
    with pytest.raises(time_limit.OutOfTime, match="scontrol requeue 42` failed: Requested operation is presently"):
        for epoch in range(1, 10):
            slurm.now += 8.0
            limit.after_epoch(f"epoch {epoch}")


def test_a_requeued_job_that_is_never_stopped_says_so():
    slurm = Slurm()
    limit = slurm.limit_for()
    with pytest.raises(time_limit.OutOfTime, match="was requeued after epoch 4 but not stopped"):
        for epoch in range(1, 10):
            slurm.now += 8.0
            limit.after_epoch(f"epoch {epoch}")


def script_object(rule, margin_s=20):
    """The ``snakemake`` object Snakemake gives a job's script (with the validated config's margin)."""
    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, ResourceList, Snakemake, Wildcards

    config = {"train": {"time_limit_margin_s": margin_s}}
    return Snakemake(InputFiles(), OutputFiles(), Params(), Wildcards(), 1, ResourceList(), Log(), config, rule, 0)


def test_outside_slurm_there_is_no_limit(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with time_limit.for_job(script_object("train")) as limit:
        assert limit is None


def test_a_job_reads_its_rule_and_limit_from_slurms_commands(monkeypatch, tmp_path, caplog):
    for command, answer in (("scontrol", RECORD), ("squeue", "0:47")):
        (tmp_path / command).write_text(f"#!/bin/sh\necho '{answer}'\n")
        (tmp_path / command).chmod(0o755)
    monkeypatch.setenv("SLURM_JOB_ID", JOB)
    monkeypatch.setenv("PATH", str(tmp_path))
    caplog.set_level(logging.INFO, logger="memorization_curvature")
    with time_limit.for_job(script_object("train", margin_s=33)) as limit:
        assert limit.requeue_refused is None and limit.limit == 60.0 and limit.margin_s == 33
    with time_limit.for_job(script_object("ssft")) as limit:
        assert "not submitted for this ssft job alone" in limit.requeue_refused
    assert "SLURM job 42 (start 1) has 47 s left of its 60 s limit" in caplog.text


def test_a_limit_that_cannot_be_read_is_logged(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol
    caplog.set_level(logging.INFO, logger="memorization_curvature")
    with time_limit.for_job(script_object("train")) as limit:
        assert limit is None
    assert "cannot read the time limit of SLURM job 42" in caplog.text


# --- every training job, stopped before a limit again and again, ends as an uninterrupted one ---

RECIPE = dict(model="small_cnn", epochs=3, batch_size=64, lr=0.01, momentum=0.9, weight_decay=0.0,
              lr_milestones=[0.6, 0.8], lr_gamma=0.1, augment_shift=1, augment_flip=False, bf16=True)


class StopEvery:
    """A time limit that lets ``epochs`` epochs through per start, then stops the job as a refused
    requeue does."""

    def __init__(self, epochs):
        self.epochs, self.seen = epochs, []

    def after_epoch(self, done, seconds):
        assert seconds > 0  # the epoch's own time reaches the time limit
        self.seen.append(done)
        if len(self.seen) == self.epochs:
            raise time_limit.OutOfTime(f"stopping after {done}")


def starts_until_done(job, epochs_per_start):
    """Run ``job(time_limit)`` again after each stop, as SLURM's requeue does; the epochs of each start."""
    starts = []
    for _ in range(50):
        limit = StopEvery(epochs_per_start)
        try:
            job(limit)
            starts.append(limit.seen)
            return starts
        except time_limit.OutOfTime:
            starts.append(limit.seen)
    raise AssertionError("never finished")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    data.prepare("digits", folder / "data.npz", test_fraction=0.2, split_seed=0)
    data.corrupt(folder / "data.npz", folder / "labels.csv", rate=0.1, seed=0)
    # a cleaning that removed every seventh sample
    cleaning_table = pd.read_csv(folder / "labels.csv").assign(
        label=lambda t: t["given_label"], keep=lambda t: t["index"] % 7 != 0, flagged=lambda t: ~t["keep"],
        cleaned=lambda t: ~t["keep"])
    cleaning_table.to_csv(folder / "cleaned.csv", index=False)
    return folder


def both_ways(run, tmp_path, job, outputs, epochs_per_start):
    """The job's outputs uninterrupted and stopped every ``epochs_per_start`` epochs; the stops."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    whole.mkdir(), stopped.mkdir()
    job(whole, None)
    starts = starts_until_done(lambda limit: job(stopped, limit), epochs_per_start)
    for name in outputs:
        assert not list(stopped.glob(".*.resume")) and not (stopped / ".train_resume").exists()  # cleared
        if name.endswith(".npz"):
            a, b = io.load_npz(whole / name), io.load_npz(stopped / name)
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
                                                for k in a), name
        elif name.endswith(".pt"):
            a, b = torch.load(whole / name, weights_only=True), torch.load(stopped / name, weights_only=True)
            assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]), name
        elif name.endswith(".json"):
            assert io.load_json(whole / name) == io.load_json(stopped / name)
        else:
            pd.testing.assert_frame_equal(pd.read_csv(whole / name).drop(columns=["seconds", "eval_seconds"], errors="ignore"),
                                          pd.read_csv(stopped / name).drop(columns=["seconds", "eval_seconds"], errors="ignore"))
    return starts


def test_crossval_stopped_in_every_fold_gives_the_same_probabilities(run, tmp_path):
    def job(folder, limit):
        baselines.crossval_probabilities(run / "data.npz", run / "labels.csv", folder / "probs.npz", folds=3, seed=0,
                                         recipe=RECIPE, device="cpu", threads=1, code="c", time_limit=limit)
    starts = both_ways(run, tmp_path, job, ["probs.npz"], 2)
    # 3 folds of 3 epochs, asked after each epoch but the job's last: stops inside and between folds
    assert [s[-1] if s else None for s in starts] == ["epoch 2 of fold0", "epoch 1 of fold1", "epoch 3 of fold1",
                                                      "epoch 2 of fold2", None]


def test_ssft_stopped_in_each_of_its_trainings_gives_the_same_scores(run, tmp_path):
    def job(folder, limit):
        baselines.ssft(run / "data.npz", run / "labels.csv", folder / "ssft.csv", seed=0, recipe=RECIPE, device="cpu",
                       threads=1, code="c", time_limit=limit)
    starts = both_ways(run, tmp_path, job, ["ssft.csv"], 2)
    assert [s[-1] if s else None for s in starts] == ["epoch 2 of half0_learn", "epoch 1 of half0_finetune",
                                       "epoch 3 of half0_finetune", "epoch 2 of half1_learn",
                                       "epoch 1 of half1_finetune", "epoch 2 of half1_finetune"]


def test_retrain_stopped_gives_the_same_accuracies(run, tmp_path):
    def job(folder, limit):
        cleaning.retrain(run / "data.npz", run / "cleaned.csv", folder / "result.json", seed=0, recipe=RECIPE,
                         device="cpu", threads=1, code="c", time_limit=limit)
    starts = both_ways(run, tmp_path, job, ["result.json"], 1)
    assert starts == [["epoch 1 of training"], ["epoch 2 of training"], []]


def test_shadow_training_stopped_gives_the_same_weights(run, tmp_path):
    stage_privacy.shadow_masks(run / "labels.csv", tmp_path / "masks.npz", models=6, seed=0)

    def job(folder, limit):
        stage_privacy.shadow_train(run / "data.npz", run / "labels.csv", tmp_path / "masks.npz", folder / "model3.pt",
                                   model=3, seed=0, recipe=RECIPE, device="cpu", threads=1, code="c", time_limit=limit)
    starts = both_ways(run, tmp_path, job, ["model3.pt"], 1)
    assert starts == [["epoch 1 of training"], ["epoch 2 of training"], []]


@pytest.mark.parametrize("statistics", ["eval_pass", "training_pass"])
def test_training_stopped_after_every_epoch_gives_the_same_checkpoints(run, tmp_path, statistics):
    epochs = RECIPE["epochs"]

    def job(folder, limit):
        train.train(run / "data.npz", run / "labels.csv", [folder / f"epoch{e}.pt" for e in range(1, epochs + 1)],
                    folder / "metrics.csv", folder / "history.npz", recipe=RECIPE, seed=0, device="cpu", threads=1,
                    code="c", time_limit=limit, statistics=statistics,
                    eval_epochs=[2, epochs] if statistics == "training_pass" else [])
    starts = both_ways(run, tmp_path, job, [f"epoch{e}.pt" for e in range(1, epochs + 1)] + ["metrics.csv", "history.npz"], 1)
    assert len(starts) == epochs  # one epoch per start; the last start is not asked after its last epoch


def test_a_requeued_job_logs_after_the_log_of_its_earlier_starts(monkeypatch, tmp_path):
    from memorization_curvature.job_log import keep_for_next_start, log, logging_to

    path = tmp_path / "train.log"
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with logging_to(path, code="abc"):
        log.info("first start")
        keep_for_next_start()  # as time_limit does before it requeues the job
    path.unlink()  # Snakemake deletes a job's log before it runs the job again
    with logging_to(path, code="abc"):  # the same SLURM job, started again
        log.info("second start")
    text = path.read_text()
    assert text.index("first start") < text.index("SLURM job 42 starts again (requeued)") < text.index("second start")
    assert not list(tmp_path.glob(".*slurm-job*"))  # taken
    with logging_to(path, code="abc"):
        log.info("third start")
        keep_for_next_start()
    monkeypatch.setenv("SLURM_JOB_ID", "43")  # a new submission (a retry, a rerun) writes its own log
    with logging_to(path, code="abc"):
        log.info("a rerun")
    assert "first start" not in path.read_text() and "starts again" not in path.read_text()
    assert not list(tmp_path.glob(".*slurm-job*"))  # the other job's, stale, removed


def test_the_start_of_the_job_does_not_count_as_an_epoch():
    slurm = Slurm(limit=600.0)
    limit = slurm.limit_for()
    slurm.now += 300.0  # imports, data, model, then an epoch of 60 s
    limit.after_epoch("epoch 1", 60.0)
    assert limit.longest_epoch == 60.0  # 240 s left: another epoch fits
    assert ["scontrol", "requeue", JOB] not in slurm.commands
    for epoch in range(2, 4):
        slurm.now += 61.0 + epoch  # the epochs' own time and the state written after each
        limit.after_epoch(f"epoch {epoch}", 60.0)
    assert limit.longest_epoch == 64.0
    slurm = Slurm(limit=600.0)  # without the epoch's own time, the whole interval counts
    unknown = slurm.limit_for()
    slurm.now += 300.0
    with pytest.raises(time_limit.OutOfTime, match="was requeued after epoch 1"):
        unknown.after_epoch("epoch 1")


def test_ssft_keeps_the_learned_weights_not_the_fine_tuned_ones(run, tmp_path):
    stopped = StopEvery(RECIPE["epochs"] + 2)  # after fine-tuning's second epoch of the first half
    with pytest.raises(time_limit.OutOfTime, match="epoch 2 of half0_finetune"):
        baselines.ssft(run / "data.npz", run / "labels.csv", tmp_path / "ssft.csv", seed=0, recipe=RECIPE,
                       device="cpu", threads=1, code="c", time_limit=stopped)
    state = torch.load(tmp_path / ".ssft.csv.resume/state.pt", weights_only=True)
    learned, tuned = state["finished"]["half0_learn"]["model"], state["training"]["model"]
    assert any(not torch.equal(learned[k], tuned[k]) for k in learned if learned[k].is_floating_point())


def test_a_time_left_over_a_year_is_not_read_as_none_left():
    # squeue writes INVALID for a time left above 365 days as well as below zero (squeue's _print_secs)
    slurm = Slurm(record=RECORD.replace("TimeLimit=00:01:00", "TimeLimit=400-00:00:00 RunTime=00:00:10"),
                  limit=400 * 86400.0)
    slurm.run = lambda command, run=slurm.run: (subprocess.CompletedProcess(command, 0, "INVALID\n", "")
                                                 if command[0] == "squeue" else run(command))
    limit = slurm.limit_for()
    for epoch in range(1, 10):
        slurm.now += 8.0
        limit.after_epoch(f"epoch {epoch}")
    assert ["scontrol", "requeue", JOB] not in slurm.commands


def test_an_array_task_is_named_by_its_array_and_task(monkeypatch, tmp_path):
    # the array task started last has SLURM_JOB_ID equal to the array's id: that bare id names every task
    # of the array to scontrol and squeue (scontrol requeue 42 would requeue the whole array)
    calls = tmp_path / "calls"
    for command, answer in (("scontrol", RECORD), ("squeue", "0:47")):
        (tmp_path / command).write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\necho '{answer}'\n")
        (tmp_path / command).chmod(0o755)
    monkeypatch.setenv("SLURM_JOB_ID", JOB)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", JOB)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("PATH", str(tmp_path))
    with time_limit.for_job(script_object("train")) as limit:
        assert limit.job_id == "42_3"
    assert calls.read_text().split("\n")[:2] == ["-o show job 42_3", "-h -j 42_3 -o %L"]


def test_a_time_left_below_zero_is_none_left():
    slurm = Slurm(record=RECORD.replace("TimeLimit=00:01:00", "TimeLimit=00:01:00 RunTime=00:01:05"))
    limit = slurm.limit_for()
    slurm.now = 65.0
    assert limit._time_left() == 0.0
