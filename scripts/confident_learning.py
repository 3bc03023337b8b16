from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import baselines

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    baselines.confident_learning(snakemake.input.labels, snakemake.input.probs, snakemake.output[0])
