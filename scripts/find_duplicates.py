from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.find_duplicates(
        snakemake.input.data,
        snakemake.input.table,
        snakemake.output.pairs,
        snakemake.output.summary,
        figure=snakemake.output.figure,
        **params,
    )
