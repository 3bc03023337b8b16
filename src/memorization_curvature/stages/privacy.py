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


# --- the shadow-model attack (privacy.shadow_models: K) ---


def shadow_seed(seed: int, model: int) -> int:
    """The seed of shadow model ``model`` of a run of ``seed``: its own initial weights and batches,
    drawn from both numbers (numpy's SeedSequence), so no two shadow models nor runs share them."""
    return int(np.random.SeedSequence([seed, model]).generate_state(1)[0])


def shadow_masks(labels_path: str, output: str, *, models: int, seed: int) -> None:
    """Which training samples each of the ``models`` shadow models trains on: every sample in exactly half
    of them (:func:`memorization_curvature.privacy.shadow_masks`), drawn with ``seed``."""
    from .. import privacy

    n_samples = len(pd.read_csv(labels_path))
    inside = privacy.shadow_masks(n_samples, models, seed)
    io.save_npz(output, inside=inside, seed=np.asarray(seed))
    log.info("%d shadow models, each on %d-%d of %d training samples (mask seed %d)", models,
             int(inside.sum(axis=1).min()), int(inside.sum(axis=1).max()), n_samples, seed)


def shadow_train(data_path: str, labels_path: str, masks_path: str, output: str, *, model: int, seed: int,
                 recipe: dict, device: str, threads: int, placement: str = "auto", loader_workers: int = 2,
                 code: str = "", time_limit=None) -> None:
    """Shadow model ``model``: the run's ``recipe`` on the training samples its mask holds, with their given
    labels (the ones the run trained on), from its own seed (:func:`shadow_seed`); its final weights.
    Resumable after every epoch (``code``, ``time_limit``: as for :func:`memorization_curvature.stages.train.train`)."""
    import torch

    from .. import checkpoints, data, models, resume, training

    torch.set_num_threads(threads)
    prepared = data.load_prepared(data_path)
    given = pd.read_csv(labels_path).sort_values("index")["given_label"].to_numpy(dtype=np.int64, copy=True)
    inside = io.load_npz(masks_path)["inside"]
    if inside.shape[1] != len(given) or not 0 <= model < len(inside):
        raise io.BadInput(f"{masks_path} holds masks of {inside.shape[0]} models over {inside.shape[1]} samples; "
                          f"expected model {model} of them over the run's {len(given)} training samples")
    own_seed = shadow_seed(seed, model)
    torch.manual_seed(own_seed)
    net, model_kwargs = models.for_data(recipe["model"], prepared)
    config = training.TrainConfig.from_recipe(recipe, own_seed)
    progress = resume.Progress(resume.folder_for(output), resume.fingerprint(
        {"recipe": recipe, "seed": seed, "model": model, "device": device}, [data_path, labels_path, masks_path],
        code), time_limit)
    state = progress.resumed("training")
    accuracy = [] if state is None else list(state["test_acc"])

    def keep(training_state):
        training_state["test_acc"] = list(accuracy)
        progress.epoch_done("training", training_state, more=training_state["epoch"] < config.epochs)

    training.train_subset(net, prepared, torch.from_numpy(given), np.flatnonzero(inside[model]), config,
                          device=training.resolve_device(device), placement=placement, workers=loader_workers,
                          on_epoch_end=lambda epoch, network, metrics, *_: accuracy.append(float(metrics["test_acc"])),
                          resume=state, on_state=keep,
                          # tested after its last epoch only: K models tested on the run's whole test set after
                          # every epoch add about 13 % to their training (CIFAR: 10,000 images forward against
                          # 25,000 forward and backward)
                          test_epochs=[config.epochs])
    # the weights after the last epoch (also when a start resumed after it: train_subset loaded them)
    io.save_torch(output, checkpoints.checkpoint(recipe["model"], model_kwargs, net, config.epochs))
    log.info("shadow model %d: trained on %d of %d samples, test accuracy %.4f", model, int(inside[model].sum()),
             len(given), accuracy[-1])
    progress.clear()


def shadow_score(data_path: str, labels_path: str, checkpoint_path: str, output: str, *, n_probes: int, h: float,
                 form: str, method: str, precision: str, seed: int, flip: bool, threads: int, device: str,
                 batch_size: int, placement: str, loader_workers: int, probes_per_pass: int = 1) -> None:
    """Every training sample by a shadow model's final weights, at its given label, in eval mode: the
    input-loss curvature (as the run's scoring computes it, same probes), LiRA's logit-scaled confidence
    and the loss, for each query: the image, and its mirror image where the recipe flips (``flip``)."""
    import torch

    from .. import batches, checkpoints, curvature, data, gpu_slots, models, privacy, training

    gpu_slots.check_claimed_gpu()
    torch.set_num_threads(threads)
    prepared = data.load_prepared(data_path)
    given = pd.read_csv(labels_path).sort_values("index")["given_label"].to_numpy()
    device = training.resolve_device(device)
    network, epoch = checkpoints.load_model(checkpoint_path)
    network.to(device).eval()
    queries = {"image": network, **({"flipped": models.Flipped(network)} if flip else {})}
    images = batches.ImageSet.of(prepared, "train")
    arrays = {name: [] for name in ("curvature", "logit_confidence", "loss")}
    for query, net in queries.items():
        samples = batches.LabelledBatches(images, given, batch_size, device=device, placement=placement,
                                          workers=loader_workers)
        arrays["curvature"].append(curvature.curvature_scores(
            net, samples, n_probes=n_probes, h=h, seed=seed, device=device, form=form, method=method,
            precision=precision, probes_per_pass=probes_per_pass).numpy())
        logits = training.predict_logits(net, batches.DeviceImages(images, device, placement, loader_workers),
                                         batch_size).numpy()
        arrays["logit_confidence"].append(privacy.logit_confidence(logits, given))
        arrays["loss"].append(privacy.cross_entropy(logits, given))
    io.save_npz(output, epoch=np.asarray(epoch), queries=np.asarray(list(queries)),
                **{name: np.stack(values) for name, values in arrays.items()})
    log.info("shadow checkpoint of epoch %d: %d training samples scored on %s, queries %s", epoch, len(given),
             device, ", ".join(queries))


# the share of the training set counted as "the most" memorized or exposed in the overlap columns
TOP_FRACTION = 0.05


def shadow_attack(labels_path: str, masks_path: str, score_paths: Sequence[str], curvature_path: str, table: str,
                  per_target: str, samples: str, *, figure: str, run_title: str, duplicates_path: str | None = None) -> None:
    """The shadow-model attack: every shadow model as the target in turn, the others as its shadows
    (:func:`memorization_curvature.privacy.shadow_audit`). Writes the attacks' metrics (mean and standard
    deviation over targets; and per target), the training samples ranked by each attack's exposure beside
    their curvature rank in the run, whether corrupted or in a conflicting pair, and the log-log ROC of
    every attack over all targets' samples."""
    from .. import figures, privacy

    labels = pd.read_csv(labels_path).sort_values("index", ignore_index=True)
    inside = io.load_npz(masks_path)["inside"]
    outputs = [io.load_npz(path) for path in score_paths]
    if len(outputs) != len(inside) or inside.shape[1] != len(labels):
        raise io.BadInput(f"{masks_path} holds {inside.shape[0]} models over {inside.shape[1]} samples; expected "
                          f"the {len(outputs)} shadow scores over the run's {len(labels)} training samples")
    shapes = {path: arrays["curvature"].shape for path, arrays in zip(score_paths, outputs)}
    if len(set(shapes.values())) != 1 or next(iter(shapes.values()))[1] != len(labels):
        raise io.BadInput(f"shadow scores of different shapes (queries, samples): {shapes}; expected all "
                          f"(queries, {len(labels)})")
    statistics = {
        "logit_confidence": np.stack([arrays["logit_confidence"] for arrays in outputs]),
        "log_curvature": privacy.log_curvature(np.stack([arrays["curvature"] for arrays in outputs])),
        "loss": np.stack([arrays["loss"] for arrays in outputs]),
    }
    rows, exposure, pooled = privacy.shadow_audit(statistics, inside)
    io.save_csv(per_target, rows)

    curvature = pd.read_csv(curvature_path).sort_values("index", ignore_index=True)
    ranked = labels[["index", "given_label", "true_label", "corrupted"]].copy()
    if duplicates_path:
        pairs = pd.read_csv(duplicates_path)
        ranked["in_conflicting_pair"] = ranked["index"].isin(set(pairs["i"]) | set(pairs["j"]))
    ranked["curvature"], ranked["curvature_rank"] = curvature["curvature"], curvature["rank"]
    summary = privacy.over_targets(rows)
    overlap, corrupted_share = [], []
    top = max(1, int(round(TOP_FRACTION * len(ranked))))
    for attack in summary["attack"]:
        if attack not in exposure:  # not calibrated per sample: no ranking of the exposed
            overlap.append(np.nan)
            corrupted_share.append(np.nan)
            continue
        score = exposure[attack]
        ranked[f"{attack}_exposure"] = score
        ranked[f"{attack}_rank"] = pd.Series(-score).rank(method="first").astype(int).to_numpy()
        overlap.append(privacy.top_overlap(score, curvature["curvature"].to_numpy(), TOP_FRACTION))
        corrupted_share.append(float(ranked["corrupted"].to_numpy()[np.argsort(-score, kind="stable")[:top]].mean()))
    summary.insert(len(summary.columns) - 1, f"top{TOP_FRACTION * 100:g}pct_also_top_curvature", overlap)
    summary.insert(len(summary.columns) - 1, f"top{TOP_FRACTION * 100:g}pct_corrupted", corrupted_share)
    io.save_csv(table, summary)
    io.save_csv(samples, ranked.sort_values("lira_online_rank", kind="stable"))

    # every target's samples pooled: millions of thresholds at paper size, shown at a few thousand
    curves = {attack: privacy.thinned(*privacy.roc(*pooled[attack])) for attack in summary["attack"]}
    aurocs = dict(zip(summary["attack"], summary["auroc_mean"]))
    figures.save_figure_set(figure, *privacy.log_roc_figure(
        curves, aurocs, title=f"{run_title}: shadow-model attacks, {len(inside)} targets pooled"))
    log.info("shadow-model attacks, %d models (each the target in turn), %d training samples, %d query(ies):\n%s",
             len(inside), len(labels), statistics["loss"].shape[1],
             summary.drop(columns="description").to_string(index=False))
