from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import evaluate

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    evaluate.aggregate(list(snakemake.input), snakemake.output[0])
