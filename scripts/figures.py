from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.plot(
        snakemake.input.data,
        snakemake.input.table,
        snakemake.input.metrics,
        top_grid=snakemake.output.top_grid,
        histogram=snakemake.output.histogram,
        roc=snakemake.output.roc,
        **params,
    )
