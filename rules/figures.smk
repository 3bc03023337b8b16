# Per-run figures: the highest-curvature images, score distributions, ROC curve.


rule figures:
    input:
        data="results/{dataset}/data.npz",
        table=f"{RUN}/curvature.csv",
        metrics=f"{RUN}/metrics.json",
    output:
        top_grid=f"{RUN}/figures/top_curvature.png",
        histogram=f"{RUN}/figures/curvature_hist.png",
        roc=f"{RUN}/figures/roc.png",
    log:
        f"{RUN_LOGS}/figures.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        top_k=config["figures"]["top_k"],
        run_title=lambda w: f"{w.dataset}, noise {w.rate}, seed {w.seed}",
        code=source_digest("figures", "io", "stages"),
    script:
        "../scripts/figures.py"
