from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.compare(
        snakemake.input.table,
        list(snakemake.input.baselines),
        snakemake.output.table,
        snakemake.output.metrics,
        roc=snakemake.output.roc,
        **params,
    )
