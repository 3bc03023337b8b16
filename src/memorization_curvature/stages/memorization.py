"""Steps of rules/memorization.smk: duplicates with conflicting labels, and agreement with
Feldman-Zhang memorization scores."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from .. import io

log = logging.getLogger(__name__)


def find_duplicates(data_path: str, table_path: str, output: str, summary_path: str, *, figure: str,
                    threshold: float, feature_size: int, top_k: Sequence[int], run_title: str) -> None:
    """Near-duplicate training pairs whose given labels differ, with both samples' curvature ranks; how
    many of the top-k curvature samples belong to one; and a figure of the most similar pairs."""
    from .. import data, duplicates, figures

    prepared = data.load_prepared(data_path)
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
    figures.save_figure_set(figure, fig, numbers)


def compare_memorization(table_path: str, score_file: str, output: str, *, figure: str, top_k: int,
                         run_title: str, images_replaced: bool) -> None:
    """Cosine similarity and Pearson correlation of averaged curvature with Feldman-Zhang memorization.

    ``images_replaced``: the run replaced some training images by copies of others (its ``corrupted``
    flag); the published scores describe the original images, so only the untouched ones are compared.
    """
    from .. import figures, memorization

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
    figures.save_figure_set(figure, fig, pd.DataFrame({"index": table["index"], "memorization": tr_mem,
                                               "curvature": table["curvature"]}))
    log.info("agreement with %s: %s", score_file, result)
