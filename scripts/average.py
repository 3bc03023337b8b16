from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import score

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    score.average(snakemake.input.labels, list(snakemake.input.scores), snakemake.output[0])
