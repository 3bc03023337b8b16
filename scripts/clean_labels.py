from memorization_curvature import stages

params = dict(snakemake.params.items())
scores = snakemake.input.scores[0] if snakemake.input.scores else None  # none for the oracle
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.clean_labels(snakemake.input.labels, scores, snakemake.input.history, snakemake.output[0], **params)
