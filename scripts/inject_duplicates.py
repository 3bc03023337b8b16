from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.inject_duplicates(snakemake.input.data, snakemake.output.data, snakemake.output.labels, **params)
