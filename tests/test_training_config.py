"""The one path from a recipe to a training configuration."""

import pytest
import yaml

from memorization_curvature.config import RECIPE_KEYS
from memorization_curvature.training import TrainConfig
from workflow_helpers import REPO

RECIPE = {**yaml.safe_load((REPO / "config.yaml").read_text())["recipes"]["cifar10"], "bf16": False}


def test_a_recipe_becomes_the_training_configuration_key_by_key():
    config = TrainConfig.from_recipe(RECIPE, seed=7)
    assert {key: getattr(config, key) for key in RECIPE if key != "model"} == {
        **{k: v for k, v in RECIPE.items() if k != "model"}, "lr_milestones": (0.6, 0.8)}
    assert config.seed == 7
    # every recipe key of the configuration reaches training (model builds the network)
    assert set(RECIPE_KEYS) - {"model"} <= set(TrainConfig.__dataclass_fields__)


@pytest.mark.parametrize("change,named", [({"warmup_epochs": 5}, "warmup_epochs"), ({"augment_flip": None}, None)])
def test_a_key_training_does_not_know_or_lacks_is_refused(change, named):
    recipe = {**RECIPE, **change}
    if named is None:  # a missing key: no silent default
        del recipe["augment_flip"]
        named = "augment_flip"
    with pytest.raises(ValueError, match=named):
        TrainConfig.from_recipe(recipe, seed=0)


def test_one_list_of_recipe_keys_for_the_schema_the_train_overrides_and_training():
    from memorization_curvature.config import load_schema

    schema = load_schema(REPO / "schemas/config.schema.yaml")
    for dataset, recipe in schema["properties"]["recipes"]["properties"].items():
        assert set(recipe["properties"]) == set(RECIPE_KEYS), dataset
    # every recipe key may be given under train: for all datasets, and nothing else of training's
    train_keys = set(schema["properties"]["train"]["properties"])
    assert set(RECIPE_KEYS) <= train_keys
    assert set(RECIPE_KEYS) == set(TrainConfig.__dataclass_fields__) - {"seed", "bf16"} | {"model"}


def test_the_extra_trainings_train_the_recipe_they_are_given(tmp_path, monkeypatch):
    # crossval, ssft and retrain hand the recipe to the one training configuration unchanged
    import numpy as np
    import pandas as pd

    from memorization_curvature import training
    from memorization_curvature.stages import baselines, cleaning, data

    data.prepare("digits", tmp_path / "data.npz", test_fraction=0.2, split_seed=0)
    data.corrupt(tmp_path / "data.npz", tmp_path / "labels.csv", rate=0.1, seed=0)
    labels = pd.read_csv(tmp_path / "labels.csv")
    keep = np.arange(len(labels)) % 2 == 0
    labels.assign(label=labels["given_label"], keep=keep, flagged=~keep, cleaned=~keep).to_csv(
        tmp_path / "cleaned.csv", index=False)
    recipe = {**RECIPE, "model": "small_cnn", "epochs": 1, "batch_size": 64, "augment_shift": 1, "augment_flip": True}
    seen = []
    real = training.TrainConfig.from_recipe.__func__
    monkeypatch.setattr(training.TrainConfig, "from_recipe",
                        classmethod(lambda cls, given, seed: seen.append(dict(given)) or real(cls, given, seed)))
    common = dict(seed=0, recipe=recipe, device="cpu", threads=1)
    baselines.crossval_probabilities(tmp_path / "data.npz", tmp_path / "labels.csv", tmp_path / "p.npz", folds=2,
                                     **common)
    baselines.ssft(tmp_path / "data.npz", tmp_path / "labels.csv", tmp_path / "ssft.csv", **common)
    cleaning.retrain(tmp_path / "data.npz", tmp_path / "cleaned.csv", tmp_path / "r.json", **common)
    assert len(seen) == 2 + 4 + 1 and all(given == recipe for given in seen)
