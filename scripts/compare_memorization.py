from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import memorization

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    memorization.compare_memorization(
        snakemake.input.table,
        snakemake.input.scores,
        snakemake.output.result,
        figure=snakemake.output.figure,
        **params,
    )
