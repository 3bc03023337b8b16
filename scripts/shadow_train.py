from memorization_curvature import gpu_slots, time_limit
from memorization_curvature.config import runtime_settings
from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import privacy

params = dict(snakemake.params.items())
# the code digest also keys the saved training state: a state from other code is not resumed
with (
    logging_to(snakemake.log[0], code=params["code"]),
    gpu_slots.for_job(snakemake, params["device"]),  # one GPU of --resources gpu=N
    time_limit.for_job(snakemake) as limit,  # a SLURM job stops before its time limit and goes back in the queue
):
    privacy.shadow_train(
        snakemake.input.data,
        snakemake.input.labels,
        snakemake.input.masks,
        snakemake.output[0],
        model=int(snakemake.wildcards.model),
        threads=snakemake.threads,
        time_limit=limit,
        **runtime_settings(snakemake.config, "train"),  # speed only: not params, so they rerun nothing
        **params,
    )
