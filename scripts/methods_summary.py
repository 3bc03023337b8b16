from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.methods_summary(
        list(snakemake.input),
        params["runs"],
        table=snakemake.output.table,
        markdown=snakemake.output.markdown,
    )
