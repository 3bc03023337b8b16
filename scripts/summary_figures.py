from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import figures

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    figures.summarize(
        snakemake.input[0], figure=snakemake.output.figure, table=snakemake.output.table
    )
