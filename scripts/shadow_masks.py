from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import privacy

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    privacy.shadow_masks(snakemake.input.labels, snakemake.output[0], **params)
