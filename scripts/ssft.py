from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.ssft(
        snakemake.input.data,
        snakemake.input.labels,
        snakemake.output[0],
        threads=snakemake.threads,
        **params.pop("recipe"),
        **params,
    )
