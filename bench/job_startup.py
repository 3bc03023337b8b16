"""Benchmark: the fixed cost of one scoring job, against the H200 time of the scoring itself.

A scoring job is a fresh process: the interpreter, Snakemake's script preamble and the imports (torch
above all), the prepared dataset (memory-mapped) and the labels, the checkpoint and the network, and
the first batch's one-time work. Each is MEASURED here, in fresh processes, at CIFAR-10 size (50,000
+ 10,000 uint8 images, ResNet18 CIFAR form), median of --repeats. On a GPU the job also creates its
CUDA context (not measurable here; bench/gpu_check.py measures it).

The scoring pass it is compared with is an ESTIMATE: the FLOPs of the CIFAR-10 training set's scoring
(n = 10; bench/precision.py's count, as in the README) at the H200's data-sheet rates.
With `curvature.checkpoints_per_job: B`, one process scores B checkpoints and pays all but the
checkpoint and network once; the other B - 1 jobs only start Python without torch and move their
scores into place (also measured): the table shows the fixed cost per checkpoint for a few B.

    python bench/job_startup.py                 # about a minute here
    python bench/job_startup.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TRAIN, TEST, SHAPE, CLASSES = 50_000, 10_000, (3, 32, 32), 10
GOAL = 0.10  # fixed cost at most this fraction of the scoring pass

# Run in a fresh process: each phase of a scoring job's start, timed from the interpreter's start.
PHASES = r"""
import json, sys, time
import numpy as np
started = float(sys.argv[1])
marks = {"interpreter": time.time() - started}
t = time.perf_counter()
import snakemake.script  # what Snakemake's script preamble imports
import pandas as pd
from memorization_curvature import gpu_slots
from memorization_curvature.config import runtime_settings
from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import score
import torch
from memorization_curvature import batches, checkpoints, curvature, data, difference, models, training
marks["imports"] = time.perf_counter() - t
t = time.perf_counter()
import torchvision.models  # ResNet18's definition, imported by the first ResNet the job builds
marks["torchvision (for ResNet18)"] = time.perf_counter() - t
t = time.perf_counter()
prepared = data.load_prepared(sys.argv[2])
labels = pd.read_csv(sys.argv[3])
train_set = batches.LabelledBatches(batches.ImageSet.of(prepared, "train"), labels["given_label"].to_numpy(), 256,
                                    device=torch.device("cpu"), placement="device")
marks["dataset and labels"] = time.perf_counter() - t
t = time.perf_counter()
model, epoch = checkpoints.load_model(sys.argv[4])
marks["checkpoint and network"] = time.perf_counter() - t
x, y = prepared.train_images[:8], labels["given_label"].to_numpy()[:8]
images = batches.ImageSet.of(prepared, "train").normalize(torch.from_numpy(np.asarray(x)))
y = torch.from_numpy(y)
first = time.perf_counter()
curvature.curvature_scores(model, images, y, n_probes=1)
first = time.perf_counter() - first
second = time.perf_counter()
curvature.curvature_scores(model, images, y, n_probes=1)
second = time.perf_counter() - second
marks["first batch's one-time work"] = max(first - second, 0.0)
print(json.dumps(marks))
"""

# A job whose scores another process made ahead (curvature.checkpoints_per_job): no torch.
TAKE = r"""
import sys, time
started = float(sys.argv[1])
import snakemake.script
from memorization_curvature import gpu_slots, score_ahead
from memorization_curvature.config import runtime_settings
from memorization_curvature.job_log import logging_to
from memorization_curvature.stages import score
print(time.time() - started)
"""


def make_inputs(folder: Path) -> tuple[Path, Path, Path]:
    """A CIFAR-10-size prepared dataset, its labels table and a ResNet18 checkpoint, in the formats the
    workflow writes (random pixels: only sizes matter here)."""
    import numpy as np
    import pandas as pd
    from memorization_curvature import checkpoints, data as datasets, io, models

    rng = np.random.default_rng(0)
    data = folder / "data.npz"
    prepared = datasets.PreparedData(
        train_images=rng.integers(0, 256, (TRAIN, *SHAPE), dtype=np.uint8), train_labels=rng.integers(0, CLASSES, TRAIN),
        test_images=rng.integers(0, 256, (TEST, *SHAPE), dtype=np.uint8), test_labels=rng.integers(0, CLASSES, TEST),
        train_source_index=np.arange(TRAIN), mean=np.full(3, 0.5), std=np.full(3, 0.25), pixel_max=255.0,
        class_names=np.array([str(c) for c in range(CLASSES)]))
    io.save_npz(data, **prepared.to_arrays())
    labels = folder / "labels.csv"
    given = rng.integers(0, CLASSES, TRAIN)
    pd.DataFrame({"index": np.arange(TRAIN), "given_label": given, "true_label": given, "corrupted": False}).to_csv(
        labels, index=False)
    kwargs = dict(in_channels=3, num_classes=CLASSES, image_size=32)
    model = models.build_model("resnet18_cifar", **kwargs)
    checkpoint = folder / "epoch1.pt"
    io.save_torch(checkpoint, checkpoints.checkpoint("resnet18_cifar", kwargs, model, 1))
    return data, labels, checkpoint


def measure_take(repeats: int) -> float:
    times = [float(subprocess.run([sys.executable, "-c", TAKE, repr(time.time())], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(repeats)]
    return statistics.median(times)


def measure(inputs, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", PHASES, repr(time.time()), *map(str, inputs)],
                             capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr)
        runs.append(json.loads(out.stdout))
    return {phase: statistics.median(run[phase] for run in runs) for phase in runs[0]}


def scoring_pass_estimates() -> dict[str, float]:
    """Seconds an H200 needs for the CIFAR-10 training set's scoring (n = 10), at 100 % of peak."""
    sys.path.insert(0, str(BENCH))
    import precision

    float32, bf16 = precision.cifar_estimates()[:2]
    return {"float32": float32, "bf16": bf16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        phases = measure(make_inputs(Path(folder)), args.repeats)
    take = measure_take(args.repeats)
    estimates = scoring_pass_estimates()
    fixed = sum(phases.values())
    print(f"One scoring job's fixed cost at CIFAR-10 size on this machine (MEASURED, median of {args.repeats} fresh "
          "processes; no CUDA context here):\n")
    print("| phase | seconds |")
    print("|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds:.2f} |")
    print(f"| **total** | **{fixed:.2f}** |")
    print(f"\nA job whose scores were made ahead (interpreter and imports without torch): {take:.2f} s")
    per_job = fixed - phases["checkpoint and network"]  # what a process scoring several checkpoints pays once
    print("\nAgainst the CIFAR-10 scoring pass on an H200 (ESTIMATE from FLOP counts at 100 % of peak; goal: fixed "
          f"cost at most {GOAL:.0%} of it), per checkpoint, when one process scores B checkpoints:\n")
    print("| checkpoints per job (B) | fixed s per checkpoint | of the float32 pass "
          f"({estimates['float32']:.0f} s) | of the bf16 pass ({estimates['bf16']:.1f} s) |")
    print("|---|---|---|---|")
    for block in (1, 4, 10, 40):
        each = per_job / block + phases["checkpoint and network"] + take * (block - 1) / block
        print(f"| {block} | {each:.2f} | {each / estimates['float32']:.1%} | {each / estimates['bf16']:.1%} |")


if __name__ == "__main__":
    main()
