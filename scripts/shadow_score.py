from memorization_curvature import gpu_slots
from memorization_curvature.config import runtime_settings
from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import privacy

params = dict(snakemake.params.items())
with (
    logging_to(snakemake.log[0], code=params.pop("code")),
    gpu_slots.for_job(snakemake, snakemake.config["curvature"]["device"]),  # one GPU of --resources gpu=N
):
    privacy.shadow_score(
        snakemake.input.data,
        snakemake.input.labels,
        snakemake.input.checkpoint,
        snakemake.output[0],
        threads=snakemake.threads,
        **runtime_settings(snakemake.config, "shadow_score"),  # speed only: not params, so they rerun nothing
        **params,
    )
