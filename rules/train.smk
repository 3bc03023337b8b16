# Training on the corrupted labels, one checkpoint per epoch as declared outputs.
# train.placement and train.loader_workers change only how images reach the device: read from the
# config inside the job, not params, so changing them reruns nothing. train.device stays a param:
# on CUDA training runs in bf16 autocast, so the device changes the trained weights.


rule train:
    input:
        data=run_data,
        labels=f"{RUN}/labels.csv",
    output:
        checkpoints=checkpoint_outputs(),
        metrics=f"{RUN}/train_metrics.csv",
        history=f"{RUN}/train_history.npz",
    log:
        f"{RUN_LOGS}/train.log",
    benchmark:
        f"{RUN_BENCHMARKS}/train.tsv"
    conda:
        "../envs/memcurv.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        recipe=training_recipe_of,
        seed=lambda w: int(w.seed),
        device=config["train"]["device"],
        statistics=BASELINES["statistics"],
        eval_epochs=STATISTICS_EVAL_EPOCHS,
        code=code_digest("train.py"),
    script:
        "../scripts/train.py"
