from memorization_curvature import gpu_slots
from memorization_curvature.config import run_epochs, runtime_settings, scored_epochs
from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import score

params = dict(snakemake.params.items())
with (
    logging_to(snakemake.log[0], code=params["code"]),
    # one GPU of --resources gpu=N; CUDA is asked about only if the job scores (it may just take its
    # scores made ahead, without torch)
    gpu_slots.for_job(snakemake, snakemake.config["curvature"]["device"], check_cuda=False),
):
    score.score(
        snakemake.input.data,
        snakemake.input.labels,
        snakemake.input.checkpoint,
        snakemake.output[0],
        threads=snakemake.threads,
        **runtime_settings(snakemake.config, "score"),  # speed only: not params, so they rerun nothing
        # the run's checkpoints a job may score ahead of their jobs (curvature.checkpoints_per_job)
        scored_epochs=scored_epochs(run_epochs(snakemake.config), snakemake.config["curvature"]["score_every"]),
        **params,
    )
