"""The baselines that train models of their own (cross-validation, SSFT), on real digits."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from memorization_curvature import io
from memorization_curvature.stages import baselines, data

RECIPE = dict(model="small_cnn", epochs=4, batch_size=16, lr=0.01, momentum=0.9, weight_decay=0.0, lr_milestones=[0.6, 0.8],
              lr_gamma=0.1, augment_shift=0, augment_flip=False, bf16=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("baselines")
    data.prepare("digits", folder / "data.npz", test_fraction=0.2, split_seed=0)
    data.corrupt(folder / "data.npz", folder / "labels.csv", rate=0.1, seed=0)
    return folder


def test_ssft_finds_corrupted_labels(run):
    baselines.ssft(run / "data.npz", run / "labels.csv", run / "ssft.csv", seed=0, recipe=RECIPE, device="cpu",
                   threads=1)
    scores = pd.read_csv(run / "ssft.csv")
    labels = pd.read_csv(run / "labels.csv")
    assert scores["ssft"].between(0, RECIPE["epochs"]).all()
    assert roc_auc_score(labels["corrupted"], scores["ssft"]) > 0.8


def test_crossval_probabilities_are_out_of_sample(run):
    baselines.crossval_probabilities(run / "data.npz", run / "labels.csv", run / "probs.npz", folds=3, seed=0,
                                     recipe=RECIPE, device="cpu", threads=1)
    arrays = io.load_npz(run / "probs.npz")
    labels = pd.read_csv(run / "labels.csv")
    np.testing.assert_allclose(arrays["probs"].sum(1), 1.0, rtol=1e-5)
    assert sorted(np.bincount(arrays["fold"])) == [479, 479, 479]
    per_class = np.stack([np.bincount(labels["given_label"][arrays["fold"] == f], minlength=10) for f in range(3)])
    assert (per_class.max(0) - per_class.min(0)).max() <= 1  # stratified by the given labels
    predicted = arrays["probs"].argmax(1)
    clean = ~labels["corrupted"].to_numpy()
    # held-out models trained on noisy labels still predict the true class of most samples ...
    assert (predicted == labels["true_label"].to_numpy())[clean].mean() > 0.9
    # ... and so disagree with most corrupted given labels, which is what Confident Learning uses
    assert (predicted != labels["given_label"].to_numpy())[~clean].mean() > 0.7
    baselines.confident_learning(run / "labels.csv", run / "probs.npz", run / "cl.csv")
    scores = pd.read_csv(run / "cl.csv")
    assert roc_auc_score(labels["corrupted"], scores["confident_learning"]) > 0.9
    assert roc_auc_score(labels["corrupted"], scores["self_confidence"]) > 0.9


def test_ssft_fine_tunes_in_an_order_drawn_from_the_run_seed(run, monkeypatch):
    # every training SSFT starts, with the seed of its order, recorded as it goes to the real trainer
    from memorization_curvature import training

    real_train, seen = training.train, []

    def recording(model, images, *args, **kwargs):
        seen.append((len(images), args[3].seed))
        return real_train(model, images, *args, **kwargs)

    monkeypatch.setattr(training, "train", recording)
    one_epoch = {**RECIPE, "epochs": 1}
    seeds = {}
    for run_seed in (0, 1):
        seen.clear()
        baselines.ssft(run / "data.npz", run / "labels.csv", run / f"ssft{run_seed}.csv", seed=run_seed,
                       recipe=one_epoch, device="cpu", threads=1)
        assert len(seen) == 4  # per half: learn it, then fine-tune on the other half
        seeds[run_seed] = [seed for _, seed in seen]
    # four different orders within a run, and none shared between runs of different seeds
    assert len(set(seeds[0])) == 4 and len(set(seeds[1])) == 4
    assert not set(seeds[0]) & set(seeds[1])
