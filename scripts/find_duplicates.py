from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import memorization

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    memorization.find_duplicates(
        snakemake.input.data,
        snakemake.input.table,
        snakemake.output.pairs,
        snakemake.output.summary,
        figure=snakemake.output.figure,
        **params,
    )
