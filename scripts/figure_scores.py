from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import figures

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    figures.plot_scores(
        snakemake.input.table,
        snakemake.input.metrics,
        histogram=snakemake.output.histogram,
        roc=snakemake.output.roc,
        **params,
    )
