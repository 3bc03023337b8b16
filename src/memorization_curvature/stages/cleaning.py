"""Steps of rules/cleaning.smk: suspects to review, then the run's recipe retrained after removing or
relabelling the top of each chosen ranking, against the noisy training and an oracle."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import io

log = logging.getLogger(__name__)


def suspects(table_path: str, methods_path: str, history_path: str, output: str, *, review_top: int | str,
             duplicates_path: str | None = None) -> None:
    """The training samples to review, highest averaged curvature first, with the label the network
    suggests, every method's rank and membership of a conflicting-duplicate pair."""
    from .. import suspects as review

    conflicting = None
    if duplicates_path:
        pairs = pd.read_csv(duplicates_path)
        conflicting = set(pairs["i"]) | set(pairs["j"])
    table = review.review_list(pd.read_csv(table_path), pd.read_csv(methods_path),
                               io.load_npz(history_path)["mean_probs"], review_top, conflicting)
    io.save_csv(output, table)
    log.info("%d suspects, %d of them corrupted", len(table), table["corrupted"].sum())


def clean_labels(labels_path: str, scores_path: str, history_path: str, output: str, *, method: str,
                 fraction: float | None, action: str | None) -> None:
    """The labels one cleaning retrains on: the top ``fraction`` of ``method``'s ranking removed or
    relabelled (``method`` oracle: the true labels; unchanged: the given labels, the control)."""
    from .. import cleaning, suspects as review

    labels = pd.read_csv(labels_path).sort_values("index", ignore_index=True)
    if method == "oracle":
        table = cleaning.oracle(labels)
    elif method == "unchanged":
        table = cleaning.unchanged(labels)
    else:
        scores = pd.read_csv(scores_path).sort_values("index", ignore_index=True)
        if not scores["index"].equals(labels["index"]):
            raise io.BadInput(f"{scores_path} does not list the samples of {labels_path}")
        suggested, _ = review.suggested_labels(io.load_npz(history_path)["mean_probs"])
        table = cleaning.cleaned(labels, scores[method].to_numpy(), fraction, action, suggested)
    io.save_csv(output, table)
    log.info("%s: %s", f"{method}, top {fraction:g}, {action}" if fraction is not None else method,
             cleaning.result_row(table))


def retrain(data_path: str, cleaned_path: str, output: str, *, seed: int, recipe: dict, device: str, threads: int,
            placement: str = "auto", loader_workers: int = 2, code: str = "", time_limit=None) -> None:
    """Train the run's ``recipe`` (same seed) on the cleaned labels; the test accuracy after each epoch.
    Resumable after every epoch (``code``, ``time_limit``: as for :func:`memorization_curvature.stages.train.train`)."""
    import torch

    from .. import cleaning, data, models, resume, training

    torch.set_num_threads(threads)
    prepared = data.load_prepared(data_path)
    table = pd.read_csv(cleaned_path).sort_values("index", ignore_index=True)
    torch.manual_seed(seed)
    model, _ = models.for_data(recipe["model"], prepared)
    config = training.TrainConfig.from_recipe(recipe, seed)
    progress = resume.Progress(resume.folder_for(output), resume.fingerprint(
        {"recipe": recipe, "seed": seed, "device": device}, [data_path, cleaned_path], code), time_limit)
    state = progress.resumed("training")
    accuracy = [] if state is None else list(state["test_acc"])

    def keep(training_state):
        training_state["test_acc"] = list(accuracy)
        progress.epoch_done("training", training_state, more=training_state["epoch"] < config.epochs)

    training.train_subset(model, prepared, torch.tensor(table["label"].to_numpy()),
                          np.flatnonzero(table["keep"].to_numpy(bool)), config,
                          device=training.resolve_device(device), placement=placement, workers=loader_workers,
                          on_epoch_end=lambda epoch, net, metrics, *_: accuracy.append(float(metrics["test_acc"])),
                          resume=state, on_state=keep)
    io.save_json(output, {**cleaning.result_row(table), "test_acc": accuracy[-1], "test_acc_per_epoch": accuracy})
    log.info("trained on %d samples: test accuracy %.4f", int(table["keep"].sum()), accuracy[-1])
    progress.clear()


def cleaning_table(labels_path: str, train_metrics_path: str, result_paths: Sequence[str], output: str, *,
                   cleanings: Sequence[dict], figure: str, run_title: str) -> None:
    """One row per cleaning (method, fraction, action), the run's own training on the noisy labels, the
    unchanged control and the oracle: samples flagged, changed, of which corrupted, trained on, test
    accuracy; and the figure."""
    from .. import figures

    noisy = pd.read_csv(train_metrics_path)
    rows = [{"method": "noisy labels", "fraction": 0.0, "fraction_spec": "", "action": "", "flagged": 0, "changed": 0,
             "changed_corrupted": 0, "trained_on": len(pd.read_csv(labels_path)),
             "test_acc": float(noisy["test_acc"].iloc[-1])}]
    for cleaning, path in zip(cleanings, result_paths):
        result = io.load_json(path)
        rows.append({**{k: cleaning[k] for k in ("method", "fraction", "fraction_spec", "action")},
                     **{k: result[k] for k in ("flagged", "changed", "changed_corrupted", "trained_on", "test_acc")}})
    table = pd.DataFrame(rows)
    io.save_csv(output, table)
    figures.save_figure_set(figure, *figures.cleaning_curves(table, title=run_title))
    log.info("cleaning:\n%s", table.to_string(index=False))


def cleaning_summary(table_paths: Sequence[str], runs: Sequence[dict], *, markdown: str, figure: str) -> None:
    """Test accuracy of every cleaning, the noisy training and the oracle, mean +- std over seeds (the
    numbers beside the figure, as its CSV)."""
    from .. import figures

    frames = [pd.read_csv(path).fillna({"fraction_spec": "", "action": ""}).assign(**run)
              for path, run in zip(table_paths, runs)]
    numbers, text = figures.cleaning_summary(pd.concat(frames, ignore_index=True))
    Path(markdown).write_text(text)
    figures.save_figure_set(figure, *figures.cleaning_summary_figure(numbers))
