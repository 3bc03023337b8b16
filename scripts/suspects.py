from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import cleaning

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    cleaning.suspects(
        snakemake.input.table,
        snakemake.input.methods,
        snakemake.input.history,
        snakemake.output[0],
        duplicates_path=snakemake.input.duplicates[0] if snakemake.input.duplicates else None,
        **params,
    )
