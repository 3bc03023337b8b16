"""The peer methods' per-epoch statistics from the training pass (`baselines.statistics: training_pass`),
and the evaluation passes in bf16 (training's fast lane on CUDA; the CPU has autocast too)."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from torch import nn

from memorization_curvature import baselines, epoch_statistics, io, models, training
from memorization_curvature.batches import DeviceImages, ImageSet
from memorization_curvature.data import load_prepared
from memorization_curvature.stages import data, train

REPO = Path(__file__).resolve().parents[1]

CPU = torch.device("cpu")


def digits(n=None):
    data = load_digits()
    pixels = np.round(data.images * 255 / 16).astype(np.uint8)[:n, None]
    return ImageSet(pixels, np.array([pixels.mean() / 255]), np.array([pixels.std() / 255]), 255.0), torch.tensor(data.target[:n])


def recipe(epochs=1, batch_size=16, shift=0, flip=False):
    return training.TrainConfig(epochs=epochs, batch_size=batch_size, lr=0.05, momentum=0.9, weight_decay=0.0,
                                lr_milestones=(), lr_gamma=0.1, augment_shift=shift, augment_flip=flip, seed=3)


def test_the_training_pass_records_each_samples_logits_from_its_own_step():
    # a network without BatchNorm: a sample's logits do not depend on the rest of its batch
    images, labels = digits(200)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    reference = copy.deepcopy(model)
    config = recipe(batch_size=16)
    train_x = DeviceImages(images, CPU, "device", 0)
    _, recorded = training.train_epoch(model, training.sgd(model, config, CPU), train_x, labels, config,
                                       torch.Generator().manual_seed(7), record_logits=True)
    # the same epoch step by step: each batch's logits before its step, put back at the samples' places
    optimizer = training.sgd(reference, config, CPU)
    expected = torch.full((200, 10), float("nan"))
    for positions, x, y in training.epoch_batches(train_x, labels, config, torch.Generator().manual_seed(7)):
        logits = reference(x)
        expected[positions] = logits.detach()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(logits, y).backward()
        optimizer.step()
    assert recorded.shape == (200, 10) and torch.equal(recorded, expected)
    # not the logits of the trained network: the weights moved during the epoch
    with torch.no_grad():
        assert not torch.allclose(recorded, model(next(train_x.in_order(200))[1]))


def train_both_ways(epochs=3, eval_epochs=(2,)):
    images, labels = digits(300)
    test_images, test_labels = digits(60)
    runs = {}
    for statistics in training.STATISTICS:
        torch.manual_seed(1)
        model = models.build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
        seen = {}
        training.train(model, images, labels, test_images, test_labels, recipe(epochs, 32, shift=1), device=CPU,
                       on_epoch_end=lambda epoch, net, metrics, train_logits, eval_logits: seen.update(
                           {epoch: (dict(metrics), train_logits.clone(),
                                    None if eval_logits is None else eval_logits.clone())}),
                       placement="device", workers=0, statistics=statistics, eval_epochs=set(eval_epochs))
        runs[statistics] = (model.state_dict(), seen)
    return runs


def test_recording_the_training_pass_changes_no_weight_and_skips_the_evaluation_pass():
    runs = train_both_ways()
    (weights_eval, seen_eval), (weights_train, seen_train) = runs["eval_pass"], runs["training_pass"]
    assert weights_eval.keys() == weights_train.keys()
    assert all(torch.equal(weights_eval[key], weights_train[key]) for key in weights_eval)
    for epoch in (1, 2, 3):
        metrics_eval, logits_eval, evaluated = seen_eval[epoch]
        metrics_train, logits_train, evaluated_train = seen_train[epoch]
        assert metrics_eval["test_acc"] == metrics_train["test_acc"]
        assert torch.equal(evaluated, logits_eval)  # the eval pass's logits are the statistics' logits
        # augmented inputs, train-mode BatchNorm, weights moving: other logits than the eval pass's
        assert not torch.allclose(logits_train, logits_eval, atol=1e-3)
        if epoch == 2:  # EL2N's epoch keeps its evaluation pass, the same as the eval_pass run's
            assert torch.equal(evaluated_train, logits_eval)
        else:
            assert evaluated_train is None


def test_a_bf16_evaluation_pass_takes_float32s_argmax_at_near_ties():
    # two classes whose biases differ below bf16's resolution: in bf16 every sample ties (argmax 0), in
    # float32 the second class wins by a hair
    images, _ = digits(300)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    with torch.no_grad():
        model[1].weight[:] = torch.linspace(-0.5, 0.5, 64)
        model[1].bias[:] = torch.tensor([1.0, 1.0 + 2 ** -12])
    train_x = DeviceImages(images, CPU, "device", 0)
    float32 = training.predict_logits(model, train_x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain_bf16 = torch.cat([model(x).float() for _, x in train_x.in_order(1024)])
    assert (float32.argmax(1) == 1).all() and (plain_bf16.argmax(1) == 0).all()  # bf16 alone flips them all
    refined = training.predict_logits(model, train_x, bf16=True)
    assert torch.equal(refined.argmax(1), float32.argmax(1))
    assert torch.equal(refined, float32)  # each a near tie: evaluated again in float32 (the first 128 to calibrate)


def test_a_nan_in_the_bf16_calibration_sends_every_sample_back_to_float32():
    # the near-tie model, whose first sample's logits are NaN in the pass's first two evaluations (the
    # first batch in bf16, then in float32 to calibrate): the error measured is NaN, which compares
    # false with every gap
    images, _ = digits(300)

    class NaNAtFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls, self.linear = 0, nn.Linear(64, 2)

        def forward(self, x):
            self.calls += 1
            logits = self.linear(x.flatten(1))
            return torch.cat([torch.full_like(logits[:1], float("nan")), logits[1:]]) if self.calls <= 2 else logits

    model = NaNAtFirst()
    with torch.no_grad():
        model.linear.weight[:] = torch.linspace(-0.5, 0.5, 64)
        model.linear.bias[:] = torch.tensor([1.0, 1.0 + 2 ** -12])
    refined = training.predict_logits(model, DeviceImages(images, CPU, "device", 0), bf16=True)
    assert (refined[1:].argmax(1) == 1).all()  # float32's argmax, at every other sample
    assert refined[0].isnan().all()  # what float32 gave the first


def test_testing_after_chosen_epochs_only_changes_no_weight():
    # the extra trainings (cross-validation, SSFT, shadow models) test after their last epoch only
    images, labels = digits(200)
    test_images, test_labels = digits(80)
    runs = {}
    for test_epochs in (None, [3]):
        torch.manual_seed(2)
        model = models.build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
        accuracy = {}
        training.train(model, images, labels, test_images, test_labels, recipe(3, 32, shift=1), device=CPU,
                       on_epoch_end=lambda epoch, net, metrics, *_: accuracy.update({epoch: metrics["test_acc"]}),
                       placement="device", workers=0, statistics="training_pass", test_epochs=test_epochs)
        runs[str(test_epochs)] = (model.state_dict(), accuracy)
    (every, every_acc), (last, last_acc) = runs["None"], runs["[3]"]
    assert all(torch.equal(every[key], last[key]) for key in every)
    assert all(np.isfinite(every_acc[epoch]) for epoch in (1, 2, 3))
    assert np.isnan(last_acc[1]) and np.isnan(last_acc[2]) and last_acc[3] == every_acc[3] > 0.3


def test_bad_statistics_are_refused_before_training():
    images, labels = digits(40)
    model = models.build_model("small_cnn", in_channels=1, num_classes=10, image_size=8)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="'train_pass'.*eval_pass.*training_pass"):
        training.train(model, images, labels, images, labels, recipe(), device=CPU, on_epoch_end=lambda *_: None,
                       statistics="train_pass")
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_el2n_at_an_epoch_without_an_evaluation_pass_is_refused():
    history = np.full((3, 5), np.nan)
    history[1] = 0.5
    assert np.array_equal(baselines.el2n(history, 2), np.full(5, 0.5))
    with pytest.raises(ValueError, match="EL2N at epoch 3 was not evaluated"):
        baselines.el2n(history, 3)


def test_evaluation_passes_in_bf16_rank_like_float32(tmp_path):
    # the default run (digits, 10 % wrong labels, seed 0, the default recipe), evaluated after every
    # epoch in float32 and in bf16 autocast, in training's fast lane (channels_last) as on CUDA
    data.prepare("digits", tmp_path / "data.npz", test_fraction=0.2, split_seed=0)
    data.corrupt(tmp_path / "data.npz", tmp_path / "labels.csv", rate=0.1, seed=0)
    prepared = load_prepared(tmp_path / "data.npz")
    table = pd.read_csv(tmp_path / "labels.csv")
    given, corrupted = torch.tensor(table["given_label"].to_numpy()), table["corrupted"].to_numpy(bool)
    images, test_images = ImageSet.of(prepared, "train"), ImageSet.of(prepared, "test")
    default = yaml.safe_load((REPO / "config.yaml").read_text())["recipes"]["digits"]
    config = training.TrainConfig.from_recipe({**default, "bf16": True}, 0)
    torch.manual_seed(0)
    model = models.for_data(default["model"], prepared)[0]
    train_x = DeviceImages(images, CPU, "device", 0)
    logits = {"float32": [], "bf16": []}

    def evaluate(epoch, net, *_):
        logits["float32"].append(training.predict_logits(net, train_x).numpy())
        logits["bf16"].append(training.predict_logits(net, train_x, bf16=True,
                                                      memory_format=torch.channels_last).numpy())

    training.train(model, images, given, test_images, torch.from_numpy(prepared.test_labels), config, device=CPU,
                   on_epoch_end=evaluate, placement="device", workers=0, statistics="training_pass")
    histories = {}
    for precision, per_epoch in logits.items():
        stats = [epoch_statistics.epoch_statistics(epoch_logits, given.numpy()) for epoch_logits in per_epoch]
        histories[precision] = {key: np.stack([s[key] for s in stats]) for key in stats[0]}
    assert not np.array_equal(logits["bf16"][-1], logits["float32"][-1])  # evaluated the other way
    for key in ("loss", "margin", "p_given", "el2n"):
        for epoch in range(config.epochs):
            rho = spearmanr(histories["bf16"][key][epoch], histories["float32"][key][epoch]).statistic
            assert rho >= 0.999, (key, epoch, rho)
    # near ties evaluated again in float32: every argmax is float32's
    assert np.array_equal(histories["bf16"]["correct"], histories["float32"]["correct"])
    scores = {precision: baselines.history_scores(history, baselines.HISTORY_METHODS, el2n_epoch=2)
              for precision, history in histories.items()}
    gaps = {}
    for method in baselines.HISTORY_METHODS:
        bf16, float32 = (roc_auc_score(corrupted, scores[p][method]) for p in ("bf16", "float32"))
        gaps[method] = abs(bf16 - float32)
    print("AUROC, bf16 against float32 evaluation:", {m: round(g, 5) for m, g in gaps.items()})
    assert max(gaps.values()) <= 0.002, gaps
    assert roc_auc_score(corrupted, scores["float32"]["aum"]) > 0.9  # the network did find the wrong labels


def test_evaluation_passes_run_in_trainings_fast_lane_on_cuda_only():
    fast = recipe()
    slow = training.TrainConfig(**{**fast.__dict__, "bf16": False})
    assert training.eval_lane(torch.device("cuda"), fast) == {"bf16": True, "memory_format": torch.channels_last}
    assert training.eval_lane(torch.device("cuda:1"), slow) == {"bf16": False, "memory_format": torch.channels_last}
    assert training.eval_lane(CPU, fast) == {"bf16": False, "memory_format": torch.contiguous_format}


STAGE_RECIPE = dict(model="small_cnn", epochs=4, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0,
                    lr_milestones=[0.6, 0.8], lr_gamma=0.1, augment_shift=1, augment_flip=False, bf16=True)


def test_the_training_job_keeps_what_is_read_off_the_network_from_its_evaluation_passes(tmp_path):
    data.prepare("digits", tmp_path / "data.npz", test_fraction=0.2, split_seed=0)
    data.corrupt(tmp_path / "data.npz", tmp_path / "labels.csv", rate=0.1, seed=0)
    histories, metrics = {}, {}
    for statistics, eval_epochs in (("eval_pass", []), ("training_pass", [2, 4])):
        folder = tmp_path / statistics
        train.train(tmp_path / "data.npz", tmp_path / "labels.csv", [folder / f"epoch{e}.pt" for e in range(1, 5)],
                    folder / "metrics.csv", folder / "history.npz", recipe=STAGE_RECIPE, seed=0, device="cpu",
                    threads=1, statistics=statistics, eval_epochs=eval_epochs)
        histories[statistics], metrics[statistics] = io.load_npz(folder / "history.npz"), pd.read_csv(folder / "metrics.csv")
    evaluated, recorded = histories["eval_pass"], histories["training_pass"]
    # from the evaluation passes at EL2N's epoch and the last, the same as the eval_pass run's (same weights)
    for epoch in (2, 4):
        assert np.array_equal(recorded["el2n"][epoch - 1], evaluated["el2n"][epoch - 1])
    assert np.array_equal(recorded["eval_loss"][3], evaluated["loss"][3])
    assert np.array_equal(recorded["eval_p_given"][3], evaluated["p_given"][3])
    assert all(np.isnan(recorded[key][[0, 2]]).all() for key in ("el2n", "eval_loss", "eval_p_given"))
    # the rest from the training pass: augmented inputs, weights moving: not the evaluation's
    assert not np.allclose(recorded["loss"], evaluated["loss"])
    given = pd.read_csv(tmp_path / "labels.csv")["given_label"].to_numpy()
    methods = ["final_loss", "in_confidence", "el2n"]
    same = {s: baselines.history_scores(h, methods, el2n_epoch=2) for s, h in histories.items()}
    for method in methods:
        assert np.array_equal(same["training_pass"][method], same["eval_pass"][method]), method
    assert len(given) == recorded["loss"].shape[1]
    # train_metrics.csv says where each epoch's fitted share comes from, and the last is the evaluation's
    assert metrics["training_pass"]["fitted_from"].tolist() == ["training_pass", "eval_pass", "training_pass",
                                                                "eval_pass"]
    assert metrics["eval_pass"]["fitted_from"].eq("eval_pass").all()
    for column in ("train_acc_given", "corrupted_fitted", "test_acc"):
        assert metrics["training_pass"][column].iloc[-1] == metrics["eval_pass"][column].iloc[-1]
