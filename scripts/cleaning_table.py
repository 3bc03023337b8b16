from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import cleaning

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    cleaning.cleaning_table(snakemake.input.labels, snakemake.input.train_metrics, list(snakemake.input.results), snakemake.output.table,
                          figure=snakemake.output.figure, **params)
