from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.plot_scores(
        snakemake.input.table,
        snakemake.input.metrics,
        histogram=snakemake.output.histogram,
        roc=snakemake.output.roc,
        **params,
    )
