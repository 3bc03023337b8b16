# AUROC of curvature for finding the corrupted labels: per run, then one table of all runs.


rule evaluate:
    input:
        table=f"{RUN}/curvature.csv",
        train_metrics=f"{RUN}/train_metrics.csv",
        # the suggested labels: how often the suspects' one is the true label
        history=[f"{RUN}/train_history.npz"] if CLEANING["enabled"] else [],
        # the privacy audit's AUROC and TPR at low FPR per statistic
        privacy=[f"{RUN}/privacy.csv"] if config["privacy"]["enabled"] else [],
    output:
        f"{RUN}/metrics.json",
    log:
        f"{RUN_LOGS}/evaluate.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        dataset=lambda w: w.dataset,
        variant=lambda w: w.variant,
        seed=lambda w: int(w.seed),
        epochs_scored=SCORED_EPOCHS,
        review_top=CLEANING["review_top"],
        code=code_digest("evaluate.py"),
    script:
        "../scripts/evaluate.py"


rule aggregate:
    input:
        runs("metrics.json"),
    output:
        "results/auroc.csv",
    log:
        "logs/aggregate.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        code=code_digest("aggregate.py"),
    script:
        "../scripts/aggregate.py"
