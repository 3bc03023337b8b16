# The paper's figures per run and across runs, each flagged for `snakemake --report`.


rule figure_grids:
    input:
        data=run_data,
        table=f"{RUN}/curvature.csv",
    output:
        top=run_figure("top_curvature", "top_curvature", "highest curvature"),
        bottom=run_figure("bottom_curvature", "bottom_curvature", "lowest curvature"),
        per_class=run_figure("per_class", "per_class", "highest per class"),
        files=siblings("top_curvature")
        + siblings("bottom_curvature")
        + siblings("per_class"),
    log:
        f"{RUN_LOGS}/figure_grids.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        top_k=config["figures"]["top_k"],
        run_title=run_title,
        code=code_digest("figure_grids.py"),
    script:
        "../scripts/figure_grids.py"


rule figure_scores:
    input:
        table=f"{RUN}/curvature.csv",
        metrics=f"{RUN}/metrics.json",
    output:
        histogram=run_figure("curvature_hist", "curvature_hist", "distribution"),
        roc=run_figure("roc", "roc", "ROC curve"),
        files=siblings("curvature_hist") + siblings("roc"),
    log:
        f"{RUN_LOGS}/figure_scores.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        run_title=run_title,
        code=code_digest("figure_scores.py"),
    script:
        "../scripts/figure_scores.py"


rule figure_dynamics:
    input:
        labels=f"{RUN}/labels.csv",
        scores=expand(
            f"{RUN}/scores/epoch{{epoch}}.npz", epoch=SCORED_EPOCHS, allow_missing=True
        ),
    output:
        figure=run_figure("dynamics", "dynamics", "during training"),
        files=siblings("dynamics"),
    log:
        f"{RUN_LOGS}/figure_dynamics.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        run_title=run_title,
        code=code_digest("figure_dynamics.py"),
    script:
        "../scripts/figure_dynamics.py"


rule summary_figures:
    input:
        "results/auroc.csv",
    output:
        figure=report(
            "results/summary/auroc_vs_noise.png",
            caption="../report/auroc_vs_noise.rst",
            category="Across runs",
            labels={"figure": "AUROC against noise rate"},
        ),
        files=[
            "results/summary/auroc_vs_noise.pdf",
            "results/summary/auroc_vs_noise.csv",
        ],
        table=report(
            "results/summary/auroc_table.md",
            caption="../report/auroc_table.rst",
            category="Across runs",
            labels={"figure": "AUROC table (paper layout)"},
        ),
    log:
        "logs/summary_figures.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        code=code_digest("summary_figures.py"),
    script:
        "../scripts/summary_figures.py"
