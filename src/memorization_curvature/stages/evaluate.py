"""Steps of rules/evaluate.smk: how well curvature finds the corrupted labels, per run and across runs."""

from __future__ import annotations

import logging
from typing import Sequence

import pandas as pd

from .. import io

log = logging.getLogger(__name__)


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
    privacy_path: str | None = None,
    review_top: int | str = 100,
) -> None:
    from .. import metrics

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
        from .. import suspects

        # how often the suggested label of suspects.csv's samples is the true one (no peer ranks needed)
        review = suspects.review_list(table, table[["index"]], io.load_npz(history_path)["mean_probs"], review_top)
        result["suspects"] = suspects.suggestion_accuracy(review)
    if privacy_path:
        # the privacy audit: how well each statistic tells training from test samples
        audit = pd.read_csv(privacy_path).set_index("statistic")
        result["membership_inference"] = {
            name: {key: float(row[key]) for key in ("auroc", "balanced_accuracy", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")}
            for name, row in audit.iterrows()}
    io.save_json(output, result)
    log.info("%s %s seed %d: curvature AUROC %s", dataset, variant, seed, result["auroc"])


def aggregate(metric_paths: Sequence[str], output: str) -> None:
    from .. import metrics

    summary = metrics.summarize_runs([io.load_json(p) for p in metric_paths])
    io.save_csv(output, summary)
    log.info("summary of %d runs:\n%s", len(summary), summary.to_string(index=False))
