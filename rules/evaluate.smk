# AUROC of curvature for finding the corrupted labels: per run, then one table of all runs.


rule evaluate:
    input:
        table=f"{RUN}/curvature.csv",
        train_metrics=f"{RUN}/train_metrics.csv",
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
