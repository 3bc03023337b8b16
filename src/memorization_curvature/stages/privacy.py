"""Steps of rules/privacy.smk: how much a run's network gives away which samples it trained on."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .. import io

log = logging.getLogger(__name__)


def final_outputs(data_path: str, labels_path: str, checkpoint_path: str, output: str, *, threads: int,
                  device: str, batch_size: int, placement: str, loader_workers: int) -> None:
    """The loss and LiRA's logit-scaled confidence of every training sample (at its given label, the one
    it was trained on) and every test sample, by the final checkpoint in eval mode on the un-augmented
    input, in float32."""
    import torch

    from .. import batches, checkpoints, data, privacy, training

    torch.set_num_threads(threads)
    prepared = data.load_prepared(data_path)
    given = pd.read_csv(labels_path)["given_label"].to_numpy()
    device = training.resolve_device(device)
    model, epoch = checkpoints.load_model(checkpoint_path)
    model.to(device)
    arrays = {"epoch": np.asarray(epoch)}
    for which, labels in (("train", given), ("test", prepared.test_labels)):
        images = batches.DeviceImages(batches.ImageSet.of(prepared, which), device, placement, loader_workers)
        logits = training.predict_logits(model, images, batch_size).numpy()
        arrays[f"{which}_loss"] = privacy.cross_entropy(logits, labels)
        arrays[f"{which}_logit_confidence"] = privacy.logit_confidence(logits, labels)
    io.save_npz(output, **arrays)
    log.info("epoch %d: %d training and %d test samples evaluated on %s", epoch, len(given),
             len(prepared.test_labels), device)


def audit(labels_path: str, score_paths: Sequence[str], outputs_path: str, table: str, *, figure: str,
          run_title: str) -> None:
    """The free audit: members (the training samples) against non-members (the test samples) by each
    statistic of :data:`memorization_curvature.privacy.FREE_STATISTICS`; the table and the log-log ROC."""
    from .. import figures, privacy

    n_train = len(pd.read_csv(labels_path))
    scores = sorted((io.load_npz(path) for path in score_paths), key=lambda arrays: int(arrays["epoch"]))
    unscored = [int(arrays["epoch"]) for arrays in scores if "test_curvature" not in arrays]
    if unscored:
        raise io.BadInput(f"the scores of epoch(s) {unscored} hold no test-sample curvature: the audit needs it "
                          "(score rule parameter score_test); rerun their scoring")
    train = np.stack([arrays["train_curvature"] for arrays in scores])
    test = np.stack([arrays["test_curvature"] for arrays in scores])
    final = io.load_npz(outputs_path)
    if train.shape[1] != n_train or len(final["train_loss"]) != n_train or test.shape[1] != len(final["test_loss"]):
        raise io.BadInput(f"{n_train} training samples in {labels_path}, {train.shape[1]} in the scores and "
                          f"{len(final['train_loss'])} in {outputs_path}; {test.shape[1]} test samples in the scores "
                          f"and {len(final['test_loss'])} in {outputs_path}: files of different runs")
    if int(final["epoch"]) != int(scores[-1]["epoch"]):
        raise io.BadInput(f"{outputs_path} is of epoch {int(final['epoch'])}, the last scores of epoch "
                          f"{int(scores[-1]['epoch'])}: the audit compares the final checkpoint's")
    statistics = {
        "curvature_mean": (train.mean(axis=0), test.mean(axis=0)),
        "curvature_last": (train[-1], test[-1]),
        "loss_final": (final["train_loss"], final["test_loss"]),
        "logit_confidence_final": (final["train_logit_confidence"], final["test_logit_confidence"]),
    }
    result = privacy.free_audit(statistics)
    io.save_csv(table, result)
    curves = {name: privacy.roc(privacy.member_score(name, members), privacy.member_score(name, nonmembers))
              for name, (members, nonmembers) in statistics.items()}
    aurocs = dict(zip(result["statistic"], result["auroc"]))
    figures.save_figure_set(figure, *privacy.log_roc_figure(
        curves, aurocs, title=f"{run_title}: membership inference (training vs test samples)"))
    log.info("membership inference, %d members against %d non-members (curvature of epochs %d-%d, final "
             "checkpoint of epoch %d):\n%s", n_train, test.shape[1], int(scores[0]["epoch"]), int(scores[-1]["epoch"]),
             int(final["epoch"]), result.drop(columns="description").to_string(index=False))
