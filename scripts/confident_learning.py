from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.confident_learning(snakemake.input.labels, snakemake.input.probs, snakemake.output[0])
