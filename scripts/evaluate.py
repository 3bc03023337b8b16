from memorization_curvature import stages

params = dict(snakemake.params.items())
with stages.logging_to(snakemake.log[0], code=params.pop("code")):
    stages.evaluate(snakemake.input.table, snakemake.input.train_metrics, snakemake.output[0],
                    history_path=snakemake.input.history[0] if snakemake.input.history else None, **params)
