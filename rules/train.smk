# Training on the corrupted labels, one checkpoint per epoch as declared outputs.


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
        model_name=config["train"]["model"],
        epochs=EPOCHS,
        batch_size=config["train"]["batch_size"],
        lr=config["train"]["lr"],
        momentum=config["train"]["momentum"],
        weight_decay=config["train"]["weight_decay"],
        lr_milestones=config["train"]["lr_milestones"],
        lr_gamma=config["train"]["lr_gamma"],
        augment_shift=config["train"]["augment_shift"],
        augment_flip=config["train"]["augment_flip"],
        bf16=config["train"]["bf16"],
        seed=lambda w: int(w.seed),
        device=config["train"]["device"],
        code=source_digest(
            "data", "models", "training", "baselines", "resume", "io", "stages"
        ),
    script:
        "../scripts/train.py"
