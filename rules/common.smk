# Paths, wildcards and target lists shared by every rule file.

from memorization_curvature.config import (
    fraction_of,
    fraction_label,
    rate_label,
    run_epochs,
    scored_epochs,
    training_recipe,
)
from memorization_curvature.provenance import script_digest

# A run's variant: noise{rate} (labels corrupted at random) or dup{copies} (images replaced by
# copies of other training images carrying a different label).
RUN = "results/{dataset}/{variant}/seed{seed}"
RUN_LOGS = "logs/{dataset}/{variant}/seed{seed}"
RUN_BENCHMARKS = "benchmarks/{dataset}/{variant}/seed{seed}"
VARIANTS = [f"noise{rate_label(r)}" for r in config["noise_rates"]] + [
    f"dup{copies}" for copies in config["injected_duplicates"]
]

# Each dataset trains with its own recipe (recipes.<dataset>, overridden by keys under train).
RECIPES = {d: training_recipe(config, d) for d in config["datasets"]}
EPOCHS = run_epochs(config)


def code_digest(script):
    """A params value: the digest of the code scripts/<script> can run, read from the source
    (provenance.script_digest), so a change of behaviour reruns exactly the rules that run it.
    """
    return script_digest(os.path.join(workflow.basedir, "scripts", script))


def training_recipe_of(wildcards):
    """A params function: the recipe of the job's dataset with train.bf16, as every training rule (train,
    crossval, ssft, retrain) passes it; TrainConfig.from_recipe refuses a key it does not know. Keys
    sorted: Snakemake compares a parameter's text, and the order keys are written in changes nothing.
    """
    return dict(
        sorted({**RECIPES[wildcards.dataset], "bf16": config["train"]["bf16"]}.items())
    )


BASELINES = config["baselines"]
# Under baselines.statistics: training_pass, the epochs that keep an evaluation pass over the training
# set: EL2N's (an evaluation of the network by its definition) and the last (the final loss and
# confidence). Whether those methods are chosen or not, so that choosing methods never retrains.
STATISTICS_EVAL_EPOCHS = (
    sorted({BASELINES["el2n_epoch"], EPOCHS})
    if BASELINES["statistics"] == "training_pass"
    else []
)
SCORED_EPOCHS = scored_epochs(EPOCHS, config["curvature"]["score_every"])


wildcard_constraints:
    dataset="[a-z0-9_]+",
    rate=r"[0-9]+(\.[0-9]+)?",
    copies="[0-9]+",
    variant=r"noise[0-9]+(\.[0-9]+)?|dup[0-9]+",
    seed="[0-9]+",
    epoch="[0-9]+",
    model="[0-9]+",
    cleaning=r"oracle|unchanged|[a-z][a-z0-9_]*_[0-9]+(\.[0-9]+)?(e-[0-9]+)?_(remove|relabel)",


localrules:
    corrupt,
    inject_duplicates,
    average,
    evaluate,
    aggregate,
    figure_grids,
    figure_scores,
    figure_dynamics,
    summary_figures,
    privacy_audit,
    shadow_masks,
    shadow_attack,
    history_baselines,
    confident_learning,
    compare_methods,
    methods_summary,
    find_duplicates,
    compare_memorization,
    suspects,
    clean_labels,
    cleaning_table,
    cleaning_summary,


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
        variant=VARIANTS,
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
    """(dataset, variant, seed) of every configured run, in the order of runs()."""
    return [
        {"dataset": d, "variant": v, "seed": s}
        for d in config["datasets"]
        for v in VARIANTS
        for s in config["seeds"]
    ]


def run_data(wildcards):
    """The images a run trains on: the dataset's, or the run's own with injected duplicates."""
    if wildcards.variant.startswith("dup"):
        return f"results/{wildcards.dataset}/{wildcards.variant}/seed{wildcards.seed}/data.npz"
    return f"results/{wildcards.dataset}/data.npz"


def run_title(wildcards):
    return f"{wildcards.dataset}, {wildcards.variant}, seed {wildcards.seed}"


CLEANING = config["cleaning"]


def noise_rate(variant):
    return float(variant[len("noise") :]) if variant.startswith("noise") else None


def cleaned_runs():
    """The runs cleaning retrains: label noise at a rate above 0 (cleaning.enabled)."""
    if not CLEANING["enabled"]:
        return []
    return [run for run in run_list() if (noise_rate(run["variant"]) or 0) > 0]


def cleanings(wildcards):
    """A run's retrainings: the unchanged control (the given labels, by the retraining path), the
    oracle (true labels), then each method x fraction x action (fractions written as rate / k*rate
    resolved with the run's noise rate), as dicts with their file name.
    """
    rate = noise_rate(wildcards.variant) or 0.0
    found = {
        reference: dict(
            name=reference, method=reference, fraction=None, fraction_spec="", action=""
        )
        for reference in ("unchanged", "oracle")
    }
    for method in CLEANING["methods"]:
        for spec in CLEANING["fractions"]:
            fraction = fraction_of(spec, rate)
            for action in CLEANING["actions"] if fraction is not None else []:
                name = f"{method}_{fraction_label(fraction)}_{action}"
                found.setdefault(
                    name,
                    dict(
                        name=name,
                        method=method,
                        fraction=fraction,
                        fraction_spec=str(spec),
                        action=action,
                    ),
                )
    return list(found.values())


def cleaning_of(wildcards):
    return next(c for c in cleanings(wildcards) if c["name"] == wildcards.cleaning)


def cleaning_scores(wildcards):
    """The table holding the scores a cleaning ranks by (none for the oracle)."""
    method = cleaning_of(wildcards)["method"]
    tables = {
        "oracle": [],
        "unchanged": [],
        "curvature": ["curvature.csv"],
        "confident_learning": ["baselines/confident_learning.csv"],
        "self_confidence": ["baselines/confident_learning.csv"],
        "ssft": ["baselines/ssft.csv"],
    }
    return [
        f"{RUN}/{t}".format(**wildcards)
        for t in tables.get(method, ["baselines/history.csv"])
    ]


def all_targets():
    figures = RUN_FIGURES + (["dynamics"] if config["figures"]["dynamics"] else [])
    cleaned = [
        f"{RUN}/{name}".format(**run)
        for run in cleaned_runs()
        for name in ("cleaning.csv", "figures/cleaning.png")
    ]
    return [
        *(runs("suspects.csv") if CLEANING["enabled"] else []),
        *cleaned,
        *(
            ["results/summary/cleaning.md", "results/summary/cleaning.png"]
            if cleaned
            else []
        ),
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
        *(
            runs("privacy.csv") + runs("figures/privacy_roc.png")
            if config["privacy"]["enabled"]
            else []
        ),
        *(
            runs("privacy_attack.csv") + runs("figures/privacy_attack_roc.png")
            if config["privacy"]["shadow_models"]
            else []
        ),
    ]


def run_figure(name, caption, label):
    """A run's figure as a report item, filed under its dataset with variant and seed as labels."""
    return report(
        f"{RUN}/figures/{name}.png",
        caption=f"../report/{caption}.rst",
        category="{dataset}",
        subcategory="{variant}, seed {seed}",
        labels={"figure": label, "run": "{variant}", "seed": "{seed}"},
    )


def siblings(name):
    """The PDF and the CSV of plotted numbers written beside a run's figure."""
    return [f"{RUN}/figures/{name}.pdf", f"{RUN}/figures/{name}.csv"]
