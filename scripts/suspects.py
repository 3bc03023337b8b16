from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.suspects(
        snakemake.input.table,
        snakemake.input.methods,
        snakemake.input.history,
        snakemake.output[0],
        duplicates_path=snakemake.input.duplicates[0] if snakemake.input.duplicates else None,
        **params,
    )
