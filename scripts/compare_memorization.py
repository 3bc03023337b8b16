from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.compare_memorization(
        snakemake.input.table,
        snakemake.input.scores,
        snakemake.output.result,
        figure=snakemake.output.figure,
        **params,
    )
