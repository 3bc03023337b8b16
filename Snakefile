# memorization-curvature: find memorized, mislabeled and conflicting training samples by the
# curvature of the loss around each sample (Garg, Ravikumar & Roy, ICML 2024).
#
# Results, one folder per experiment run (dataset, variant, seed); the variant is noise{rate}
# (labels corrupted at random) or dup{m} (m images replaced by relabelled copies of others):
#   results/{dataset}/data.npz                                  images, labels, train/test split
#   results/{dataset}/{variant}/seed{seed}/labels.csv           given vs true labels, corrupted flag
#       .../checkpoints/epoch{epoch}.pt                         one checkpoint per training epoch
#       .../train_metrics.csv                                   loss and accuracies per epoch
#       .../scores/epoch{epoch}.npz                             curvature of every sample, per checkpoint
#       .../curvature.csv                                       curvature averaged over scored epochs
#       .../metrics.json                                        AUROC for finding the corrupted labels
#       .../figures/{top_curvature,bottom_curvature,per_class,curvature_hist,roc,dynamics}.{png,pdf,csv}
#   results/auroc.csv                                           one row per run
#   results/summary/auroc_vs_noise.{png,pdf,csv}, auroc_table.md   mean +- std over seeds
# Logs mirror this under logs/, timings of expensive jobs under benchmarks/.

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# Scripts import the package from this checkout (also under --use-conda or on a cluster node),
# so the code that runs is always the code the workflow's provenance digests describe.
_SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, _SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(filter(None, [_SRC, os.environ.get("PYTHONPATH")]))
)

from memorization_curvature.config import validate_config
from memorization_curvature.gpu_slots import SLOTS_VARIABLE, too_many_slots

# `--resources gpu=N`: jobs inherit N and each claims one of N GPUs (gpu_slots.py). N above
# the GPUs of this machine (when it has any) is refused before any job; only where jobs run
# on this machine, and not in a job's own snakemake (a subprocess, or a SLURM job).
_GPUS = workflow.global_resources.get("gpu")
_IN_A_JOB = (
    workflow.subprocess_exec or workflow.remote_exec or os.environ.get("SLURM_JOB_ID")
)
if _GPUS is not None and _GPUS.value is not None:
    os.environ[SLOTS_VARIABLE] = str(_GPUS.value)
    _REFUSED = (
        None
        if _IN_A_JOB or not workflow.local_exec
        else too_many_slots(int(_GPUS.value))
    )
    if _REFUSED:
        raise WorkflowError(_REFUSED)
else:
    os.environ.pop(SLOTS_VARIABLE, None)


configfile: "config.yaml"


validate_config(config, workflow.source_path("schemas/config.schema.yaml"))


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/score.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"
include: "rules/baselines.smk"
include: "rules/memorization.smk"
include: "rules/cleaning.smk"
include: "rules/privacy.smk"


rule all:
    default_target: True
    input:
        all_targets(),
