from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.plot_grids(
        snakemake.input.data,
        snakemake.input.table,
        top=snakemake.output.top,
        bottom=snakemake.output.bottom,
        per_class=snakemake.output.per_class,
        **params,
    )
