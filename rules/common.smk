# Paths, wildcards and target lists shared by every rule file.

from memorization_curvature.config import rate_label, scored_epochs
from memorization_curvature.provenance import source_digest

RUN = "results/{dataset}/noise{rate}/seed{seed}"
RUN_LOGS = "logs/{dataset}/noise{rate}/seed{seed}"
RUN_BENCHMARKS = "benchmarks/{dataset}/noise{rate}/seed{seed}"

EPOCHS = config["train"]["epochs"]
# The training recipe, for the rules that train extra models (cross-validation, SSFT).
TRAIN_RECIPE = {
    key: config["train"][key]
    for key in (
        "epochs",
        "batch_size",
        "lr",
        "momentum",
        "weight_decay",
        "lr_milestones",
        "lr_gamma",
        "augment_shift",
        "augment_flip",
        "bf16",
    )
}
BASELINES = config["baselines"]
SCORED_EPOCHS = scored_epochs(EPOCHS, config["curvature"]["score_every"])


wildcard_constraints:
    dataset="[a-z0-9_]+",
    rate=r"[0-9]+(\.[0-9]+)?",
    seed="[0-9]+",
    epoch="[0-9]+",


localrules:
    corrupt,
    average,
    evaluate,
    aggregate,
    figure_grids,
    figure_scores,
    figure_dynamics,
    summary_figures,
    history_baselines,
    confident_learning,
    compare_methods,
    methods_summary,
    find_duplicates,
    compare_memorization,


def checkpoint_outputs():
    """The per-epoch checkpoints; temporary (deleted once scored) unless train.keep_checkpoints."""
    paths = expand(
        f"{RUN}/checkpoints/epoch{{epoch}}.pt",
        epoch=range(1, EPOCHS + 1),
        allow_missing=True,
    )
    return paths if config["train"]["keep_checkpoints"] else [temp(p) for p in paths]


def runs(pattern, datasets=None):
    """``pattern`` (relative to a run folder) expanded over every configured run (of ``datasets``)."""
    return expand(
        f"{RUN}/{pattern}",
        dataset=config["datasets"] if datasets is None else datasets,
        rate=[rate_label(r) for r in config["noise_rates"]],
        seed=config["seeds"],
    )


RUN_FIGURES = [
    "top_curvature",
    "bottom_curvature",
    "per_class",
    "curvature_hist",
    "roc",
]


def baseline_tables(wildcards=None):
    """The per-run tables of the peer methods switched on in config."""
    tables = []
    if BASELINES["history"]:
        tables.append(f"{RUN}/baselines/history.csv")
    if BASELINES["confident_learning"]:
        tables.append(f"{RUN}/baselines/confident_learning.csv")
    if BASELINES["ssft"]:
        tables.append(f"{RUN}/baselines/ssft.csv")
    if wildcards is None:
        return tables
    return [t.format(**wildcards) for t in tables]


def run_list():
    """(dataset, rate, seed) of every configured run, in the order of runs()."""
    return [
        {"dataset": d, "noise_rate": float(r), "seed": s}
        for d in config["datasets"]
        for r in config["noise_rates"]
        for s in config["seeds"]
    ]


def all_targets():
    figures = RUN_FIGURES + (["dynamics"] if config["figures"]["dynamics"] else [])
    return [
        "results/auroc.csv",
        "results/summary/auroc_vs_noise.png",
        "results/summary/auroc_table.md",
        "results/summary/methods_auroc.md",
        *runs("figures/roc_methods.png"),
        *(runs("figures/duplicates.png") if config["duplicates"]["enabled"] else []),
        *runs(
            "feldman_zhang.json",
            [d for d in config["datasets"] if d in config["feldman_zhang"]["files"]],
        ),
        *[path for name in figures for path in runs(f"figures/{name}.png")],
    ]


def run_figure(name, caption, label):
    """A run's figure as a report item, filed under its dataset with noise rate and seed as labels."""
    return report(
        f"{RUN}/figures/{name}.png",
        caption=f"../report/{caption}.rst",
        category="{dataset}",
        subcategory="noise {rate}, seed {seed}",
        labels={"figure": label, "noise rate": "{rate}", "seed": "{seed}"},
    )


def siblings(name):
    """The PDF and the CSV of plotted numbers written beside a run's figure."""
    return [f"{RUN}/figures/{name}.pdf", f"{RUN}/figures/{name}.csv"]
