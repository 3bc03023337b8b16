# Paths, wildcards and target lists shared by every rule file.

from memorization_curvature.config import rate_label, scored_epochs
from memorization_curvature.provenance import source_digest

RUN = "results/{dataset}/noise{rate}/seed{seed}"
RUN_LOGS = "logs/{dataset}/noise{rate}/seed{seed}"
RUN_BENCHMARKS = "benchmarks/{dataset}/noise{rate}/seed{seed}"

EPOCHS = config["train"]["epochs"]
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
    figures,


def runs(pattern):
    """``pattern`` (relative to a run folder) expanded over every configured run."""
    return expand(
        f"{RUN}/{pattern}",
        dataset=config["datasets"],
        rate=[rate_label(r) for r in config["noise_rates"]],
        seed=config["seeds"],
    )


def all_targets():
    return [
        "results/auroc.csv",
        *runs("figures/top_curvature.png"),
        *runs("figures/curvature_hist.png"),
        *runs("figures/roc.png"),
    ]
