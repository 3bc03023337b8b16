from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import cleaning

params = dict(snakemake.params.items())
scores = snakemake.input.scores[0] if snakemake.input.scores else None  # none for the oracle
with logging_to(snakemake.log[0], code=params.pop("code")):
    cleaning.clean_labels(snakemake.input.labels, scores, snakemake.input.history, snakemake.output[0], **params)
