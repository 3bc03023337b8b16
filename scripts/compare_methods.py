from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import baselines

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    baselines.compare(
        snakemake.input.table,
        list(snakemake.input.baselines),
        snakemake.output.table,
        snakemake.output.metrics,
        roc=snakemake.output.roc,
        **params,
    )
