from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.prepare(
        snakemake.wildcards.dataset,
        snakemake.output[0],
        workers=snakemake.threads,
        **params,
    )
