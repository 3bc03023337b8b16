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


# The shadow-model attack (privacy.shadow_models: K > 0): K trainings of the run's recipe, each on a
# seeded random half of its training set (every sample in exactly K/2 of them), each scored at its
# final epoch; every model is the target in turn, the others its shadows (LiRA; Curvature Clues).
SHADOW_MODELS = config["privacy"]["shadow_models"]
SHADOW = f"{RUN}/privacy/shadow"


rule shadow_masks:
    input:
        labels=f"{RUN}/labels.csv",
    output:
        f"{SHADOW}/masks.npz",
    log:
        f"{RUN_LOGS}/privacy/shadow_masks.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        models=SHADOW_MODELS,
        seed=config["privacy"]["mask_seed"],
        code=code_digest("shadow_masks.py"),
    script:
        "../scripts/shadow_masks.py"


rule shadow_train:
    input:
        data=run_data,
        labels=f"{RUN}/labels.csv",
        masks=f"{SHADOW}/masks.npz",
    output:
        f"{SHADOW}/model{{model}}.pt",
    log:
        f"{RUN_LOGS}/privacy/shadow_train{{model}}.log",
    benchmark:
        f"{RUN_BENCHMARKS}/shadow_train{{model}}.tsv"
    conda:
        "../envs/memcurv.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        seed=lambda w: int(w.seed),
        device=config["train"]["device"],
        recipe=training_recipe_of,
        code=code_digest("shadow_train.py"),
    script:
        "../scripts/shadow_train.py"


rule shadow_score:
    input:
        data=run_data,
        labels=f"{RUN}/labels.csv",
        checkpoint=f"{SHADOW}/model{{model}}.pt",
    output:
        f"{SHADOW}/model{{model}}.npz",
    log:
        f"{RUN_LOGS}/privacy/shadow_score{{model}}.log",
    benchmark:
        f"{RUN_BENCHMARKS}/shadow_score{{model}}.tsv"
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
        # the flipped image is a second query where the recipe trains on flips
        flip=lambda w: bool(RECIPES[w.dataset]["augment_flip"]),
        code=code_digest("shadow_score.py"),
    script:
        "../scripts/shadow_score.py"


rule shadow_attack:
    input:
        labels=f"{RUN}/labels.csv",
        masks=f"{SHADOW}/masks.npz",
        scores=expand(
            f"{SHADOW}/model{{model}}.npz",
            model=range(SHADOW_MODELS),
            allow_missing=True,
        ),
        curvature=f"{RUN}/curvature.csv",
        duplicates=lambda w: (
            [f"{RUN}/duplicates.csv".format(**w)]
            if config["duplicates"]["enabled"]
            else []
        ),
    output:
        table=report(
            f"{RUN}/privacy_attack.csv",
            caption="../report/privacy_attack_table.rst",
            category="{dataset}",
            subcategory="{variant}, seed {seed}",
            labels={
                "figure": "shadow-model attacks, table",
                "run": "{variant}",
                "seed": "{seed}",
            },
        ),
        per_target=f"{RUN}/privacy/attack_per_target.csv",
        samples=f"{RUN}/privacy_samples.csv",
        figure=run_figure(
            "privacy_attack_roc", "privacy_attack_roc", "shadow-model attacks"
        ),
        files=siblings("privacy_attack_roc"),
    log:
        f"{RUN_LOGS}/privacy/shadow_attack.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        run_title=run_title,
        code=code_digest("shadow_attack.py"),
    script:
        "../scripts/shadow_attack.py"
