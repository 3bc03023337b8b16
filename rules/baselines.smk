# Peer methods on the same run, each switchable in config, and one comparison table.


rule history_baselines:
    input:
        labels=f"{RUN}/labels.csv",
        history=f"{RUN}/train_history.npz",
    output:
        f"{RUN}/baselines/history.csv",
    log:
        f"{RUN_LOGS}/history_baselines.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        methods=BASELINES["history"],
        el2n_epoch=BASELINES["el2n_epoch"],
        code=code_digest("history_baselines.py"),
    script:
        "../scripts/history_baselines.py"


rule crossval:
    input:
        data=run_data,
        labels=f"{RUN}/labels.csv",
    output:
        f"{RUN}/baselines/crossval_probs.npz",
    log:
        f"{RUN_LOGS}/crossval.log",
    benchmark:
        f"{RUN_BENCHMARKS}/crossval.tsv"
    conda:
        "../envs/memcurv.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        folds=BASELINES["cv_folds"],
        seed=lambda w: int(w.seed),
        device=config["train"]["device"],
        recipe=training_recipe_of,
        code=code_digest("crossval.py"),
    script:
        "../scripts/crossval.py"


rule confident_learning:
    input:
        labels=f"{RUN}/labels.csv",
        probs=f"{RUN}/baselines/crossval_probs.npz",
    output:
        f"{RUN}/baselines/confident_learning.csv",
    log:
        f"{RUN_LOGS}/confident_learning.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        code=code_digest("confident_learning.py"),
    script:
        "../scripts/confident_learning.py"


rule ssft:
    input:
        data=run_data,
        labels=f"{RUN}/labels.csv",
    output:
        f"{RUN}/baselines/ssft.csv",
    log:
        f"{RUN_LOGS}/ssft.log",
    benchmark:
        f"{RUN_BENCHMARKS}/ssft.tsv"
    conda:
        "../envs/memcurv.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        seed=lambda w: int(w.seed),
        device=config["train"]["device"],
        recipe=training_recipe_of,
        code=code_digest("ssft.py"),
    script:
        "../scripts/ssft.py"


rule compare_methods:
    input:
        table=f"{RUN}/curvature.csv",
        baselines=baseline_tables,
    output:
        table=f"{RUN}/methods.csv",
        metrics=f"{RUN}/methods_metrics.csv",
        roc=run_figure("roc_methods", "roc_methods", "every method"),
        files=siblings("roc_methods"),
    log:
        f"{RUN_LOGS}/compare_methods.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        run_title=run_title,
        code=code_digest("compare_methods.py"),
    script:
        "../scripts/compare_methods.py"


rule methods_summary:
    input:
        runs("methods_metrics.csv"),
    output:
        table="results/summary/methods_auroc.csv",
        markdown=report(
            "results/summary/methods_auroc.md",
            caption="../report/methods_auroc.rst",
            category="Across runs",
            labels={"figure": "every method, AUROC table"},
        ),
    log:
        "logs/methods_summary.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        runs=run_list(),
        code=code_digest("methods_summary.py"),
    script:
        "../scripts/methods_summary.py"
