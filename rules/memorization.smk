# Duplicates with conflicting labels, and agreement with Feldman-Zhang memorization scores.


rule find_duplicates:
    input:
        data=run_data,
        table=f"{RUN}/curvature.csv",
    output:
        pairs=f"{RUN}/duplicates.csv",
        summary=report(
            f"{RUN}/duplicates_top_k.csv",
            caption="../report/duplicates_top_k.rst",
            category="{dataset}",
            subcategory="{variant}, seed {seed}",
            labels={
                "figure": "top-k in conflicting pairs",
                "run": "{variant}",
                "seed": "{seed}",
            },
        ),
        figure=run_figure("duplicates", "duplicates", "conflicting duplicates"),
        files=siblings("duplicates"),
    log:
        f"{RUN_LOGS}/find_duplicates.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        threshold=config["duplicates"]["threshold"],
        feature_size=config["duplicates"]["feature_size"],
        top_k=config["duplicates"]["top_k"],
        run_title=run_title,
        code=code_digest("find_duplicates.py"),
    script:
        "../scripts/find_duplicates.py"


rule compare_memorization:
    input:
        table=f"{RUN}/curvature.csv",
        scores=lambda w: config["feldman_zhang"]["files"][w.dataset],
    output:
        result=f"{RUN}/feldman_zhang.json",
        figure=run_figure(
            "feldman_zhang", "feldman_zhang", "Feldman-Zhang memorization"
        ),
        files=siblings("feldman_zhang"),
    log:
        f"{RUN_LOGS}/compare_memorization.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        top_k=config["feldman_zhang"]["top_k"],
        run_title=run_title,
        # dup runs replaced some images: the published scores hold for the untouched ones only
        images_replaced=lambda w: w.variant.startswith("dup"),
        code=code_digest("compare_memorization.py"),
    script:
        "../scripts/compare_memorization.py"
