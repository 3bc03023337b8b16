from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import data

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    data.inject_duplicates(snakemake.input.data, snakemake.output.data, snakemake.output.labels, **params)
