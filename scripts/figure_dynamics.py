from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.plot_dynamics(
        snakemake.input.labels,
        list(snakemake.input.scores),
        output=snakemake.output.figure,
        **params,
    )
