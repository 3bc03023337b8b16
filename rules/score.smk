# Curvature of every training sample, one job per checkpoint, then the mean over scored epochs.
# Settings that change only speed or placement (curvature.batch_size, probes_per_pass, device,
# threads; train.placement, loader_workers) are read from the config inside the job, not params:
# changing them reruns nothing (memorization_curvature.config.RUNTIME_SETTINGS).


rule score:
    input:
        data=run_data,
        labels=f"{RUN}/labels.csv",
        checkpoint=f"{RUN}/checkpoints/epoch{{epoch}}.pt",
    output:
        f"{RUN}/scores/epoch{{epoch}}.npz",
    log:
        f"{RUN_LOGS}/score_epoch{{epoch}}.log",
    benchmark:
        f"{RUN_BENCHMARKS}/score_epoch{{epoch}}.tsv"
    conda:
        "../envs/memcurv.yaml"
    threads: config["curvature"]["threads"]
    resources:
        gpu=1,
    params:
        n_probes=config["curvature"]["n_probes"],
        h=config["curvature"]["h"],
        form=config["curvature"]["form"],
        method=config["curvature"]["method"],
        precision=config["curvature"]["precision"],
        seed=lambda w: int(w.seed),
        # the dynamics figure and the privacy audit need the test samples' curvature
        score_test=config["figures"]["dynamics"] or config["privacy"]["enabled"],
        code=code_digest("score.py"),
    script:
        "../scripts/score.py"


rule average:
    input:
        labels=f"{RUN}/labels.csv",
        scores=expand(
            f"{RUN}/scores/epoch{{epoch}}.npz", epoch=SCORED_EPOCHS, allow_missing=True
        ),
    output:
        f"{RUN}/curvature.csv",
    log:
        f"{RUN_LOGS}/average.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        code=code_digest("average.py"),
    script:
        "../scripts/average.py"
