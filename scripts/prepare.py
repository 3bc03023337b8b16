from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import data

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    data.prepare(
        snakemake.wildcards.dataset,
        snakemake.output[0],
        workers=snakemake.threads,
        **params,
    )
