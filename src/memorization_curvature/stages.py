"""One function per workflow step: read the step's input files, compute, write its outputs.

The scripts under ``scripts/`` only unpack Snakemake's object and call one of these; the
computations themselves live in the concern modules (data, corruption, models, training,
curvature, metrics, figures), which take and return arrays.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from . import baselines, corruption, data, io, metrics

# torch, matplotlib and the modules built on them (batches, curvature, models, training, figures) are
# imported inside the steps that need them: a light step (labels, tables) then starts in a fraction
# of the time, and no step without a network imports torch (tested).

log = logging.getLogger("memorization_curvature")


@contextlib.contextmanager
def logging_to(path: str | Path | None, *, code: str = "") -> Iterator[None]:
    """Send the package's log records (and any uncaught error) to ``path``, with timestamps.

    ``code`` is the digest of the package source the step runs (see :mod:`.provenance`); it is
    logged so that every output can be traced to the code that made it.
    """
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers: list[logging.Handler] = [logging.FileHandler(path, mode="w")]
    else:
        handlers = [logging.StreamHandler(sys.stderr)]
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    if code:
        log.info("package source digest %s", code)
    try:
        yield
    except io.BadInput as error:
        # a known problem with an input: one clear line, no traceback
        log.error("%s", error)
        raise SystemExit(f"error: {error}") from None
    except Exception:
        log.exception("step failed")
        raise
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


def load_prepared(path: str | Path) -> data.PreparedData:
    """A prepared dataset; its images are memory-mapped, read only where a step needs them."""
    return data.PreparedData.from_arrays(io.load_npz(path, mmap=("train_images", "test_images")))


def load_labels(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path)


def prepare(dataset: str, output: str, **options) -> None:
    """Load ``dataset`` (options: see :func:`memorization_curvature.data.prepare`) into one file.

    Image folders are decoded into scratch files beside ``output`` and streamed from there into it, so
    that a dataset larger than memory (ImageNet) never has to fit.
    """
    import tempfile

    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".prepare-", dir=Path(output).parent) as scratch:
        prepared = data.prepare(dataset, scratch=scratch, **options)
        io.save_npz(output, **prepared.to_arrays())
    log.info("%s: %d training and %d test images of shape %s, %d classes", dataset,
             len(prepared.train_labels), len(prepared.test_labels), prepared.image_shape, prepared.num_classes)


def corrupt(data_path: str, output: str, *, rate: float, seed: int) -> None:
    prepared = load_prepared(data_path)
    given, corrupted = corruption.corrupt_labels(prepared.train_labels, prepared.num_classes, rate, seed)
    table = pd.DataFrame({
        "index": np.arange(len(given)),
        "given_label": given,
        "true_label": prepared.train_labels,
        "corrupted": corrupted,
    })
    io.save_csv(output, table)
    log.info("corrupted %d of %d labels (rate %g, seed %d)", corrupted.sum(), len(given), rate, seed)


def inject_duplicates(data_path: str, output_data: str, output_labels: str, *, copies: int, seed: int) -> None:
    """A run's own training images with ``copies`` images replaced by relabelled copies of others."""
    import dataclasses
    import tempfile

    prepared = load_prepared(data_path)
    Path(output_data).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".inject-", dir=Path(output_data).parent) as scratch:
        # the new images go to a scratch file and stream from there into the output: never all in memory
        out = data.new_image_array(prepared.train_images.shape, scratch, "train")
        images, given, true, injected = corruption.inject_duplicates(
            prepared.train_images, prepared.train_labels, prepared.num_classes, copies, seed, out=out)
        io.save_npz(output_data, **dataclasses.replace(prepared, train_images=images).to_arrays())
    io.save_csv(output_labels, pd.DataFrame({"index": np.arange(len(given)), "given_label": given,
                                             "true_label": true, "corrupted": injected}))
    log.info("replaced %d of %d training images by copies of others with a conflicting label (seed %d)",
             copies, len(given), seed)


def _checkpoint(model_name: str, model_kwargs: dict, model, epoch: int) -> dict:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"model_name": model_name, "model_kwargs": model_kwargs, "epoch": epoch, "state_dict": state}


def train(
    data_path: str,
    labels_path: str,
    checkpoints: Sequence[str],
    metrics_path: str,
    history_path: str,
    *,
    model_name: str,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    lr_milestones: Sequence[float],
    lr_gamma: float,
    augment_shift: int,
    augment_flip: bool,
    bf16: bool,
    seed: int,
    device: str,
    threads: int,
    placement: str = "auto",
    loader_workers: int = 2,
    code: str = "",
) -> None:
    """Train on the given labels and write ``checkpoints[e - 1]`` after epoch e, per-epoch metrics, and
    per-sample statistics of every epoch for the peer methods (arrays (E, N), see
    :func:`memorization_curvature.baselines.epoch_statistics`) with ``mean_probs`` (N, K), the softmax
    averaged over the epochs' evaluation passes. ``code``: the digest of the code that
    trains (the rule's), part of what a saved training state must match to be resumed."""
    import torch

    from . import batches, models, resume, training

    if len(checkpoints) != epochs:
        raise ValueError(f"{len(checkpoints)} checkpoint paths for {epochs} epochs")
    torch.set_num_threads(threads)
    prepared = load_prepared(data_path)
    labels = load_labels(labels_path)
    config = training.TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
        lr_milestones=tuple(lr_milestones), lr_gamma=lr_gamma, augment_shift=augment_shift,
        augment_flip=augment_flip, seed=seed, bf16=bf16,
    )
    c, hgt, _ = prepared.image_shape
    model_kwargs = {"in_channels": c, "num_classes": prepared.num_classes, "image_size": hgt}
    torch.manual_seed(seed)
    model = models.build_model(model_name, **model_kwargs)
    dev = training.resolve_device(device)
    log.info("training %s for %d epochs on %s, %d threads", model_name, epochs, dev, threads)
    rows: list[dict] = []
    history: dict[str, list[np.ndarray]] = {}
    given = labels["given_label"].to_numpy()
    resume_folder = Path(metrics_path).parent / ".train_resume"
    expected = resume.fingerprint(
        {"model": model_name, "config": config.__dict__, "device": device},
        [data_path, labels_path],
        code,
    )
    # softmax of every epoch's evaluation pass over the training set, summed: the suggested labels
    probs_sum = np.zeros((len(given), prepared.num_classes))
    state = resume.load(resume_folder, expected, checkpoints)
    if state is not None:
        rows = state["rows"]
        history = {key: [v.numpy() for v in values] for key, values in state["history"].items()}
        probs_sum = state["probs_sum"].numpy()

    def on_epoch_end(epoch: int, net, epoch_metrics: dict, train_logits) -> None:
        io.save_torch(checkpoints[epoch - 1], _checkpoint(model_name, model_kwargs, net, epoch))
        rows.append(epoch_metrics)
        for key, values in baselines.epoch_statistics(train_logits.numpy(), given).items():
            history.setdefault(key, []).append(values)
        probs_sum[:] += baselines.softmax(train_logits.numpy())

    def on_state(training_state: dict) -> None:
        training_state.update(
            fingerprint=expected,
            rows=rows,
            history={key: [torch.from_numpy(v) for v in values] for key, values in history.items()},
            probs_sum=torch.from_numpy(probs_sum.copy()),
        )
        resume.save(resume_folder, training_state, checkpoints[training_state["epoch"] - 1])

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
    )
    io.save_csv(metrics_path, pd.DataFrame(rows))
    io.save_npz(history_path, **{key: np.stack(values) for key, values in history.items()},
                mean_probs=probs_sum / len(rows))
    resume.clear(resume_folder)


class CheckpointError(io.BadInput, RuntimeError):
    """A checkpoint file is truncated, corrupted or holds something other than weights."""


def load_checkpoint_model(path: str | Path):
    """(network, epoch) a checkpoint describes; a clear error names a broken file."""
    from . import models

    try:
        checkpoint = io.load_torch(path)
        model = models.build_model(checkpoint["model_name"], **checkpoint["model_kwargs"])
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as error:  # noqa: BLE001 - any failure means the file is unusable
        match = re.search(r"epoch(\d+)", Path(path).name)
        epoch = f" of epoch {match.group(1)}" if match else ""
        raise CheckpointError(f"cannot load checkpoint{epoch} {path}: {error}; delete it and rerun to "
                              "regenerate it") from error
    return model, int(checkpoint["epoch"])


class _Scorer:
    """Loads what scoring needs once (torch, the dataset, the labels) and scores checkpoints with it."""

    def __init__(self, data_path, labels_path, *, n_probes, h, form, method, seed, precision, score_test,
                 batch_size, probes_per_pass, device, threads, placement, loader_workers):
        import torch

        from . import batches, training

        torch.set_num_threads(threads)
        prepared = load_prepared(data_path)
        labels = load_labels(labels_path)
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
        from . import curvature

        model, epoch = load_checkpoint_model(checkpoint_path)
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
    (:mod:`.score_ahead`).
    """
    settings = dict(n_probes=n_probes, h=h, form=form, method=method, seed=seed, precision=precision,
                    score_test=score_test)
    make_scorer = functools.partial(_Scorer, data_path, labels_path, batch_size=batch_size,
                                    probes_per_pass=probes_per_pass, device=device, threads=threads,
                                    placement=placement, loader_workers=loader_workers, **settings)
    if checkpoints_per_job > 1:
        from . import score_ahead

        pool = score_ahead.Pool(checkpoint_path, output, scored_epochs, [data_path, labels_path],
                                {**settings, "code": code})
        try:
            claimed = pool.claim(pool.own, wait=False)
        except score_ahead.LocksUnavailable as error:
            log.info("scoring only this checkpoint: %s", error)
        else:
            return _score_with_pool(pool, claimed, make_scorer, checkpoints_per_job)
    io.save_npz(output, **make_scorer()(checkpoint_path))


def _score_with_pool(pool, claimed: bool, make_scorer, budget: int) -> None:
    """Score the pool's own checkpoint (or take its scores made ahead), then up to ``budget`` - 1
    others of the run ahead of their jobs; ``claimed``: whether the own checkpoint is claimed yet."""
    scorer = None

    def score_ahead(other: int) -> None:
        nonlocal scorer
        scorer = scorer or make_scorer()
        pool.store(other, scorer(pool.checkpoint_of(other)))
        pool.release(other)
        log.info("scored epoch %d ahead of its job", other)

    while not claimed and not pool.claim(pool.own, wait=False):
        # another process is scoring this checkpoint ahead: score another one meanwhile, or wait
        other = next(pool.others(), None) if budget > 1 else None
        if other is None:
            log.info("epoch %d is being scored by another process: waiting for it", pool.own)
            pool.claim(pool.own, wait=True)
            break
        score_ahead(other)
        budget -= 1
    try:
        if pool.ready(pool.own):
            pool.take(pool.own)
            log.info("epoch %d was scored ahead by another job: its scores moved into place", pool.own)
            return
        scorer = scorer or make_scorer()
        io.save_npz(pool.output, **scorer(pool.checkpoint))
        budget -= 1
    finally:
        pool.release(pool.own)
    while budget > 0 and (other := next(pool.others(), None)) is not None:
        score_ahead(other)
        budget -= 1


def average(labels_path: str, score_paths: Sequence[str], output: str) -> None:
    """Mean curvature over the scored epochs, one row per training sample."""
    per_epoch = {}
    for path in score_paths:
        arrays = io.load_npz(path)
        per_epoch[int(arrays["epoch"])] = arrays["train_curvature"]
    table = metrics.average_over_epochs(load_labels(labels_path), per_epoch)
    io.save_csv(output, table)
    log.info("averaged curvature over epochs %s", sorted(per_epoch))
    from . import score_ahead

    if removed := score_ahead.clear(score_paths):
        log.info("removed %d score(s) made ahead for jobs that did not run", removed)


def evaluate(
    table_path: str,
    train_metrics_path: str,
    output: str,
    *,
    dataset: str,
    variant: str,
    seed: int,
    epochs_scored: Sequence[int],
    history_path: str | None = None,
    review_top: int | str = 100,
) -> None:
    table = pd.read_csv(table_path)
    result = metrics.detection_metrics(table["corrupted"].to_numpy(), table["curvature"].to_numpy())
    history = pd.read_csv(train_metrics_path)
    result.update(
        dataset=dataset,
        variant=variant,
        noise_rate=float(variant[len("noise"):]) if variant.startswith("noise") else None,
        injected_duplicates=int(variant[len("dup"):]) if variant.startswith("dup") else None,
        seed=int(seed),
        n_train=int(len(table)),
        n_corrupted=int(table["corrupted"].sum()),
        epochs_scored=[int(e) for e in epochs_scored],
        final_test_acc=float(history["test_acc"].iloc[-1]),
    )
    if history_path:
        from . import cleaning

        # how often the suggested label of suspects.csv's samples is the true one (no peer ranks needed)
        result["suspects"] = cleaning.suggestion_accuracy(_suspects(table, table[["index"]], history_path, review_top))
    io.save_json(output, result)
    log.info("%s %s seed %d: curvature AUROC %s", dataset, variant, seed, result["auroc"])


def _suspects(table: pd.DataFrame, methods: pd.DataFrame, history_path: str, review_top: int | str,
              conflicting: set[int] | None = None) -> pd.DataFrame:
    from . import cleaning

    suggested, probability = cleaning.suggested_labels(io.load_npz(history_path)["mean_probs"])
    return cleaning.suspects(table, methods, suggested, probability, conflicting,
                             None if review_top == "all" else int(review_top))


def suspects(table_path: str, methods_path: str, history_path: str, output: str, *, review_top: int | str,
             duplicates_path: str | None = None) -> None:
    """The training samples to review, highest averaged curvature first, with the label the network
    suggests, every method's rank and membership of a conflicting-duplicate pair."""
    conflicting = None
    if duplicates_path:
        pairs = pd.read_csv(duplicates_path)
        conflicting = set(pairs["i"]) | set(pairs["j"])
    table = _suspects(pd.read_csv(table_path), pd.read_csv(methods_path), history_path, review_top, conflicting)
    io.save_csv(output, table)
    log.info("%d suspects, %d of them corrupted", len(table), table["corrupted"].sum())


def clean_labels(labels_path: str, scores_path: str, history_path: str, output: str, *, method: str,
                 fraction: float | None, action: str | None) -> None:
    """The labels one cleaning retrains on: the top ``fraction`` of ``method``'s ranking removed or
    relabelled (``method`` oracle: the true labels)."""
    from . import cleaning

    labels = load_labels(labels_path).sort_values("index", ignore_index=True)
    if method == "oracle":
        table = cleaning.oracle(labels)
    else:
        scores = pd.read_csv(scores_path).sort_values("index", ignore_index=True)
        if not scores["index"].equals(labels["index"]):
            raise io.BadInput(f"{scores_path} does not list the samples of {labels_path}")
        suggested, _ = cleaning.suggested_labels(io.load_npz(history_path)["mean_probs"])
        table = cleaning.cleaned(labels, scores[method].to_numpy(), fraction, action, suggested)
    io.save_csv(output, table)
    log.info("%s: %s", method if method == "oracle" else f"{method}, top {fraction:g}, {action}",
             cleaning.result_row(table))


def retrain(data_path: str, cleaned_path: str, output: str, *, seed: int, model_name: str, device: str,
            threads: int, placement: str = "auto", loader_workers: int = 2, **recipe) -> None:
    """Train the run's recipe (same seed) on the cleaned labels; the test accuracy after each epoch."""
    import torch

    from . import batches, cleaning, training

    torch.set_num_threads(threads)
    prepared = load_prepared(data_path)
    table = pd.read_csv(cleaned_path).sort_values("index", ignore_index=True)
    model, config = _fresh_training(prepared, model_name, seed, recipe)
    accuracy = []
    _train_on(prepared, batches.ImageSet.of(prepared, "train"), torch.tensor(table["label"].to_numpy()),
              np.flatnonzero(table["keep"].to_numpy(bool)), model, config, training.resolve_device(device),
              {"placement": placement, "workers": loader_workers},
              on_epoch_end=lambda epoch, net, metrics, logits: accuracy.append(float(metrics["test_acc"])))
    io.save_json(output, {**cleaning.result_row(table), "test_acc": accuracy[-1], "test_acc_per_epoch": accuracy})
    log.info("trained on %d samples: test accuracy %.4f", int(table["keep"].sum()), accuracy[-1])


def cleaning_table(train_metrics_path: str, result_paths: Sequence[str], output: str, *, cleanings: Sequence[dict],
                   figure: str, run_title: str) -> None:
    """One row per cleaning (method, fraction, action), the run's own training on the noisy labels and
    the oracle: samples changed, of which corrupted, test accuracy; and the figure."""
    from . import figures

    noisy = pd.read_csv(train_metrics_path)
    rows = [{"method": "noisy labels", "fraction": 0.0, "fraction_spec": "", "action": "", "changed": 0,
             "changed_corrupted": 0, "trained_on": None, "test_acc": float(noisy["test_acc"].iloc[-1])}]
    for cleaning, path in zip(cleanings, result_paths):
        result = io.load_json(path)
        rows.append({**{k: cleaning[k] for k in ("method", "fraction", "fraction_spec", "action")},
                     **{k: result[k] for k in ("changed", "changed_corrupted", "trained_on", "test_acc")}})
    table = pd.DataFrame(rows)
    io.save_csv(output, table)
    save_figure_set(figure, *figures.cleaning_curves(table, title=run_title))
    log.info("cleaning:\n%s", table.to_string(index=False))


def cleaning_summary(table_paths: Sequence[str], runs: Sequence[dict], *, markdown: str, figure: str) -> None:
    """Test accuracy of every cleaning, the noisy training and the oracle, mean +- std over seeds (the
    numbers beside the figure, as its CSV)."""
    from . import figures

    frames = [pd.read_csv(path).fillna({"fraction_spec": "", "action": ""}).assign(**run)
              for path, run in zip(table_paths, runs)]
    numbers, text = figures.cleaning_summary(pd.concat(frames, ignore_index=True))
    Path(markdown).write_text(text)
    save_figure_set(figure, *figures.cleaning_summary_figure(numbers))


def aggregate(metric_paths: Sequence[str], output: str) -> None:
    summary = metrics.summarize_runs([io.load_json(p) for p in metric_paths])
    io.save_csv(output, summary)
    log.info("summary of %d runs:\n%s", len(summary), summary.to_string(index=False))


def save_figure_set(png: str | Path, fig, numbers: pd.DataFrame) -> None:
    """``png``, a PDF beside it and the plotted numbers as CSV beside it (same stem)."""
    from . import figures

    png = Path(png)
    io.save_figure(png, fig)
    io.save_figure(png.with_suffix(".pdf"), fig)
    io.save_csv(png.with_suffix(".csv"), numbers)
    figures.plt.close(fig)


def plot_grids(data_path: str, table_path: str, *, top: str, bottom: str, per_class: str, top_k: int,
               run_title: str) -> None:
    """Highest- and lowest-curvature images, and the highest of each class."""
    from . import figures

    prepared = load_prepared(data_path)
    table = pd.read_csv(table_path)
    k = min(top_k, len(table))
    views = [
        (top, figures.highest(table, k), f"{run_title}: the {k} highest-curvature training images"),
        (bottom, figures.lowest(table, k), f"{run_title}: the {k} lowest-curvature training images"),
        (per_class, figures.highest_per_class(table), f"{run_title}: the highest-curvature image of each class"),
    ]
    for path, rows, title in views:
        fig, numbers = figures.image_grid(prepared.train_images, rows, prepared.class_names,
                                          pixel_max=prepared.pixel_max, title=title)
        save_figure_set(path, fig, numbers)


def plot_scores(table_path: str, metrics_path: str, *, histogram: str, roc: str, run_title: str) -> None:
    """Curvature of clean vs corrupted samples, and the ROC curve."""
    from . import figures

    table = pd.read_csv(table_path)
    auroc = io.load_json(metrics_path)["auroc"]
    save_figure_set(histogram, *figures.curvature_histogram(table, title=run_title))
    save_figure_set(roc, *figures.roc_figure(table, auroc, title=run_title))


def plot_dynamics(labels_path: str, score_paths: Sequence[str], *, output: str, run_title: str) -> None:
    """Curvature over training for clean and corrupted training samples and test samples."""
    from . import figures

    corrupted = load_labels(labels_path)["corrupted"].to_numpy(dtype=bool)
    groups: dict[str, dict[int, np.ndarray]] = {"clean training": {}, "corrupted training": {}, "test": {}}
    for path in score_paths:
        arrays = io.load_npz(path)
        epoch = int(arrays["epoch"])
        groups["clean training"][epoch] = arrays["train_curvature"][~corrupted]
        if corrupted.any():
            groups["corrupted training"][epoch] = arrays["train_curvature"][corrupted]
        if "test_curvature" in arrays:
            groups["test"][epoch] = arrays["test_curvature"]
    save_figure_set(output, *figures.dynamics_figure(groups, title=f"{run_title}: curvature during training"))


def summarize(summary_path: str, *, figure: str, table: str) -> None:
    """AUROC against noise rate across runs: figure (with CSV) and the paper-style Markdown table."""
    from . import figures

    summary = pd.read_csv(summary_path)
    fig, numbers = figures.auroc_by_noise(summary)
    save_figure_set(figure, fig, numbers)
    with io.atomic_path(table) as tmp:
        tmp.write_text(figures.auroc_markdown(numbers))


def history_baselines(labels_path: str, history_path: str, output: str, *, methods: Sequence[str],
                      el2n_epoch: int) -> None:
    """The peer methods computed from the per-epoch statistics of the training run."""
    history = io.load_npz(history_path)
    epochs = len(history["loss"])
    scores = baselines.history_scores(history, methods, el2n_epoch=min(el2n_epoch, epochs))
    table = pd.DataFrame({"index": load_labels(labels_path)["index"], **scores})
    io.save_csv(output, table)
    log.info("history-based methods %s over %d epochs", list(methods), epochs)


def _recipe_config(recipe: dict, seed: int):
    """The training config of ``recipe`` (the train rule's params) with its own ``seed``."""
    from . import training

    recipe = dict(recipe)
    return training.TrainConfig(seed=seed, lr_milestones=tuple(recipe.pop("lr_milestones")), **recipe)


def _fresh_training(prepared, model_name: str, seed: int, recipe: dict):
    """An untrained model (seeded) and the training config for ``recipe`` with the same seed."""
    import torch

    from . import models

    c, hgt, _ = prepared.image_shape
    torch.manual_seed(seed)
    model = models.build_model(model_name, in_channels=c, num_classes=prepared.num_classes, image_size=hgt)
    return model, _recipe_config(recipe, seed)


def _train_on(prepared, images, y, index, model, config, device, loading, on_epoch_end=None):
    """Train ``model`` on the training samples at ``index`` (``loading``: placement and workers)."""
    import torch

    from . import batches, training

    training.train(model, images.subset(index), y[index], batches.ImageSet.of(prepared, "test"),
                   torch.from_numpy(prepared.test_labels), config, device=device,
                   on_epoch_end=on_epoch_end or (lambda *args: None), **loading)


def crossval_probabilities(data_path: str, labels_path: str, output: str, *, folds: int, seed: int,
                           model_name: str, device: str, threads: int, placement: str = "auto",
                           loader_workers: int = 2, **recipe) -> None:
    """Out-of-sample softmax probabilities (N, K) of every training sample from k-fold training on the
    given labels, each fold's model trained with the run's recipe on the other folds."""
    import torch

    from . import batches, training

    torch.set_num_threads(threads)
    prepared = load_prepared(data_path)
    given = torch.tensor(load_labels(labels_path)["given_label"].to_numpy())
    images = batches.ImageSet.of(prepared, "train")
    loading = {"placement": placement, "workers": loader_workers}
    fold = baselines.fold_assignment(given.numpy(), folds, seed)
    probs = np.zeros((len(given), prepared.num_classes))
    dev = training.resolve_device(device)
    for f in range(folds):
        model, config = _fresh_training(prepared, model_name, seed * 1000 + f, dict(recipe))
        _train_on(prepared, images, given, np.flatnonzero(fold != f), model, config, dev, loading)
        held = np.flatnonzero(fold == f)
        held_out = batches.DeviceImages(images.subset(held), dev, **loading)
        probs[held] = torch.softmax(training.predict_logits(model, held_out), 1).double().numpy()
        log.info("fold %d/%d: trained on %d, predicted %d held-out samples", f + 1, folds, len(given) - len(held),
                 len(held))
    io.save_npz(output, probs=probs, fold=fold)


def confident_learning(labels_path: str, probs_path: str, output: str) -> None:
    labels = load_labels(labels_path)
    probs = io.load_npz(probs_path)["probs"]
    given = labels["given_label"].to_numpy()
    score, flagged = baselines.confident_learning(given, probs)
    io.save_csv(output, pd.DataFrame({"index": labels["index"], "confident_learning": score,
                                      "self_confidence": baselines.self_confidence(given, probs)}))
    log.info("cleanlab's find_label_issues flags %d of %d given labels (%d of them corrupted)", flagged.sum(),
             len(flagged), (flagged & labels["corrupted"].to_numpy(bool)).sum())


def ssft(data_path: str, labels_path: str, output: str, *, seed: int, model_name: str, device: str,
         threads: int, placement: str = "auto", loader_workers: int = 2, **recipe) -> None:
    """SSFT (Maini et al. 2022), both halves: train on one half, fine-tune on the other, and record when
    each first-half sample is first misclassified during fine-tuning."""
    import torch

    from . import batches, training

    torch.set_num_threads(threads)
    prepared = load_prepared(data_path)
    given = torch.tensor(load_labels(labels_path)["given_label"].to_numpy())
    images = batches.ImageSet.of(prepared, "train")
    loading = {"placement": placement, "workers": loader_workers}
    half = baselines.fold_assignment(given.numpy(), 2, seed)
    epochs = recipe["epochs"]
    first_forgotten = np.full(len(given), epochs + 1)
    dev = training.resolve_device(device)
    for first in (0, 1):
        learn, finetune = np.flatnonzero(half == first), np.flatnonzero(half != first)
        model, config = _fresh_training(prepared, model_name, seed * 1000 + 10 + first, dict(recipe))
        _train_on(prepared, images, given, learn, model, config, dev, loading)
        learned = batches.DeviceImages(images.subset(learn), dev, **loading)

        def record(epoch, net, metrics, logits, learn=learn, learned=learned):
            wrong = training.predict_logits(net, learned).argmax(1).numpy() != given[learn].numpy()
            newly = wrong & (first_forgotten[learn] > epochs)
            first_forgotten[learn[newly]] = epoch

        # fine-tuning draws its own order from the run's seed (no model built, no global reseeding)
        config = _recipe_config(recipe, seed * 1000 + 20 + first)
        _train_on(prepared, images, given, finetune, model, config, dev, loading, on_epoch_end=record)
        log.info("half %d: forgotten during fine-tuning: %d of %d", first, (first_forgotten[learn] <= epochs).sum(),
                 len(learn))
    io.save_csv(output, pd.DataFrame({"index": np.arange(len(given)),
                                      "ssft": baselines.ssft_score(first_forgotten, epochs)}))


def compare(table_path: str, baseline_paths: Sequence[str], output: str, metrics_path: str, *, roc: str,
            run_title: str) -> None:
    """Every method's score per sample, their AUROC, average precision and TPR at 5 % FPR, and ROC curves."""
    from . import figures

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
    save_figure_set(roc, *figures.roc_methods(table, methods, title=run_title))
    log.info("method comparison:\n%s", pd.DataFrame(rows).to_string(index=False))


def methods_summary(metric_paths: Sequence[str], runs: Sequence[dict], *, table: str, markdown: str) -> None:
    """The paper-style table of AUROC mean +- std over seeds for every method, dataset and noise rate."""
    from . import figures

    frames = [pd.read_csv(path).assign(**run) for path, run in zip(metric_paths, runs)]
    numbers, text = figures.methods_table(pd.concat(frames, ignore_index=True))
    io.save_csv(table, numbers)
    with io.atomic_path(markdown) as tmp:
        tmp.write_text(text)


def find_duplicates(data_path: str, table_path: str, output: str, summary_path: str, *, figure: str,
                    threshold: float, feature_size: int, top_k: Sequence[int], run_title: str) -> None:
    """Near-duplicate training pairs whose given labels differ, with both samples' curvature ranks; how
    many of the top-k curvature samples belong to one; and a figure of the most similar pairs."""
    from . import duplicates, figures

    prepared = load_prepared(data_path)
    table = pd.read_csv(table_path).sort_values("index", ignore_index=True)
    pairs = duplicates.similar_pairs(duplicates.image_features(prepared.train_images, feature_size), threshold)
    pairs = duplicates.conflicting_pairs(pairs, table["given_label"].to_numpy())
    ranks, true = table["rank"].to_numpy(), table["true_label"].to_numpy()
    pairs = pairs.assign(true_i=true[pairs["i"]], true_j=true[pairs["j"]], curvature_rank_i=ranks[pairs["i"]],
                         curvature_rank_j=ranks[pairs["j"]])
    io.save_csv(output, pairs)
    summary = pd.DataFrame([{"top_k": k, "fraction_in_conflicting_pairs": duplicates.top_k_fraction(pairs, ranks, k)}
                            for k in top_k])
    io.save_csv(summary_path, summary)
    log.info("%d near-duplicate pairs (cosine >= %g) with different labels;\n%s", len(pairs), threshold,
             summary.to_string(index=False))
    shown = pairs.head(50)
    order = np.ravel(np.column_stack([shown["i"], shown["j"]])) if len(shown) else np.array([], dtype=int)
    if len(order):
        fig, numbers = figures.image_grid(prepared.train_images, table.iloc[order], prepared.class_names,
                                          pixel_max=prepared.pixel_max,
                                          title=f"{run_title}: the {len(shown)} most similar pairs with different labels"
                                                " (side by side)")
    else:
        fig, numbers = figures.plt.subplots(figsize=(4, 1))[0], pd.DataFrame(columns=["position", "index"])
        fig.text(0.5, 0.5, f"no pair with cosine >= {threshold} and different labels", ha="center")
    save_figure_set(figure, fig, numbers)


def compare_memorization(table_path: str, score_file: str, output: str, *, figure: str, top_k: int,
                         run_title: str, images_replaced: bool) -> None:
    """Cosine similarity and Pearson correlation of averaged curvature with Feldman-Zhang memorization.

    ``images_replaced``: the run replaced some training images by copies of others (its ``corrupted``
    flag); the published scores describe the original images, so only the untouched ones are compared.
    """
    from . import figures, memorization

    table = pd.read_csv(table_path).sort_values("index", ignore_index=True)
    size = len(table)
    with np.load(score_file, allow_pickle=False) as arrays:
        missing = {"tr_mem", "tr_labels"} - set(arrays.files)
        if missing:
            raise memorization.ScoreFileMismatch(f"{score_file}: no array(s) {sorted(missing)}; expected tr_mem "
                                                 "and tr_labels")
        tr_mem, tr_labels = arrays["tr_mem"], arrays["tr_labels"]
    untouched = ~table["corrupted"].to_numpy(bool) if images_replaced else np.ones(size, bool)
    memorization.check_score_file(tr_mem, tr_labels, table["true_label"].to_numpy(), score_file, untouched)
    table, tr_mem = table[untouched], tr_mem[untouched]
    result = memorization.agreement(table["curvature"].to_numpy(), tr_mem, top_k)
    io.save_json(output, {**result, "replaced_images_left_out": int(size - untouched.sum()),
                          "score_file": str(score_file)})
    fig, ax = figures.plt.subplots(figsize=(4.5, 4))
    ax.scatter(tr_mem, table["curvature"], s=3, alpha=0.4)
    ax.set_yscale("log")
    ax.set_xlabel("Feldman-Zhang memorization")
    ax.set_ylabel("mean curvature")
    ax.set_title(f"{run_title}: cosine {result['cosine_all']:.3f} (all)", fontsize=9)
    fig.tight_layout()
    save_figure_set(figure, fig, pd.DataFrame({"index": table["index"], "memorization": tr_mem,
                                               "curvature": table["curvature"]}))
    log.info("agreement with %s: %s", score_file, result)
