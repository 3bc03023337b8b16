"""One function per workflow step: read the step's input files, compute, write its outputs.

The scripts under ``scripts/`` only unpack Snakemake's object and call one of these; the
computations themselves live in the concern modules (data, corruption, models, training,
curvature, metrics, figures), which take and return arrays.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from . import corruption, data, figures, io, metrics

# torch, and the modules built on it (curvature, models, training), are imported inside the steps
# that need them: a light step (labels, tables, plots) then starts in a fraction of the time.

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
    except Exception:
        log.exception("step failed")
        raise
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


def load_prepared(path: str | Path) -> data.PreparedData:
    return data.PreparedData.from_arrays(io.load_npz(path))


def load_labels(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path)


def prepare(dataset: str, output: str, **options) -> None:
    """Load ``dataset`` (options: see :func:`memorization_curvature.data.prepare`) into one file."""
    prepared = data.prepare(dataset, **options)
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


def _checkpoint(model_name: str, model_kwargs: dict, model, epoch: int) -> dict:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"model_name": model_name, "model_kwargs": model_kwargs, "epoch": epoch, "state_dict": state}


def train(
    data_path: str,
    labels_path: str,
    checkpoints: Sequence[str],
    metrics_path: str,
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
) -> None:
    """Train on the given labels and write ``checkpoints[e - 1]`` after epoch e, plus per-epoch metrics."""
    import torch

    from . import models, training
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
    # the value a black (zero) pixel has after normalization, used to pad shifted images
    pad_value = torch.from_numpy(-prepared.mean / prepared.std)
    rows: list[dict] = []

    def on_epoch_end(epoch: int, net, epoch_metrics: dict) -> None:
        io.save_torch(checkpoints[epoch - 1], _checkpoint(model_name, model_kwargs, net, epoch))
        rows.append(epoch_metrics)

    training.train(
        model,
        data.normalize(prepared.train_images, prepared),
        torch.tensor(labels["given_label"].to_numpy()),
        data.normalize(prepared.test_images, prepared),
        torch.from_numpy(prepared.test_labels),
        config,
        pad_value=pad_value,
        device=dev,
        on_epoch_end=on_epoch_end,
        corrupted=torch.tensor(labels["corrupted"].to_numpy(dtype=bool)),
    )
    io.save_csv(metrics_path, pd.DataFrame(rows))


def load_checkpoint_model(path: str | Path):
    """(network, epoch) a checkpoint describes; a clear error names a broken file."""
    from . import models

    try:
        checkpoint = io.load_torch(path)
        model = models.build_model(checkpoint["model_name"], **checkpoint["model_kwargs"])
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as error:  # noqa: BLE001 - any failure means the file is unusable
        raise RuntimeError(f"cannot load checkpoint {path}: {error}; delete it and rerun to regenerate it") from error
    return model, int(checkpoint["epoch"])


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
    probes_per_pass: int,
    seed: int,
    batch_size: int,
    device: str,
    threads: int,
    score_test: bool = False,
) -> None:
    """Curvature of every training sample with its given label (and, with ``score_test``, of every
    test sample with its label), for one checkpoint."""
    import torch

    from . import curvature, training

    torch.set_num_threads(threads)
    prepared = load_prepared(data_path)
    labels = load_labels(labels_path)
    model, epoch = load_checkpoint_model(checkpoint_path)
    dev = training.resolve_device(device)
    model.to(dev)
    started = time.perf_counter()
    log.info("scoring %d samples at epoch %d on %s (n=%d, h=%g, %s form, %s)", len(labels), epoch, dev,
             n_probes, h, form, method)
    options = dict(n_probes=n_probes, h=h, seed=seed, batch_size=batch_size, device=dev, form=form,
                   method=method, probes_per_pass=probes_per_pass)
    arrays = {"epoch": np.asarray(epoch)}
    arrays["train_curvature"] = curvature.curvature_scores(
        model, data.normalize(prepared.train_images, prepared), torch.tensor(labels["given_label"].to_numpy()),
        **options,
    ).numpy()
    if score_test:
        # test ids follow the training ids, so no test sample shares a training sample's probes
        test_ids = torch.arange(len(labels), len(labels) + len(prepared.test_labels))
        arrays["test_curvature"] = curvature.curvature_scores(
            model, data.normalize(prepared.test_images, prepared), torch.from_numpy(prepared.test_labels),
            sample_ids=test_ids, **options,
        ).numpy()
    log.info("scored in %.1fs", time.perf_counter() - started)
    io.save_npz(output, **arrays)


def average(labels_path: str, score_paths: Sequence[str], output: str) -> None:
    """Mean curvature over the scored epochs, one row per training sample."""
    per_epoch = {}
    for path in score_paths:
        arrays = io.load_npz(path)
        per_epoch[int(arrays["epoch"])] = arrays["train_curvature"]
    table = metrics.average_over_epochs(load_labels(labels_path), per_epoch)
    io.save_csv(output, table)
    log.info("averaged curvature over epochs %s", sorted(per_epoch))


def evaluate(
    table_path: str,
    train_metrics_path: str,
    output: str,
    *,
    dataset: str,
    rate: float,
    seed: int,
    epochs_scored: Sequence[int],
) -> None:
    table = pd.read_csv(table_path)
    result = metrics.detection_metrics(table["corrupted"].to_numpy(), table["curvature"].to_numpy())
    history = pd.read_csv(train_metrics_path)
    result.update(
        dataset=dataset,
        noise_rate=float(rate),
        seed=int(seed),
        n_train=int(len(table)),
        n_corrupted=int(table["corrupted"].sum()),
        epochs_scored=[int(e) for e in epochs_scored],
        final_test_acc=float(history["test_acc"].iloc[-1]),
    )
    io.save_json(output, result)
    log.info("%s noise %g seed %d: curvature AUROC %s", dataset, rate, seed, result["auroc"])


def aggregate(metric_paths: Sequence[str], output: str) -> None:
    summary = metrics.summarize_runs([io.load_json(p) for p in metric_paths])
    io.save_csv(output, summary)
    log.info("summary of %d runs:\n%s", len(summary), summary.to_string(index=False))


def save_figure_set(png: str | Path, fig, numbers: pd.DataFrame) -> None:
    """``png``, a PDF beside it and the plotted numbers as CSV beside it (same stem)."""
    png = Path(png)
    io.save_figure(png, fig)
    io.save_figure(png.with_suffix(".pdf"), fig)
    io.save_csv(png.with_suffix(".csv"), numbers)
    figures.plt.close(fig)


def plot_grids(data_path: str, table_path: str, *, top: str, bottom: str, per_class: str, top_k: int,
               run_title: str) -> None:
    """Highest- and lowest-curvature images, and the highest of each class."""
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
    table = pd.read_csv(table_path)
    auroc = io.load_json(metrics_path)["auroc"]
    save_figure_set(histogram, *figures.curvature_histogram(table, title=run_title))
    save_figure_set(roc, *figures.roc_figure(table, auroc, title=run_title))


def plot_dynamics(labels_path: str, score_paths: Sequence[str], *, output: str, run_title: str) -> None:
    """Curvature over training for clean and corrupted training samples and test samples."""
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
    summary = pd.read_csv(summary_path)
    fig, numbers = figures.auroc_by_noise(summary)
    save_figure_set(figure, fig, numbers)
    with io.atomic_path(table) as tmp:
        tmp.write_text(figures.auroc_markdown(numbers))
