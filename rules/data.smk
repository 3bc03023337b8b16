# The dataset, split once, and the label corruption of each run.


rule prepare:
    output:
        "results/{dataset}/data.npz",
    log:
        "logs/{dataset}/prepare.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        test_fraction=config["data"]["test_fraction"],
        split_seed=config["data"]["split_seed"],
        root=config["data"]["root"],
        download=config["data"]["download"],
        verify_checksums=config["data"]["verify_checksums"],
        image_size=config["data"]["image_size"],
        code=source_digest("data", "io", "stages"),
    script:
        "../scripts/prepare.py"


rule corrupt:
    input:
        data="results/{dataset}/data.npz",
    output:
        f"{RUN}/labels.csv",
    log:
        f"{RUN_LOGS}/corrupt.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        rate=lambda w: float(w.rate),
        seed=lambda w: int(w.seed),
        code=source_digest("corruption", "io", "stages"),
    script:
        "../scripts/corrupt.py"
