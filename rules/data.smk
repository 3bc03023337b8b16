# The dataset, split once, and the label corruption of each run.


rule prepare:
    output:
        "results/{dataset}/data.npz",
    log:
        "logs/{dataset}/prepare.log",
    conda:
        "../envs/memcurv.yaml"
    threads: config["data"]["threads"]
    params:
        test_fraction=config["data"]["test_fraction"],
        split_seed=config["data"]["split_seed"],
        root=config["data"]["root"],
        download=config["data"]["download"],
        verify_checksums=config["data"]["verify_checksums"],
        image_size=config["data"]["image_size"],
        code=code_digest("prepare.py"),
    script:
        "../scripts/prepare.py"


rule corrupt:
    input:
        data="results/{dataset}/data.npz",
    output:
        "results/{dataset}/noise{rate}/seed{seed}/labels.csv",
    log:
        "logs/{dataset}/noise{rate}/seed{seed}/corrupt.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        rate=lambda w: float(w.rate),
        seed=lambda w: int(w.seed),
        code=code_digest("corrupt.py"),
    script:
        "../scripts/corrupt.py"


rule inject_duplicates:
    input:
        data="results/{dataset}/data.npz",
    output:
        data="results/{dataset}/dup{copies}/seed{seed}/data.npz",
        labels="results/{dataset}/dup{copies}/seed{seed}/labels.csv",
    log:
        "logs/{dataset}/dup{copies}/seed{seed}/inject_duplicates.log",
    conda:
        "../envs/memcurv.yaml"
    params:
        copies=lambda w: int(w.copies),
        seed=lambda w: int(w.seed),
        code=code_digest("inject_duplicates.py"),
    script:
        "../scripts/inject_duplicates.py"
