from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.cleaning_summary(list(snakemake.input), params["runs"], markdown=snakemake.output.markdown,
                            figure=snakemake.output.figure)
