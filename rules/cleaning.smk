# From a ranking to a better model: suspects to review, then the run's recipe retrained after
# removing or relabelling the top of each chosen ranking, against the noisy training and an oracle.


rule suspects:
    input:
        table=f"{RUN}/curvature.csv",
        methods=f"{RUN}/methods.csv",
        history=f"{RUN}/train_history.npz",
        duplicates=lambda w: (
            [f"{RUN}/duplicates.csv".format(**w)]
            if config["duplicates"]["enabled"]
            else []
        ),
    output:
        f"{RUN}/suspects.csv",
    log:
        f"{RUN_LOGS}/suspects.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        review_top=CLEANING["review_top"],
        code=code_digest("suspects.py"),
    script:
        "../scripts/suspects.py"


rule clean_labels:
    input:
        labels=f"{RUN}/labels.csv",
        history=f"{RUN}/train_history.npz",
        # the ranking's own table only: another method's scores changing reruns nothing here
        scores=cleaning_scores,
    output:
        f"{RUN}/cleaning/{{cleaning}}.labels.csv",
    log:
        f"{RUN_LOGS}/cleaning/{{cleaning}}_labels.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        method=lambda w: cleaning_of(w)["method"],
        fraction=lambda w: cleaning_of(w)["fraction"],
        action=lambda w: cleaning_of(w)["action"],
        code=code_digest("clean_labels.py"),
    script:
        "../scripts/clean_labels.py"


rule retrain:
    input:
        data=run_data,
        labels=f"{RUN}/cleaning/{{cleaning}}.labels.csv",
    output:
        f"{RUN}/cleaning/{{cleaning}}.json",
    log:
        f"{RUN_LOGS}/cleaning/{{cleaning}}.log",
    benchmark:
        f"{RUN_BENCHMARKS}/retrain_{{cleaning}}.tsv"
    conda:
        "../envs/memcurv.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1,
    params:
        seed=lambda w: int(w.seed),
        device=config["train"]["device"],
        recipe=training_recipe_of,
        code=code_digest("retrain.py"),
    script:
        "../scripts/retrain.py"


rule cleaning_table:
    input:
        labels=f"{RUN}/labels.csv",
        train_metrics=f"{RUN}/train_metrics.csv",
        results=lambda w: [
            f"{RUN}/cleaning/{c['name']}.json".format(**w) for c in cleanings(w)
        ],
    output:
        table=f"{RUN}/cleaning.csv",
        figure=run_figure("cleaning", "cleaning", "cleaning and retraining"),
        files=siblings("cleaning"),
    log:
        f"{RUN_LOGS}/cleaning_table.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        cleanings=cleanings,
        run_title=run_title,
        code=code_digest("cleaning_table.py"),
    script:
        "../scripts/cleaning_table.py"


rule cleaning_summary:
    input:
        [f"{RUN}/cleaning.csv".format(**run) for run in cleaned_runs()],
    output:
        markdown=report(
            "results/summary/cleaning.md",
            caption="../report/cleaning_summary.rst",
            category="Across runs",
            labels={"figure": "cleaning and retraining, table"},
        ),
        figure=report(
            "results/summary/cleaning.png",
            caption="../report/cleaning_summary.rst",
            category="Across runs",
            labels={"figure": "cleaning and retraining"},
        ),
        # the numbers (mean, std, seeds per cleaning and noise rate) and the PDF beside the figure
        files=["results/summary/cleaning.csv", "results/summary/cleaning.pdf"],
    log:
        "logs/cleaning_summary.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        runs=cleaned_runs(),
        code=code_digest("cleaning_summary.py"),
    script:
        "../scripts/cleaning_summary.py"
