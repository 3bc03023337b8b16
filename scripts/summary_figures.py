from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.summarize(
        snakemake.input[0], figure=snakemake.output.figure, table=snakemake.output.table
    )
