"""Steps of rules/score.smk: the curvature of every sample at one checkpoint, then the mean over epochs."""

from __future__ import annotations

import functools
import logging
import time
from typing import Sequence

import numpy as np
import pandas as pd

from .. import io

log = logging.getLogger(__name__)


class _Scorer:
    """Loads what scoring needs once (torch, the dataset, the labels) and scores checkpoints with it."""

    def __init__(self, data_path, labels_path, *, n_probes, h, form, method, seed, precision, score_test,
                 batch_size, probes_per_pass, device, threads, placement, loader_workers):
        import torch

        from .. import batches, data, gpu_slots, training

        gpu_slots.check_claimed_gpu()  # a GPU slot CUDA cannot use fails here, before anything is scored
        torch.set_num_threads(threads)
        prepared = data.load_prepared(data_path)
        labels = pd.read_csv(labels_path)
        self.device = training.resolve_device(device)
        self.options = dict(n_probes=n_probes, h=h, seed=seed, device=self.device, form=form, method=method,
                            probes_per_pass=probes_per_pass, precision=precision)
        loading = dict(device=self.device, placement=placement, workers=loader_workers)
        self.sets = {"train_curvature": batches.LabelledBatches(
            batches.ImageSet.of(prepared, "train"), labels["given_label"].to_numpy(), batch_size, **loading)}
        if score_test:
            # test ids follow the training ids, so no test sample shares a training sample's probes
            self.sets["test_curvature"] = batches.LabelledBatches(
                batches.ImageSet.of(prepared, "test"), prepared.test_labels, batch_size, first_id=len(labels),
                **loading)
        self.description = (f"{len(labels)} samples on {self.device} (n={n_probes}, h={h:g}, {form} form, {method}, "
                            f"{precision}; batch {batch_size}, {probes_per_pass} probe(s) per pass)")

    def __call__(self, checkpoint_path) -> dict:
        from .. import checkpoints, curvature

        model, epoch = checkpoints.load_model(checkpoint_path)
        model.to(self.device)
        started = time.perf_counter()
        log.info("scoring %s at epoch %d", self.description, epoch)
        arrays = {"epoch": np.asarray(epoch)}
        for name, samples in self.sets.items():
            arrays[name] = curvature.curvature_scores(model, samples, **self.options).numpy()
        log.info("scored epoch %d in %.1fs", epoch, time.perf_counter() - started)
        return arrays


def score(
    data_path: str,
    labels_path: str,
    checkpoint_path: str,
    output: str,
    *,
    n_probes: int,
    h: float,
    form: str,
    method: str,
    seed: int,
    precision: str = "float32",
    score_test: bool = False,
    code: str = "",
    batch_size: int = 256,
    probes_per_pass: int = 1,
    device: str = "auto",
    threads: int = 1,
    placement: str = "auto",
    loader_workers: int = 2,
    checkpoints_per_job: int = 1,
    scored_epochs: Sequence[int] = (),
) -> None:
    """Curvature of every training sample with its given label (and, with ``score_test``, of every
    test sample with its label), for one checkpoint.

    The arguments after ``code`` change speed, memory or placement only, not the scores: the workflow
    reads them from the config inside the job (:func:`memorization_curvature.config.runtime_settings`).
    With ``checkpoints_per_job`` > 1 this process also scores up to that many checkpoints in all of the
    run (``scored_epochs``) ahead of their jobs, or takes its own scores from a process that did
    (:mod:`.score_ahead`). The scores are written with the key they were made with
    (``score_ahead.KEY``), which tells a later run, or another job, whether they are still current.
    """
    from .. import score_ahead  # light: no torch

    settings = dict(n_probes=n_probes, h=h, form=form, method=method, seed=seed, precision=precision,
                    score_test=score_test)
    make_scorer = functools.partial(_Scorer, data_path, labels_path, batch_size=batch_size,
                                    probes_per_pass=probes_per_pass, device=device, threads=threads,
                                    placement=placement, loader_workers=loader_workers, **settings)
    inputs, keyed = [data_path, labels_path], {**settings, "code": code}  # what the scores' key covers
    if checkpoints_per_job > 1:
        pool = score_ahead.Pool(checkpoint_path, output, scored_epochs, inputs, keyed)
        try:
            claimed = pool.claim(pool.own, wait=False)
        except score_ahead.LocksUnavailable as error:
            log.info("scoring only this checkpoint: %s", error)
        else:
            return _score_with_pool(pool, claimed, make_scorer, checkpoints_per_job)
    # the key first: from the files as they are before the checkpoint is loaded
    key = score_ahead.key_of(checkpoint_path, inputs, keyed)
    score_ahead.save(output, make_scorer()(checkpoint_path), key)


def _score_with_pool(pool, claimed: bool, make_scorer, budget: int) -> None:
    """Score the pool's own checkpoint (or take its scores made ahead), then up to ``budget`` - 1
    others of the run ahead of their jobs; ``claimed``: whether the own checkpoint is claimed yet.

    A failure while scoring another job's checkpoint (a corrupt checkpoint, out of memory) stops the
    scoring ahead, logged, and never fails this job: that job meets it again when it runs.
    """
    from .. import score_ahead

    scorer = None
    ahead = budget > 1  # whether to score ahead (still)

    def score_ahead_of_its_job(other: int) -> bool:
        """Score the claimed checkpoint of ``other`` into its entry; False, logged, on a failure."""
        nonlocal scorer
        try:
            key = pool.key(other)  # before loading the checkpoint
            scorer = scorer or make_scorer()
            pool.store(other, scorer(pool.checkpoint_of(other)), key)  # one file, written whole or not at all
        except Exception as error:  # noqa: BLE001 - whatever it is, the job of that checkpoint reports it
            log.warning("scoring ahead stopped: epoch %d failed (%s: %s); its own job will score it",
                        other, type(error).__name__, error)
            return False
        finally:
            pool.release(other)
        log.info("scored epoch %d ahead of its job", other)
        return True

    while not claimed and not pool.claim(pool.own, wait=False):
        # another process is scoring this checkpoint ahead: score another one meanwhile, or wait
        other = next(pool.others(), None) if ahead and budget > 1 else None
        if other is None:
            log.info("epoch %d is being scored by another process: waiting for it", pool.own)
            pool.claim(pool.own, wait=True)
            break
        ahead = score_ahead_of_its_job(other)
        budget -= 1
    try:
        if pool.ready(pool.own):
            pool.take(pool.own)
            log.info("epoch %d was scored ahead by another job: its scores moved into place", pool.own)
            return
        key = pool.key(pool.own)  # before loading the checkpoint
        scorer = scorer or make_scorer()
        score_ahead.save(pool.output, scorer(pool.checkpoint), key)
        budget -= 1
    finally:
        pool.release(pool.own)
    while ahead and budget > 0 and (other := next(pool.others(), None)) is not None:
        ahead = score_ahead_of_its_job(other)
        budget -= 1


def average(labels_path: str, score_paths: Sequence[str], output: str) -> None:
    """Mean curvature over the scored epochs, one row per training sample."""
    from .. import metrics, score_ahead

    per_epoch = {}
    for path in score_paths:
        arrays = io.load_npz(path)
        per_epoch[int(arrays["epoch"])] = arrays["train_curvature"]
    table = metrics.average_over_epochs(pd.read_csv(labels_path), per_epoch)
    io.save_csv(output, table)
    log.info("averaged curvature over epochs %s", sorted(per_epoch))
    if removed := score_ahead.clear(score_paths):
        log.info("removed %d score(s) made ahead for jobs that did not run", removed)
