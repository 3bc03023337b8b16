from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.score(
        snakemake.input.data,
        snakemake.input.labels,
        snakemake.input.checkpoint,
        snakemake.output[0],
        threads=snakemake.threads,
        **params,
    )
