"""Benchmark: does the host keep an H200 busy? The host's time per sample for training and scoring,
against the time an H200 needs for the network's FLOPs, at CIFAR-10 and ImageNet size.

For each size (CIFAR-10: 3x32x32, ResNet18 in CIFAR form, training batch 128; ImageNet: 3x224x224,
torchvision's ResNet18, training batch 256; scoring batch 256, n = 10, h = 1e-3):

1. FLOPs per sample of the network's passes, counted with ``torch.utils.flop_counter``'s formulas on
   our own code path (a training step: forward and backward; scoring: the clean input gradient and
   n probe passes of the BatchNorm-folded model), and the H200 time they take at 67 TFLOP/s fp32
   (scoring) and 989 TFLOP/s bf16 dense (training), at 100 % and 50 % efficiency: an ESTIMATE from
   the H200's data-sheet rates, not a measurement.
2. The host's time per sample of everything that is not the network's passes: our real per-batch
   loops (``training.epoch_batches``: order and augmentation drawn and sent once an epoch, then per
   batch the positions, the gather, shift and flip, normalization and labels; and
   ``curvature.score_batches`` over ``batches.LabelledBatches``: gather, normalization, probes,
   x + h v, the norms, with a one-matrix stand-in for the network whose n + 1 passes are counted in),
   run on this CPU with 1x1 images. The operations per batch are the same as at full size (counted
   there on PyTorch's meta device, which does shape work only, and printed beside), and each one
   finishes in microseconds, so the time is the host's: Python, dispatch, allocation. With CUDA each
   operation also pays a kernel launch of a few microseconds (not measured here). One host thread.
   Also the probes as drawn before this change (per sample on the CPU): the reference. And, for the
   record, the network's own operations per batch: on a GPU each is a kernel launch, and dividing
   the device time of a batch by their number gives the host time per launch above which the GPU
   would wait (eager PyTorch typically spends several microseconds per launch).
3. For streamed data, a loader worker's time to read a batch's pixels from a memory-mapped file
   (real reads, page cache warm), and how many workers keep up with the device.
4. On this CPU, for scale: achieved FLOP/s of real scoring and training as a fraction of this CPU's
   float32 peak (the best of large matrix products and a large convolution), measured in the same run.
5. The paper's configurations (configs/paper/) on one H200 from the FLOP counts, per run and per
   configuration, for each choice of scoring precision (float32 or bf16 by difference propagation)
   and statistics source (eval pass in float32 or bf16, or the training pass): an ESTIMATE.

    python bench/host_overhead.py               # about a minute on 2 cores
    python bench/host_overhead.py --repeats 5
    python bench/host_overhead.py --estimates-only   # section 5 alone, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from memorization_curvature import batches, io, models, training
from memorization_curvature.batches import DeviceImages, ImageSet, LabelledBatches
from memorization_curvature.curvature import curvature_scores, fold_batchnorm, input_gradient, score_batches

META = torch.device("meta")
H200_FP32 = 67e12  # FLOP/s, dense float32 (scoring stays in float32)
H200_BF16 = 989e12  # FLOP/s, dense bf16 tensor cores (training under bf16 autocast)
H200_TF32 = 494e12  # FLOP/s, dense TF32 tensor cores: float32 convolutions outside scoring (cuDNN allows TF32)
LAUNCH_US = 5.0  # a kernel launch of eager PyTorch, for the launch-bound case (README: GPU)
SIZES = {
    "CIFAR-10": {"model": "resnet18_cifar", "shape": (3, 32, 32), "classes": 10, "train_batch": 128, "shift": 4,
                 "samples": 50_000},
    "ImageNet": {"model": "resnet18", "shape": (3, 224, 224), "classes": 1000, "train_batch": 256, "shift": 16,
                 "samples": 256 * 8},
}
SCORE_BATCH, N_PROBES, H = 256, 10, 1e-3
TINY = (3, 1, 1)  # images the host-time loops run on: the same operations, next to no arithmetic
GOAL = 0.05


class Counter(TorchDispatchMode):
    """Counts operations, and FLOPs by torch.utils.flop_counter's formulas (works where the module-level
    FlopCounterMode cannot: under torch.autograd.grad with respect to the input)."""

    def __init__(self):
        super().__init__()
        self.ops, self.flops = 0, 0
        self.by_dtype: dict[torch.dtype, float] = {}  # FLOPs by the dtype of the operation's first tensor

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += 1
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            flops = formula(*args, **kwargs, out_val=out)
            self.flops += flops
            tensor = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if tensor is not None:
                self.by_dtype[tensor.dtype] = self.by_dtype.get(tensor.dtype, 0) + flops
        return out


class StandIn(nn.Module):
    """A network of one small matrix: the loops run in full while the network costs next to nothing."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, classes))

    def forward(self, x):
        return x.mean((2, 3)) @ self.weight


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def frozen(model: nn.Module) -> nn.Module:
    model = fold_batchnorm(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def recipe(size: dict, batch: int) -> training.TrainConfig:
    return training.TrainConfig(epochs=1, batch_size=batch, lr=0.1, momentum=0.9, weight_decay=1e-4,
                                lr_milestones=(0.6, 0.8), lr_gamma=0.1, augment_shift=size["shift"], augment_flip=True)


def image_set(shape: tuple[int, ...], samples: int) -> ImageSet:
    pixels = np.zeros((samples, *shape), dtype=np.uint8)
    return ImageSet(pixels, np.full(3, 120.0), np.full(3, 60.0), 255.0)


def network(size: dict, device) -> nn.Module:
    return models.build_model(size["model"], in_channels=size["shape"][0], num_classes=size["classes"],
                              image_size=size["shape"][1]).to(device)


def flops_per_sample(size: dict) -> dict[str, float]:
    """Network FLOPs per sample: a training step (forward + backward), an eval-mode forward pass (the
    per-epoch statistics), a scoring pass (n + 1 input-gradient passes)."""
    batch = 2
    x = torch.zeros(batch, *size["shape"], device=META)
    y = torch.zeros(batch, dtype=torch.long, device=META)
    model = network(size, META).train()
    with Counter() as count:
        F.cross_entropy(model(x), y).backward()
    train = count.flops / batch
    with Counter() as count, torch.no_grad():
        model.eval()(x)
    forward = count.flops / batch
    scorer = frozen(network(size, META))
    data = [(x, y, torch.arange(batch, device=META))]
    with Counter() as count:
        list(score_batches(scorer, data, device=META, dtype=torch.float32, channels_last=False, n_probes=N_PROBES,
                           seed=0, h=H, form="paper", method="finite_difference", probes_per_pass=1))
    return {"training": train, "forward": forward, "scoring": count.flops / batch}


@contextlib.contextmanager
def same_chunks(size: dict, batch: int):
    """Tiny images prepared in chunks of as many batches as full-size images would be."""
    full_bytes, tiny_bytes = 4 * int(np.prod(size["shape"])), 4 * int(np.prod(TINY))
    per_chunk = max(1, min(64, batches.CHUNK_BYTES // (full_bytes * batch)))
    saved, batches.CHUNK_BYTES = batches.CHUNK_BYTES, per_chunk * tiny_bytes * batch
    try:
        yield
    finally:
        batches.CHUNK_BYTES = saved


def count_ops(loop) -> int:
    with Counter() as count:
        loop()
    return count.ops


def host_time(size: dict, make_loop, batch: int, samples: int, repeats: int) -> dict[str, float]:
    """Host seconds per sample of ``make_loop(device, shape)()``, run on this CPU with tiny images (the
    same operations per batch as at full size, each finishing in microseconds), and the operations per
    batch at full size (counted on the meta device) and at tiny size (they must agree)."""
    full_ops = count_ops(make_loop(META, size["shape"])) / -(-samples // batch)
    with same_chunks(size, batch):
        loop = make_loop(torch.device("cpu"), TINY)
        loop()  # warm-up
        tiny_ops = count_ops(loop) / -(-samples // batch)
        seconds = median_time(loop, repeats)
    return {"seconds": seconds / samples, "ops_per_batch": full_ops, "tiny_ops_per_batch": tiny_ops}


def training_host(size: dict, repeats: int) -> dict[str, float]:
    """Host time of an epoch's batches as the network gets them (``training.epoch_batches``: order,
    augmentation drawn and sent once, then per batch the gather, shift and flip, normalization,
    labels), without the network's passes and the optimizer."""
    samples, batch = size["samples"], size["train_batch"]

    def make_loop(device, shape):
        train_x = DeviceImages(image_set(shape, samples), device, "device")
        labels = torch.zeros(samples, dtype=torch.long, device=device)
        config = recipe(size, batch)
        generator = torch.Generator().manual_seed(0)
        return lambda: [None for _ in training.epoch_batches(train_x, labels, config, generator, torch.channels_last)]

    return host_time(size, make_loop, batch, samples, repeats)


def scoring_host(size: dict, repeats: int) -> dict[str, float]:
    """Host time of the scoring loop (``curvature.score_batches`` over ``batches.LabelledBatches``:
    gather, normalization, probes, x + h v, the norms) with a one-matrix stand-in for the network:
    its n + 1 input-gradient passes per batch are counted in, so this is an upper bound."""
    samples = SCORE_BATCH * 4

    def make_loop(device, shape):
        data = LabelledBatches(image_set(shape, samples), np.zeros(samples, dtype=np.int64), SCORE_BATCH,
                               device=device)
        model = frozen(StandIn(3, size["classes"]).to(device))
        return lambda: [None for _ in score_batches(model, data, device=device, dtype=torch.float32, channels_last=True,
                                                    n_probes=N_PROBES, seed=0, h=H, form="paper",
                                                    method="finite_difference", probes_per_pass=1)]

    return host_time(size, make_loop, SCORE_BATCH, samples, repeats)


def network_ops(size: dict) -> dict[str, int]:
    """Operations (so, on a GPU, kernel launches) per batch of the network's own passes, counted at
    full size on the meta device: a training step's forward and backward; scoring's n + 1
    input-gradient passes."""
    batch = size["train_batch"]
    model = network(size, META).train()
    x = torch.zeros(batch, *size["shape"], device=META)
    y = torch.zeros(batch, dtype=torch.long, device=META)
    train = count_ops(lambda: F.cross_entropy(model(x), y).backward())
    scorer = frozen(network(size, META))
    x = torch.zeros(SCORE_BATCH, *size["shape"], device=META)
    y = torch.zeros(SCORE_BATCH, dtype=torch.long, device=META)
    score = count_ops(lambda: [input_gradient(scorer, x, y) for _ in range(N_PROBES + 1)])
    return {"training": train, "scoring": score}


def probes_before(size: dict, repeats: int) -> float:
    """Host seconds per sample of the probes as drawn before: per sample on the CPU (torch.Generator
    seeded per sample), float32, ready to be copied to the device."""
    samples = 64 if size["shape"][1] <= 64 else 4

    def draw():
        probes = torch.empty((samples, N_PROBES, *size["shape"]), dtype=torch.float32)
        generator = torch.Generator()
        for row in range(samples):
            generator.manual_seed(1000 + row)
            bits = torch.randint(0, 2, (N_PROBES, *size["shape"]), generator=generator, dtype=torch.int8)
            probes[row] = bits.to(torch.float32).mul_(2).sub_(1)

    draw()
    return median_time(draw, repeats) / samples


def loader_read(size: dict, repeats: int) -> float:
    """A loader worker's seconds per sample to gather a shuffled batch from the memory-mapped file."""
    samples, batch = size["samples"], size["train_batch"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.npz"
        pixels = np.random.default_rng(0).integers(0, 256, (samples, *size["shape"]), dtype=np.uint8)
        io.save_npz(path, train_images=pixels)
        images = ImageSet(io.load_npz(path, mmap=("train_images",))["train_images"], np.zeros(3), np.ones(3), 255.0)
        order = np.random.default_rng(1).permutation(samples)
        read = lambda: [images.pixels(order[s : s + batch]) for s in range(0, samples, batch)]  # noqa: E731
        read()
        return median_time(read, repeats) / samples


def cpu_efficiency(size: dict, peak: float, repeats: int) -> dict[str, float]:
    """Achieved FLOP/s of real scoring and training on this CPU, as a fraction of its matmul peak."""
    small = size["shape"][1] <= 64
    score_n, train_n = (8, 16) if small else (1, 2)
    x = torch.randn(max(score_n, train_n), *size["shape"])
    y = torch.zeros(len(x), dtype=torch.long)
    model = network(size, "cpu")
    score = lambda: curvature_scores(model, x[:score_n], y[:score_n], n_probes=N_PROBES, h=H)  # noqa: E731
    with Counter() as count:
        score()
    score_flops = count.flops
    score_seconds = median_time(score, repeats)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x[:train_n]), y[:train_n]).backward()
        optimizer.step()

    with Counter() as count:
        step()
    train_flops = count.flops
    train_seconds = median_time(step, repeats)
    return {"scoring": score_flops / score_seconds / peak, "training": train_flops / train_seconds / peak,
            "scoring_flops": score_flops / score_seconds, "training_flops": train_flops / train_seconds}


def matmul_peak(repeats: int) -> float:
    """This CPU's practical float32 peak: the best rate of large matrix products (1024 to 4096) and of
    a large 3x3 convolution, each the fastest of several runs."""
    rates = []
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        rates.append(2 * n**3 / min(median_time(lambda: a @ b, 1) for _ in range(max(3, repeats))))
    x, w = torch.randn(32, 256, 16, 16), torch.randn(256, 256, 3, 3)
    F.conv2d(x, w, padding=1)
    conv = min(median_time(lambda: F.conv2d(x, w, padding=1), 1) for _ in range(max(3, repeats)))
    rates.append(2 * 32 * 256 * 256 * 9 * 16 * 16 / conv)
    return max(rates)


# The paper's datasets: training and test images, image shape, classes.
PAPER_DATA = {"cifar10": (50_000, 10_000, (3, 32, 32), 10), "cifar100": (50_000, 10_000, (3, 32, 32), 100),
              "mnist": (60_000, 10_000, (1, 28, 28), 10), "fashion_mnist": (60_000, 10_000, (1, 28, 28), 10)}


def scoring_flops_bf16(size: dict) -> tuple[float, float]:
    """Scoring by difference propagation (`curvature.precision: bf16`): FLOPs per sample run in float32
    and in bf16, counted like :func:`flops_per_sample` (the clean pass and n propagated probes)."""
    from memorization_curvature import curvature, difference

    batch = 2
    model = frozen(network(size, "cpu"))
    propagation, why = difference.build(model, torch.bfloat16)
    if propagation is None:
        raise RuntimeError(f"{size['model']}: difference propagation does not cover it ({why})")
    x = torch.randn(batch, *size["shape"])
    y = torch.zeros(batch, dtype=torch.long)
    dx = H * curvature.rademacher_probes(torch.arange(batch), 1, size["shape"], 0)[:, 0]
    with Counter() as count:
        state = propagation.clean(x, y)
        for _ in range(N_PROBES):
            propagation.squared_norms(state, dx)
    return count.by_dtype.get(torch.float32, 0.0) / batch, count.by_dtype.get(torch.bfloat16, 0.0) / batch


# The choices that set a run's H200 time: scoring in float32 or bf16 (`curvature.precision`), and where
# the peer methods' per-epoch statistics come from (`baselines.statistics`; on CUDA the evaluation passes
# run in bf16 autocast, on the CPU in float32, the "eval pass, float32" row: as on CUDA before)
# a bf16 evaluation pass also evaluates in float32 its first samples (training.CALIBRATION_SAMPLES) and its
# near ties (at most 1.0 % of the samples on the default digits run, README)
NEAR_TIES = 0.01
STATISTICS_ROWS = {"eval pass, float32 (TF32)": ("eval_pass", H200_TF32), "eval pass, bf16": ("eval_pass", H200_BF16),
                   "training pass": ("training_pass", H200_BF16)}
RUN_GOAL_MINUTES = 30  # a CIFAR-10 run of the paper's recipe, scored every epoch, at 50 % of the data sheet


def paper_costs(repo: Path) -> tuple[list[str], list[str]]:
    """H200 time of each configs/paper/ configuration from the FLOP counts, per run and for the
    configuration's runs, for each choice of scoring precision and statistics source: training (the
    run's, Confident Learning's cross-validated trainings and the cleaning retrainings, bf16), the
    evaluation passes (the training set's after each epoch for the statistics, or only at EL2N's epoch
    under the training pass; the run's and the retrainings' test sets after each epoch, the
    cross-validated trainings' after their last), scoring every epoch or
    every 4th. ESTIMATES. Returns the table's rows and the goal's lines."""
    defaults = yaml.safe_load((repo / "config.yaml").read_text())
    rows, goal = [], []
    for path in sorted((repo / "configs/paper").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        merged = {key: {**value, **config.get(key, {})} if isinstance(value, dict) else config.get(key, value)
                  for key, value in defaults.items()}
        (dataset,) = merged["datasets"]
        recipe = {**merged["recipes"][dataset], **{k: v for k, v in merged["train"].items() if k in ("epochs", "model")}}
        n_train, n_test, shape, classes = PAPER_DATA[dataset]
        size = {"model": recipe["model"], "shape": shape, "classes": classes}
        flops = flops_per_sample(size)
        bf16_fp32_part, bf16_part = scoring_flops_bf16(size)
        runs, epochs = len(merged["noise_rates"]) * len(merged["seeds"]), recipe["epochs"]
        folds = merged["baselines"]["cv_folds"] if merged["baselines"]["confident_learning"] else 0
        cleaning = merged["cleaning"]
        # each cleaning, the unchanged control and the oracle: counted as whole trainings (removal trains fewer)
        retrains = (len(cleaning["methods"]) * len(cleaning["fractions"]) * len(cleaning["actions"]) + 2
                    if cleaning["enabled"] else 0)
        trained = n_train + folds * n_train * (folds - 1) / folds + retrains * n_train  # samples per epoch
        scored = n_train + (n_test if merged["figures"]["dynamics"] or merged["privacy"]["enabled"] else 0)
        train = epochs * trained * flops["training"] / H200_BF16
        scoring = {"float32": scored * flops["scoring"] / H200_FP32,
                   "bf16": scored * (bf16_fp32_part / H200_FP32 + bf16_part / H200_BF16)}  # per scored epoch
        # the other trainings' test sets: the cleaning retrainings' after each epoch, the cross-validated
        # trainings' after their last
        other_tests = (folds + epochs * retrains) * n_test
        for precision, per_epoch in scoring.items():
            for name, (statistics, rate) in STATISTICS_ROWS.items():
                statistics_samples = epochs * n_train if statistics == "eval_pass" else n_train  # EL2N's epoch
                evaluated = statistics_samples + epochs * n_test
                evaluation = (evaluated * flops["forward"] / rate + other_tests * flops["forward"] / H200_BF16)
                # bf16 passes: their calibration samples and near ties again in float32 (TF32), the other
                # trainings' test passes too
                bf16_passes, bf16_samples = folds + epochs * retrains, other_tests
                if rate == H200_BF16:
                    bf16_passes += (epochs if statistics == "eval_pass" else 1) + epochs
                    bf16_samples += evaluated
                again = bf16_passes * training.CALIBRATION_SAMPLES + NEAR_TIES * bf16_samples
                evaluation += again * flops["forward"] / H200_TF32
                every, fourth = epochs * per_epoch, -(-epochs // 4) * per_epoch
                run = train + evaluation + every
                rows.append(f"| {path.name} | {precision} | {name} | {train / 60:.1f} / {2 * train / 60:.1f} | "
                            f"{evaluation / 60:.1f} / {2 * evaluation / 60:.1f} | {every / 60:.1f} / {2 * every / 60:.1f} | "
                            f"**{run / 60:.1f} / {2 * run / 60:.1f}** | {runs * run / 3600:.1f} / {2 * runs * run / 3600:.1f} | "
                            f"{runs * (train + evaluation + fourth) / 3600:.1f} / "
                            f"{2 * runs * (train + evaluation + fourth) / 3600:.1f} |")
                if dataset == "cifar10":
                    # if every kernel launch takes LAUNCH_US, training waits for the launches, not the FLOPs
                    launches = network_ops({**SIZES["CIFAR-10"], "classes": classes})["training"]
                    bound = max(2 * train, epochs * trained / SIZES["CIFAR-10"]["train_batch"] * launches * LAUNCH_US * 1e-6)
                    launch_run = bound + 2 * (evaluation + every)
                    goal.append(f"{path.name}, scoring in {precision}, statistics from the {name}: one run, every epoch, "
                                f"{2 * run / 60:.1f} H200 minutes at 50 % (estimate): goal of {RUN_GOAL_MINUTES} min "
                                f"{'met' if 2 * run / 60 <= RUN_GOAL_MINUTES else 'missed'}; if launches of "
                                f"{LAUNCH_US:g} µs bound training ({launches} per step): {launch_run / 60:.1f} min")
        rows.append(f"| {path.name}: {runs} runs x {epochs} epochs, each with {folds} cross-validated trainings and "
                    f"{retrains} cleaning retrainings | | | | | | | | |")
    return rows, goal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="host threads (the goal is stated for one)")
    parser.add_argument("--estimates-only", action="store_true",
                        help="only the paper configurations' H200 estimates (FLOP counts, seconds)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.estimates_only:
        paper_estimates()
        return
    peak = matmul_peak(args.repeats)
    print(f"host: {args.threads} thread(s); this CPU's float32 peak (best of large matmuls and a 3x3 convolution): "
          f"{peak / 1e9:.1f} GFLOP/s")
    print(f"H200 rates used (data sheet, dense): {H200_FP32 / 1e12:.0f} TFLOP/s fp32 for scoring, "
          f"{H200_BF16 / 1e12:.0f} TFLOP/s bf16 for training; 'at 50 %' halves them. Device times are ESTIMATES.")
    print(f"scoring: n = {N_PROBES}, batch {SCORE_BATCH}. Host times: our loops run on this CPU with "
          f"{TINY[1]}x{TINY[2]} images (the same operations per batch as at full size, counted there on the meta "
          f"device), median of {args.repeats}\n")
    rows, network_rows, reads, efficiency = [], [], [], []
    for name, size in SIZES.items():
        flops = flops_per_sample(size)
        host = {"training": training_host(size, args.repeats), "scoring": scoring_host(size, args.repeats)}
        net = network_ops(size)
        before = probes_before(size, args.repeats)
        for kind, rate in (("training", H200_BF16), ("scoring", H200_FP32)):
            device_full, device_half = flops[kind] / rate, flops[kind] / (rate / 2)
            batch = size["train_batch"] if kind == "training" else SCORE_BATCH
            ratio = host[kind]["seconds"] / device_half
            rows.append(f"| {name} | {kind} (batch {batch}) | {flops[kind] / 1e9:.2f} | {device_full * 1e6:.2f} | "
                        f"{device_half * 1e6:.2f} | {host[kind]['seconds'] * 1e6:.3f} | "
                        f"{host[kind]['ops_per_batch']:.0f} ({host[kind]['tiny_ops_per_batch']:.0f}) | **{100 * ratio:.2f} %** | "
                        f"{'met' if ratio <= GOAL else 'MISSED'} |")
            network_rows.append(f"| {name} | {kind} | {net[kind]} | {device_half * batch * 1e6:,.0f} | "
                                f"{device_half * batch / net[kind] * 1e6:.1f} |")
        half = flops["scoring"] / (H200_FP32 / 2)
        rows.append(f"| {name} | reference: probes drawn on the host as before (scoring) | | | | "
                    f"{before * 1e6:.1f} | | {100 * before / half:.0f} % | (before) |")
        read = loader_read(size, args.repeats)
        train_half = flops["training"] / (H200_BF16 / 2)
        reads.append(f"| {name} | {read * 1e6:.2f} | {train_half * 1e6:.2f} | {int(np.ceil(read / train_half))} |")
        cpu = cpu_efficiency(size, peak, args.repeats)
        efficiency.append(f"| {name} | {cpu['scoring_flops'] / 1e9:.1f} GFLOP/s ({100 * cpu['scoring']:.0f} %) | "
                          f"{cpu['training_flops'] / 1e9:.1f} GFLOP/s ({100 * cpu['training']:.0f} %) |")
    print("Host time per sample of everything but the network's passes, against the H200 time of the network's FLOPs")
    print("(goal: host at most 5 % of the device time at 50 % efficiency)\n")
    print("| size | work | network GFLOP/sample | H200 µs/sample at 100 % (estimate) | at 50 % (estimate) | "
          "host µs/sample (measured) | host ops/batch at full size (1x1 run) | host / device at 50 % | goal |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nThe network's own passes, for the record (not part of the goal): operations per batch, and the host time per")
    print("operation (dispatch and kernel launch) above which the GPU would wait for the host\n")
    print("| size | work | network ops per batch (counted) | H200 µs per batch at 50 % (estimate) | "
          "break-even host µs per op |")
    print("|---|---|---|---|---|")
    print("\n".join(network_rows))
    print("\nStreamed data: a loader worker reading shuffled batches from the memory-mapped file (page cache warm)\n")
    print("| size | worker µs/sample (measured) | H200 training µs/sample at 50 % (estimate) | workers to keep up |")
    print("|---|---|---|---|")
    print("\n".join(reads))
    print("\nThis CPU, real arithmetic: achieved FLOP/s as a fraction of its own float32 peak measured above\n")
    print("| size | scoring (n = 10) | training step |")
    print("|---|---|---|")
    print("\n".join(efficiency))
    paper_estimates()


def paper_estimates() -> None:
    print("\nThe paper's configurations on one H200, from the FLOP counts, at 100 % / at 50 % of the data-sheet rates")
    print("(training and bf16 passes at the bf16 rate, float32 evaluation passes at the TF32 rate, float32 scoring at the")
    print("float32 rate: it turns TF32 off). ESTIMATES, not measurements.\n")
    print("| configuration | scoring | statistics | training, min per run | eval passes, min per run | "
          "scoring every epoch, min per run | total per run, min | total per configuration, h | "
          "per configuration, scoring every 4th, h |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows, goal = paper_costs(Path(__file__).resolve().parents[1])
    print("\n".join(rows))
    print()
    print("\n".join(goal))


if __name__ == "__main__":
    main()
