from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import privacy

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    privacy.shadow_attack(
        snakemake.input.labels,
        snakemake.input.masks,
        list(snakemake.input.scores),
        snakemake.input.curvature,
        snakemake.output.table,
        snakemake.output.per_target,
        snakemake.output.samples,
        figure=snakemake.output.figure,
        duplicates_path=snakemake.input.duplicates[0] if snakemake.input.duplicates else None,
        **params,
    )
