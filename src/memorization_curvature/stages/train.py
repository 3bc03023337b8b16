"""The step of rules/train.smk: training on the given labels, one checkpoint per epoch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import io

log = logging.getLogger(__name__)


# Under the training pass, the statistics read off the network as it stands after an epoch, kept from
# the evaluation passes at ``eval_epochs`` (NaN at the other epochs): EL2N at its epoch, and the final
# loss and confidence (the last epoch). The others come from the training pass.
EVALUATED = {"el2n": "el2n", "loss": "eval_loss", "p_given": "eval_p_given"}


def train(
    data_path: str,
    labels_path: str,
    checkpoints: Sequence[str],
    metrics_path: str,
    history_path: str,
    *,
    recipe: dict,
    seed: int,
    device: str,
    threads: int,
    placement: str = "auto",
    loader_workers: int = 2,
    statistics: str = "eval_pass",
    eval_epochs: Sequence[int] = (),
    code: str = "",
    time_limit=None,
) -> None:
    """Train the dataset's ``recipe`` on the given labels and write ``checkpoints[e - 1]`` after epoch e,
    per-epoch metrics, and per-sample statistics of every epoch for the peer methods (arrays (E, N), see
    :func:`memorization_curvature.epoch_statistics.epoch_statistics`) with ``mean_probs`` (N, K), the
    softmax averaged over the epochs. ``statistics`` (`baselines.statistics`): the statistics of every
    epoch from an evaluation pass over the training set after it ("eval_pass") or from the logits of
    the training pass itself ("training_pass", no pass of its own), but what is read off the network as
    it stands (:data:`EVALUATED`: EL2N, the final loss and confidence): from evaluation passes at
    ``eval_epochs`` only, NaN at the other epochs (so that no method reads a value not measured). ``code``: the digest of the code that trains
    (the rule's), part of what a saved training state must match to be resumed; ``time_limit``: the
    SLURM job's (:mod:`memorization_curvature.time_limit`), asked after every epoch but the last."""
    import torch

    from .. import batches, checkpoints as checkpoint_files, data, epoch_statistics, models, resume, training

    config = training.TrainConfig.from_recipe(recipe, seed)
    if len(checkpoints) != config.epochs:
        raise ValueError(f"{len(checkpoints)} checkpoint paths for {config.epochs} epochs")
    torch.set_num_threads(threads)
    prepared = data.load_prepared(data_path)
    labels = pd.read_csv(labels_path)
    model_name = recipe["model"]
    torch.manual_seed(seed)
    model, model_kwargs = models.for_data(model_name, prepared)
    dev = training.resolve_device(device)
    log.info("training %s for %d epochs on %s, %d threads; per-sample statistics from the %s%s", model_name,
             config.epochs, dev, threads, statistics.replace("_", " "),
             f" (EL2N from an evaluation pass after epoch(s) {sorted(eval_epochs)})" if statistics == "training_pass"
             and eval_epochs else "")
    rows: list[dict] = []
    history: dict[str, list[np.ndarray]] = {}
    given = labels["given_label"].to_numpy()
    progress = resume.Progress(
        Path(metrics_path).parent / ".train_resume",
        resume.fingerprint({"model": model_name, "config": config.__dict__, "device": device,
                            "statistics": statistics, "eval_epochs": sorted(eval_epochs)},
                           [data_path, labels_path], code),
        time_limit,
    )
    # softmax of every epoch's evaluation pass over the training set, summed: the suggested labels
    probs_sum = np.zeros((len(given), prepared.num_classes))
    state = progress.resumed("training")
    if state is not None:
        progress.restore_checkpoints(checkpoints)
        rows = state["rows"]
        for recorded in progress.recorded("training"):
            for key, values in recorded.items():
                history.setdefault(key, []).append(values.numpy())
        probs_sum = state["probs_sum"].numpy()

    def on_epoch_end(epoch: int, net, epoch_metrics: dict, train_logits, eval_logits) -> None:
        io.save_torch(checkpoints[epoch - 1], checkpoint_files.checkpoint(model_name, model_kwargs, net, epoch))
        rows.append(epoch_metrics)
        statistics_of_epoch = epoch_statistics.epoch_statistics(train_logits.numpy(), given)
        if statistics == "training_pass":  # what needs the network as it stands: from the evaluation passes
            evaluated = (None if eval_logits is None else
                         epoch_statistics.epoch_statistics(eval_logits.numpy(), given))
            for key, name in EVALUATED.items():
                statistics_of_epoch[name] = np.full(len(given), np.nan) if evaluated is None else evaluated[key]
        for key, values in statistics_of_epoch.items():
            history.setdefault(key, []).append(values)
        probs_sum[:] += epoch_statistics.softmax(train_logits.numpy())

    def on_state(training_state: dict) -> None:
        epoch = training_state["epoch"]
        training_state.update(rows=rows, probs_sum=torch.from_numpy(probs_sum.copy()))
        progress.epoch_done("training", training_state, more=epoch < config.epochs, checkpoint=checkpoints[epoch - 1],
                            recorded={key: torch.from_numpy(values[-1]) for key, values in history.items()})

    training.train(
        model,
        batches.ImageSet.of(prepared, "train"),
        torch.tensor(labels["given_label"].to_numpy()),
        batches.ImageSet.of(prepared, "test"),
        torch.from_numpy(prepared.test_labels),
        config,
        device=dev,
        placement=placement,
        workers=loader_workers,
        on_epoch_end=on_epoch_end,
        corrupted=torch.tensor(labels["corrupted"].to_numpy(dtype=bool)),
        resume=state,
        on_state=on_state,
        statistics=statistics,
        eval_epochs=set(eval_epochs),
    )
    io.save_csv(metrics_path, pd.DataFrame(rows))
    io.save_npz(history_path, **{key: np.stack(values) for key, values in history.items()},
                mean_probs=probs_sum / len(rows))
    progress.clear()
