from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import figures

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    figures.plot_grids(
        snakemake.input.data,
        snakemake.input.table,
        top=snakemake.output.top,
        bottom=snakemake.output.bottom,
        per_class=snakemake.output.per_class,
        **params,
    )
