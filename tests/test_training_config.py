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
