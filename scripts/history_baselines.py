from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.history_baselines(snakemake.input.labels, snakemake.input.history, snakemake.output[0], **params)
