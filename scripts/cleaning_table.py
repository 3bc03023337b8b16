from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.cleaning_table(snakemake.input.train_metrics, list(snakemake.input.results), snakemake.output.table,
                          figure=snakemake.output.figure, **params)
