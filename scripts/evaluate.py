from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import evaluate

params = dict(snakemake.params.items())
with logging_to(snakemake.log[0], code=params.pop("code")):
    evaluate.evaluate(snakemake.input.table, snakemake.input.train_metrics, snakemake.output[0],
                    history_path=snakemake.input.history[0] if snakemake.input.history else None,
                      privacy_path=snakemake.input.privacy[0] if snakemake.input.privacy else None, **params)
