# The privacy audit: how much a run's network gives away which samples it trained on (membership
# inference), from what the run computes anyway: its training samples (members) against its test
# samples (non-members) by curvature, loss and LiRA's logit-scaled confidence.
# curvature.device, batch_size and train.placement, loader_workers change only speed: read in the job.


rule final_outputs:
    input:
        data=run_data,
        labels=f"{RUN}/labels.csv",
        checkpoint=f"{RUN}/checkpoints/epoch{EPOCHS}.pt",
    output:
        f"{RUN}/privacy/final_outputs.npz",
    log:
        f"{RUN_LOGS}/final_outputs.log",
    conda:
        "../envs/memcurv.yaml"
    threads: config["curvature"]["threads"]
    resources:
        gpu=1,
    params:
        code=code_digest("final_outputs.py"),
    script:
        "../scripts/final_outputs.py"


rule privacy_audit:
    input:
        labels=f"{RUN}/labels.csv",
        scores=expand(
            f"{RUN}/scores/epoch{{epoch}}.npz", epoch=SCORED_EPOCHS, allow_missing=True
        ),
        final=f"{RUN}/privacy/final_outputs.npz",
    output:
        table=report(
            f"{RUN}/privacy.csv",
            caption="../report/privacy_table.rst",
            category="{dataset}",
            subcategory="{variant}, seed {seed}",
            labels={
                "figure": "membership inference, table",
                "run": "{variant}",
                "seed": "{seed}",
            },
        ),
        figure=run_figure("privacy_roc", "privacy_roc", "membership inference"),
        files=siblings("privacy_roc"),
    log:
        f"{RUN_LOGS}/privacy_audit.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        run_title=run_title,
        code=code_digest("privacy_audit.py"),
    script:
        "../scripts/privacy_audit.py"
