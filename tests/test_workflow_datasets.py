"""Every dataset kind through the whole workflow, from tiny files in its real on-disk format."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dataset_files import write_cifar10, write_cifar100, write_imagefolder, write_mnist
from workflow_helpers import snakemake, write_config

# name: (image shape, training images, class name of label 3). Fashion-MNIST has MNIST's files and
# reader, with other class names (tests/test_datasets.py reads both): MNIST stands for it here.
EXPECTED = {
    "mnist": ((1, 28, 28), 48, "3 - three"),
    "cifar10": ((3, 32, 32), 50, "class3"),
    "cifar100": ((3, 32, 32), 48, "fine03"),
    "imagefolder": ((3, 16, 16), 48, "digit_3"),
}

# each dataset trains with its own recipe: ResNet18 in its CIFAR form (MNIST's one channel) and in its
# ImageNet form (an image folder); the CIFAR recipes here with the small network (given for these two
# datasets only), which the CPU trains and scores in a fraction of ResNet18's time
RECIPE_MODEL = {"mnist": "resnet18_cifar", "cifar10": "small_cnn", "cifar100": "small_cnn", "imagefolder": "resnet18"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("datasets")
    root = workdir / "data"
    # a few dozen images each: the test is about reading each format and running its recipe's network
    write_mnist(root, "MNIST", n_train=48, n_test=16)
    write_cifar10(root, per_batch=10, n_test=16)
    write_cifar100(root, n_train=48, n_test=16)
    write_imagefolder(root, per_class=6, size=20)
    write_config(workdir, {
        "datasets": list(EXPECTED),
        "noise_rates": [0.1],
        "seeds": [0],
        "data": {"root": "data", "verify_checksums": False, "image_size": 16},
        # streamed from the memory-mapped prepared file, as ImageNet-size data is (digits' own workflow
        # test holds its images on the device)
        "train": {"epochs": 1, "batch_size": 32, "threads": 1, "placement": "stream", "loader_workers": 1},
        "recipes": {"cifar10": {"model": "small_cnn"}, "cifar100": {"model": "small_cnn"}},
        "curvature": {"n_probes": 1},
        # about the readers: no test-set scoring for the dynamics figure, no duplicate search (the digits
        # workflow test covers both)
        "figures": {"top_k": 20, "dynamics": False},
        "duplicates": {"enabled": False},
        # nor the privacy audit (the digits workflow test covers it)
        "privacy": {"enabled": False},
        # ResNet18s train here: spare the 3 cross-validation trainings per dataset (the digits
        # workflow test covers Confident Learning)
        "baselines": {"confident_learning": False, "el2n_epoch": 1},
    })
    # what the tests read, not every target: each job costs a few seconds of start-up alone
    snakemake(workdir, "results/auroc.csv", *[f"results/{name}/noise0.1/seed0/figures/top_curvature.png"
                                              for name in EXPECTED])
    return workdir


@pytest.mark.parametrize("name", list(EXPECTED))
def test_dataset_runs_through_the_workflow(workdir, name):
    shape, n_train, class_three = EXPECTED[name]
    prepared = np.load(workdir / f"results/{name}/data.npz")
    assert prepared["train_images"].shape == (n_train, *shape)
    assert prepared["class_names"][3] == class_three
    run = workdir / f"results/{name}/noise0.1/seed0"
    labels = pd.read_csv(run / "labels.csv")
    assert len(labels) == n_train and labels["corrupted"].sum() == round(0.1 * n_train)
    checkpoint = torch.load(run / "checkpoints/epoch1.pt", weights_only=True)
    assert checkpoint["model_kwargs"]["in_channels"] == shape[0]
    # each dataset trains with its own recipe (config.yaml's recipes, shortened; the CIFAR ones' network given)
    assert checkpoint["model_name"] == RECIPE_MODEL[name]
    table = pd.read_csv(run / "curvature.csv")
    assert len(table) == n_train and np.isfinite(table["curvature"]).all() and (table["curvature"] >= 0).all()
    # exactly 0 is a true value: a ReLU network whose softmax is saturated at x and x + h v, with no
    # activation flipping in between, has the same input gradient at both (an epoch at lr 0.1 can leave
    # half the samples of the tiny image-folder run so, with one probe); many samples are not
    assert (table["curvature"] > 0).mean() > 0.3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["auroc"] == pytest.approx(roc_auc_score(table["corrupted"], table["curvature"]))
    assert (run / "figures/top_curvature.png").stat().st_size > 10_000
    assert "streamed by 1 worker(s)" in (workdir / f"logs/{name}/noise0.1/seed0/train.log").read_text()


def test_summary_has_every_dataset(workdir):
    summary = pd.read_csv(workdir / "results/auroc.csv")
    assert sorted(summary["dataset"]) == sorted(EXPECTED)
