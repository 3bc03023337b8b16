from memorization_curvature import stages
from memorization_curvature.config import runtime_settings

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.train(
        snakemake.input.data,
        snakemake.input.labels,
        list(snakemake.output.checkpoints),
        snakemake.output.metrics,
        snakemake.output.history,
        threads=snakemake.threads,
        **runtime_settings(snakemake.config, "train"),  # speed only: not params, so they rerun nothing
        **params,
    )
