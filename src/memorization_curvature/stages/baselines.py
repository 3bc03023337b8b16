"""Steps of rules/baselines.smk: the peer methods on the same run, and one comparison table."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .. import io

log = logging.getLogger(__name__)


def history_baselines(labels_path: str, history_path: str, output: str, *, methods: Sequence[str],
                      el2n_epoch: int) -> None:
    """The peer methods computed from the per-epoch statistics of the training run."""
    from .. import baselines

    history = io.load_npz(history_path)
    epochs = len(history["loss"])
    scores = baselines.history_scores(history, methods, el2n_epoch=min(el2n_epoch, epochs))
    table = pd.DataFrame({"index": pd.read_csv(labels_path)["index"], **scores})
    io.save_csv(output, table)
    log.info("history-based methods %s over %d epochs", list(methods), epochs)


def crossval_probabilities(data_path: str, labels_path: str, output: str, *, folds: int, seed: int, recipe: dict,
                           device: str, threads: int, placement: str = "auto", loader_workers: int = 2,
                           code: str = "", time_limit=None) -> None:
    """Out-of-sample softmax probabilities (N, K) of every training sample from k-fold training on the
    given labels, each fold's model trained with the run's ``recipe`` on the other folds. Resumable after
    every epoch of every fold (``code``, ``time_limit``: as for :func:`memorization_curvature.stages.train.train`)."""
    import torch

    from .. import baselines, batches, data, models, resume, training

    torch.set_num_threads(threads)
    prepared = data.load_prepared(data_path)
    given = torch.tensor(pd.read_csv(labels_path)["given_label"].to_numpy())
    loading = {"placement": placement, "workers": loader_workers}
    fold = baselines.fold_assignment(given.numpy(), folds, seed)
    probs = np.zeros((len(given), prepared.num_classes))
    dev = training.resolve_device(device)
    progress = resume.Progress(resume.folder_for(output), resume.fingerprint(
        {"recipe": recipe, "folds": folds, "seed": seed, "device": device}, [data_path, labels_path], code), time_limit)
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        name = f"fold{f}"
        if (finished := progress.finished(name)) is not None:
            probs[held] = finished["probs"].numpy()
            continue
        torch.manual_seed(seed * 1000 + f)
        model, _ = models.for_data(recipe["model"], prepared)
        config = training.TrainConfig.from_recipe(recipe, seed * 1000 + f)
        training.train_subset(
            model, prepared, given, np.flatnonzero(fold != f), config, device=dev, **loading,
            resume=progress.resumed(name), test_epochs=[config.epochs],  # its test accuracy: a log line
            on_state=lambda state, name=name, last=f == folds - 1: progress.epoch_done(
                name, state, more=not last or state["epoch"] < config.epochs))
        held_out = batches.DeviceImages(batches.ImageSet.of(prepared, "train").subset(held), dev, **loading)
        probs[held] = torch.softmax(training.predict_logits(model, held_out, **training.eval_lane(dev, config)),
                                    1).double().numpy()
        progress.finish(name, {"probs": torch.from_numpy(probs[held])})
        log.info("fold %d/%d: trained on %d, predicted %d held-out samples", f + 1, folds, len(given) - len(held),
                 len(held))
    io.save_npz(output, probs=probs, fold=fold)
    progress.clear()


def confident_learning(labels_path: str, probs_path: str, output: str) -> None:
    from .. import baselines

    labels = pd.read_csv(labels_path)
    probs = io.load_npz(probs_path)["probs"]
    given = labels["given_label"].to_numpy()
    score, flagged = baselines.confident_learning(given, probs)
    io.save_csv(output, pd.DataFrame({"index": labels["index"], "confident_learning": score,
                                      "self_confidence": baselines.self_confidence(given, probs)}))
    log.info("cleanlab's find_label_issues flags %d of %d given labels (%d of them corrupted)", flagged.sum(),
             len(flagged), (flagged & labels["corrupted"].to_numpy(bool)).sum())


def ssft(data_path: str, labels_path: str, output: str, *, seed: int, recipe: dict, device: str, threads: int,
         placement: str = "auto", loader_workers: int = 2, code: str = "", time_limit=None) -> None:
    """SSFT (Maini et al. 2022), both halves: train on one half, fine-tune on the other, and record when
    each first-half sample is first misclassified during fine-tuning. Resumable after every epoch of
    its four trainings (``code``, ``time_limit``: as for :func:`memorization_curvature.stages.train.train`)."""
    import torch

    from .. import baselines, batches, data, models, resume, training

    torch.set_num_threads(threads)
    prepared = data.load_prepared(data_path)
    given = torch.tensor(pd.read_csv(labels_path)["given_label"].to_numpy())
    images = batches.ImageSet.of(prepared, "train")
    loading = {"placement": placement, "workers": loader_workers}
    half = baselines.fold_assignment(given.numpy(), 2, seed)
    epochs = recipe["epochs"]
    first_forgotten = np.full(len(given), epochs + 1)
    dev = training.resolve_device(device)
    progress = resume.Progress(resume.folder_for(output), resume.fingerprint(
        {"recipe": recipe, "seed": seed, "device": device}, [data_path, labels_path], code), time_limit)
    for first in (0, 1):
        learn, finetune = np.flatnonzero(half == first), np.flatnonzero(half != first)
        learning, finetuning = f"half{first}_learn", f"half{first}_finetune"
        if (finished := progress.finished(finetuning)) is not None:
            first_forgotten[learn] = finished["first_forgotten"].numpy()
            continue
        torch.manual_seed(seed * 1000 + 10 + first)
        model, _ = models.for_data(recipe["model"], prepared)
        if (learned_model := progress.finished(learning)) is None:
            config = training.TrainConfig.from_recipe(recipe, seed * 1000 + 10 + first)
            training.train_subset(
                model, prepared, given, learn, config, device=dev, **loading, resume=progress.resumed(learning),
                on_state=lambda state, name=learning: progress.epoch_done(name, state, more=True),
                test_epochs=[config.epochs])  # its test accuracy: a log line
            # a copy: the live weights go on to be fine-tuned
            progress.finish(learning, {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                                       "torch_rng": torch.get_rng_state()})
        else:
            model.load_state_dict(learned_model["model"])
            torch.set_rng_state(learned_model["torch_rng"])
        learned = batches.DeviceImages(images.subset(learn), dev, **loading)
        # fine-tuning draws its own order from the run's seed (no model built, no global reseeding)
        config = training.TrainConfig.from_recipe(recipe, seed * 1000 + 20 + first)
        lane = training.eval_lane(dev, config)  # the forgetting pass in training's fast lane on CUDA

        def record(epoch, net, metrics, *_, learn=learn, learned=learned, lane=lane):
            wrong = training.predict_logits(net, learned, **lane).argmax(1).numpy() != given[learn].numpy()
            newly = wrong & (first_forgotten[learn] > epochs)
            first_forgotten[learn[newly]] = epoch

        def keep(state, name=finetuning, learn=learn, last=first == 1):
            state["first_forgotten"] = torch.from_numpy(first_forgotten[learn].copy())
            progress.epoch_done(name, state, more=not last or state["epoch"] < epochs)

        if (resumed := progress.resumed(finetuning)) is not None:
            first_forgotten[learn] = resumed["first_forgotten"].numpy()
        training.train_subset(model, prepared, given, finetune, config, device=dev, on_epoch_end=record,
                              resume=resumed, on_state=keep, test_epochs=[config.epochs], **loading)
        progress.finish(finetuning, {"first_forgotten": torch.from_numpy(first_forgotten[learn].copy())})
        log.info("half %d: forgotten during fine-tuning: %d of %d", first, (first_forgotten[learn] <= epochs).sum(),
                 len(learn))
    io.save_csv(output, pd.DataFrame({"index": np.arange(len(given)),
                                      "ssft": baselines.ssft_score(first_forgotten, epochs)}))
    progress.clear()


def compare(table_path: str, baseline_paths: Sequence[str], output: str, metrics_path: str, *, roc: str,
            run_title: str) -> None:
    """Every method's score per sample, their AUROC, average precision and TPR at 5 % FPR, and ROC curves."""
    from .. import baselines, figures, metrics

    table = pd.read_csv(table_path)
    for path in baseline_paths:
        table = table.merge(pd.read_csv(path), on="index", how="left", validate="one_to_one")
    methods = ["curvature"] + [c for c in table.columns
                               if c not in ("index", "given_label", "true_label", "corrupted", "curvature", "rank")]
    corrupted = table["corrupted"].to_numpy(dtype=bool)
    rows = []
    for method in methods:
        result = metrics.detection_metrics(corrupted, table[method].to_numpy())
        defined = result["auroc"] is not None
        rows.append({"method": method, **result,
                     "tpr_at_5pct_fpr": baselines.tpr_at_fpr(corrupted, table[method].to_numpy()) if defined else None})
    io.save_csv(output, table.drop(columns=["rank"]))
    io.save_csv(metrics_path, pd.DataFrame(rows))
    figures.save_figure_set(roc, *figures.roc_methods(table, methods, title=run_title))
    log.info("method comparison:\n%s", pd.DataFrame(rows).to_string(index=False))


def methods_summary(metric_paths: Sequence[str], runs: Sequence[dict], *, table: str, markdown: str) -> None:
    """The paper-style table of AUROC mean +- std over seeds for every method, dataset and noise rate."""
    from .. import figures

    frames = [pd.read_csv(path).assign(**run) for path, run in zip(metric_paths, runs)]
    numbers, text = figures.methods_table(pd.concat(frames, ignore_index=True))
    io.save_csv(table, numbers)
    with io.atomic_path(markdown) as tmp:
        tmp.write_text(text)
