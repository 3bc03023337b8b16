"""Every kind of bad configuration is refused, naming the key, before any job runs."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from memorization_curvature.config import (ConfigError, run_epochs, scored_epochs, training_recipe,
                                           validate_config)

from dataset_files import write_mnist
from workflow_helpers import snakemake_command

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())

# (overlay merged into config.yaml, the key the message must name)
BAD = [
    ({"surprise": 1}, "surprise"),
    ({"curvature": {"n_probs": 10}}, "curvature.n_probs"),
    ({"datasets": ["imagenet-but-misspelt"]}, "datasets[0]"),
    ({"datasets": []}, "datasets"),
    ({"noise_rates": [1.0]}, "noise_rates[0]"),
    ({"noise_rates": [-0.1]}, "noise_rates[0]"),
    ({"noise_rates": ["ten percent"]}, "noise_rates[0]"),
    ({"seeds": [0, 0]}, "seeds"),
    ({"seeds": [1.5]}, "seeds[0]"),
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"recipes": {"cifar10": {"lr": -1}}}, "recipes.cifar10.lr"),
    ({"recipes": {"cifar10": {"learning_rate": 0.1}}}, "recipes.cifar10.learning_rate"),
    ({"recipes": {"imagenet": {}}}, "recipes.imagenet"),
    ({"train": {"epochs": "ten"}}, "train.epochs"),
    ({"train": {"lr": 0}}, "train.lr"),
    ({"train": {"model": "resnet1000"}}, "train.model"),
    ({"train": {"device": "gpu please"}}, "train.device"),
    ({"curvature": {"n_probes": 0}}, "curvature.n_probes"),
    ({"curvature": {"h": 0}}, "curvature.h"),
    ({"curvature": {"h": -0.001}}, "curvature.h"),
    ({"curvature": {"h": "small"}}, "curvature.h"),
    ({"curvature": {"score_every": 13}}, "curvature.score_every"),
    ({"curvature": {"precision": "fp8"}}, "curvature.precision"),
    ({"curvature": {"precision": "bf16", "method": "hvp"}}, "curvature.precision"),
    ({"data": {"test_fraction": 1.0}}, "data.test_fraction"),
    ({"datasets": ["cifar10"], "data": {"root": "/nonexistent/data"}}, "data.root"),
    ({"baselines": {"el2n_epoch": 40}}, "baselines.el2n_epoch"),
    ({"duplicates": {"threshold": 1.5}}, "duplicates.threshold"),
    ({"baselines": {"cv_folds": 1}}, "baselines.cv_folds"),
    ({"baselines": {"statistics": "train_pass"}}, "baselines.statistics"),
    ({"cleaning": {"fractions": [1.5]}}, "cleaning.fractions[0]"),
    ({"cleaning": {"fractions": ["half"]}}, "cleaning.fractions[0]"),
    ({"cleaning": {"actions": ["drop"]}}, "cleaning.actions[0]"),
    ({"cleaning": {"review_top": 0}}, "cleaning.review_top"),
    ({"cleaning": {"methods": ["ssft"]}}, "cleaning.methods"),
    ({"privacy": {"enabled": "yes"}}, "privacy.enabled"),
    ({"privacy": {"enable": True}}, "privacy.enable"),
    ({"privacy": {"shadow_models": 3}}, "privacy.shadow_models"),
    ({"privacy": {"shadow_models": 4}}, "privacy.shadow_models"),
    ({"privacy": {"shadow_models": -4}}, "privacy.shadow_models"),
    ({"privacy": {"mask_seed": -1}}, "privacy.mask_seed"),
]


def merged(overlay):
    config = copy.deepcopy(DEFAULT)
    for key, value in overlay.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return config


def test_default_config_is_valid():
    validate_config(copy.deepcopy(DEFAULT), SCHEMA)


def test_defaults_are_filled_in():
    config = validate_config({"datasets": ["digits"], "noise_rates": [0.1], "seeds": [0]}, SCHEMA)
    assert config["curvature"]["n_probes"] == 10 and config["curvature"]["h"] == 0.001
    assert config["recipes"] == DEFAULT["recipes"]  # config.yaml shows the built-in recipes as they are


def test_each_dataset_defaults_to_its_own_recipe():
    config = validate_config(merged({"datasets": ["cifar10"], "data": {"download": True}}), SCHEMA)
    cifar = training_recipe(config, "cifar10")
    assert (cifar["model"], cifar["epochs"], cifar["lr"], cifar["batch_size"]) == ("resnet18_cifar", 200, 0.1, 128)
    assert cifar["weight_decay"] == 1e-4 and cifar["augment_shift"] == 4 and cifar["augment_flip"] is True
    digits = training_recipe(validate_config(merged({}), SCHEMA), "digits")
    assert (digits["model"], digits["epochs"], digits["augment_flip"]) == ("small_cnn", 12, False)


def test_train_keys_override_every_recipe_and_partial_recipes_keep_the_rest():
    config = validate_config(merged({"datasets": ["mnist", "cifar100"], "data": {"download": True},
                                     "train": {"weight_decay": 0},
                                     "recipes": {"cifar100": {"lr": 0.05}}}), SCHEMA)
    assert training_recipe(config, "mnist")["weight_decay"] == 0
    assert training_recipe(config, "cifar100")["weight_decay"] == 0
    assert training_recipe(config, "cifar100")["lr"] == 0.05 and training_recipe(config, "mnist")["lr"] == 0.1
    assert training_recipe(config, "cifar100")["batch_size"] == 128  # the default's other keys stay


def test_datasets_with_different_epochs_are_refused():
    with pytest.raises(ConfigError, match=r"train.epochs: .*digits 12, cifar10 200"):
        validate_config(merged({"datasets": ["digits", "cifar10"], "data": {"download": True}}), SCHEMA)
    config = validate_config(merged({"datasets": ["digits", "cifar10"], "data": {"download": True},
                                     "train": {"epochs": 5}}), SCHEMA)
    assert run_epochs(config) == 5


def test_numbers_written_as_text_are_read_as_numbers():
    # `snakemake --config seeds=[0,1]` passes "0" and "1"; YAML 1.1 reads 1e-3 as text
    config = merged({"seeds": ["0", "1"], "noise_rates": ["0.05"], "curvature": {"h": "1e-3"},
                     "train": {"augment_flip": "true"}})
    validate_config(config, SCHEMA)
    assert config["seeds"] == [0, 1] and config["noise_rates"] == [0.05]
    assert config["curvature"]["h"] == 0.001 and config["train"]["augment_flip"] is True


@pytest.mark.parametrize("overlay,key", BAD, ids=[k for _, k in BAD])
def test_bad_value_is_refused_with_its_key(overlay, key):
    with pytest.raises(ConfigError) as error:
        validate_config(merged(overlay), SCHEMA)
    assert f"  {key}" in str(error.value)
    assert "expected" in str(error.value)


@pytest.mark.parametrize("overlay,key", BAD[::4] + [BAD[-2]], ids=[k for _, k in BAD[::4] + [BAD[-2]]])
def test_dry_run_stops_on_bad_config(tmp_path, overlay, key):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(merged(overlay)))
    result = subprocess.run(
        snakemake_command(tmp_path, "-n"), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert key in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_a_cleaning_method_the_run_does_not_compute_is_named_at_the_dry_run(tmp_path):
    config = merged({"cleaning": {"methods": ["curvature", "aum", "ssft"]}, "baselines": {"history": ["csl"]}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(snakemake_command(tmp_path, "-n"), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "cleaning.methods: aum is not computed in this run" in output
    assert "cleaning.methods: ssft is not computed in this run" in output
    assert "expected one of curvature, csl, confident_learning, self_confidence" in output


def test_missing_dataset_files_are_named(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    with pytest.raises(ConfigError) as error:
        validate_config(merged({"datasets": ["cifar10"], "data": {"root": str(tmp_path)}}), SCHEMA)
    assert "cifar-10-batches-py/data_batch_2" in str(error.value)
    assert "cifar-10-batches-py/data_batch_1," not in str(error.value)
    validate_config(merged({"datasets": ["cifar10"], "data": {"root": str(tmp_path), "download": True}}), SCHEMA)


@pytest.mark.parametrize("dataset,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_files_in_the_real_layout_pass_the_planning_check(tmp_path, dataset, folder):
    """What the planning check asks for is where torchvision's reader finds it (test_datasets reads them)."""
    write_mnist(tmp_path, folder, n_train=4, n_test=2)
    config = validate_config(merged({"datasets": [dataset], "data": {"root": str(tmp_path)}}), SCHEMA)
    assert training_recipe(config, dataset)["model"] == "resnet18_cifar"
    other = {"MNIST": "fashion_mnist", "FashionMNIST": "mnist"}[folder]
    with pytest.raises(ConfigError, match=f"lacks the {other} files"):  # each dataset its own folder
        validate_config(merged({"datasets": [other], "data": {"root": str(tmp_path)}}), SCHEMA)


def test_scored_epochs_count_back_from_the_last():
    assert scored_epochs(12, 1) == list(range(1, 13))
    assert scored_epochs(10, 4) == [2, 6, 10]
    assert scored_epochs(200, 4)[-1] == 200 and len(scored_epochs(200, 4)) == 50


def test_each_concept_has_one_list_of_allowed_values():
    from memorization_curvature import baselines, batches, choices, cleaning, curvature, data, models, training
    from memorization_curvature.config import load_schema

    schema = load_schema(SCHEMA)
    props = schema["properties"]
    assert props["datasets"]["items"]["enum"] == list(choices.DATASETS)
    assert props["train"]["properties"]["model"]["enum"] == list(choices.MODELS)
    assert props["recipes"]["properties"]["cifar10"]["properties"]["model"]["enum"] == list(choices.MODELS)
    assert props["curvature"]["properties"]["form"]["enum"] == list(choices.CURVATURE_FORMS)
    assert props["curvature"]["properties"]["method"]["enum"] == list(choices.CURVATURE_METHODS)
    assert props["baselines"]["properties"]["history"]["items"]["enum"] == list(choices.HISTORY_METHODS)
    assert props["train"]["properties"]["placement"]["enum"] == list(choices.PLACEMENTS)
    assert props["baselines"]["properties"]["statistics"]["enum"] == list(choices.TRAINING_STATISTICS)
    # the schema file itself lists none of them: one list, in choices.py
    text = SCHEMA.read_text()
    assert props["cleaning"]["properties"]["actions"]["items"]["enum"] == list(choices.CLEANING_ACTIONS)
    assert not re.search(r"^\s+enum:", text, re.M) and len(re.findall(r"^\s+x-choices:", text, re.M)) == 9
    # and the code checks against the same objects
    assert models.MODELS is choices.MODELS and data.DATASETS is choices.DATASETS
    assert baselines.HISTORY_METHODS is choices.HISTORY_METHODS and batches.PLACEMENTS is choices.PLACEMENTS
    assert curvature.CURVATURE_FORMS is choices.CURVATURE_FORMS and cleaning.ACTIONS is choices.CLEANING_ACTIONS
    assert training.STATISTICS is choices.TRAINING_STATISTICS
    assert set(baselines.history_scores({k: np.ones((2, 3)) for k in ("loss", "correct", "margin", "p_given", "el2n")},
                                        choices.HISTORY_METHODS, el2n_epoch=1)) == set(choices.HISTORY_METHODS)
    for name in choices.MODELS:  # every listed model can be built
        models.build_model(name, in_channels=3, num_classes=10, image_size=32)
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model("vgg", in_channels=3, num_classes=10, image_size=32)


def test_a_partly_given_section_keeps_the_defaults_of_its_other_keys():
    config = merged({"recipes": {"digits": {"epochs": 3}}, "curvature": {"n_probes": 2}})
    for section in ("recipes", "curvature"):
        config[section] = {k: v for k, v in config[section].items() if k in ("digits", "n_probes")}
    validate_config(config, SCHEMA)
    assert config["recipes"]["digits"]["epochs"] == 3 and config["recipes"]["digits"]["lr"] == 0.01
    assert config["curvature"]["n_probes"] == 2 and config["curvature"]["h"] == 0.001
    assert config["recipes"]["cifar10"]["model"] == "resnet18_cifar"  # an absent dataset: its whole default


# What `snakemake --config KEY=VALUE` hands over: Snakemake's own parser (int, float, a boolean, then
# YAML's BaseLoader, which leaves every nested scalar a string), without the SLURM plugin's slow start.
PARSE_CLI = """
import json, sys
sys.path.insert(0, sys.argv[1])
from declared_only import block_undeclared
block_undeclared(())
from snakemake.cli import parse_config
print(json.dumps([parse_config([entry]) for entry in json.loads(sys.argv[2])]))
"""


def schema_keys(schema, path=()):
    """Every key of the schema that holds a value (not a section), as a path."""
    if schema.get("type") == "object" and schema.get("properties"):
        for key, sub in schema["properties"].items():
            yield from schema_keys(sub, path + (key,))
    else:
        yield path


def with_value(config, path, value):
    config = copy.deepcopy(config)
    section = config
    for key in path[:-1]:
        section = section.setdefault(key, {})
    section[path[-1]] = value
    return config


def value_at(config, path):
    for key in path:
        config = config[key]
    return config


def test_every_key_takes_on_the_command_line_what_it_takes_in_a_file():
    from memorization_curvature.config import RECIPE_KEYS, load_schema

    full = validate_config(copy.deepcopy(DEFAULT), SCHEMA)
    cases = []
    for path in schema_keys(load_schema(SCHEMA)):
        if path[0] == "train" and path[1] in RECIPE_KEYS:  # overrides of the recipes: no default
            cases.append((path, full["recipes"]["digits"][path[1]]))
        else:
            cases.append((path, value_at(full, path)))
    # values of the forms a key allows besides its default (a number or 'rate', a count or 'all', ...)
    cases += [(("cleaning", "fractions"), [0.2]), (("cleaning", "fractions"), ["rate", "2*rate", 0.3]),
              (("cleaning", "review_top"), 50), (("cleaning", "review_top"), "all"), (("seeds",), [0, 1]),
              (("noise_rates",), [0.0, 0.05]), (("curvature", "h"), 0.002), (("train", "lr_milestones"), [0.5]),
              (("datasets",), ["digits"]), (("duplicates", "top_k"), [5])]
    assert len(cases) > 60  # every key of the schema
    entries = []
    for path, value in cases:
        nested = value
        for key in reversed(path[1:]):
            nested = {key: nested}
        entries.append(f"{path[0]}={json.dumps(nested)}")
    result = subprocess.run([sys.executable, "-c", PARSE_CLI, str(REPO / "tests"), json.dumps(entries)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    wrong = []
    for (path, value), given in zip(cases, json.loads(result.stdout)):
        from_file = validate_config(with_value(DEFAULT, path, value), SCHEMA)
        cli = value_at(given, path)
        try:
            from_cli = validate_config(with_value(DEFAULT, path, cli), SCHEMA)
        except ConfigError as error:
            wrong.append(f"{'.'.join(path)}={cli!r}: {error}")
            continue
        if from_cli != from_file:
            wrong.append(f"{'.'.join(path)}: {value_at(from_cli, path)!r} from the command line, {value!r} from a file")
    assert not wrong, "\n".join(wrong)


def integer_keys(schema, path=()):
    """Every key of the schema that takes an integer (or a list of them, or an integer among other
    forms), as (path, whether a list)."""
    forms = schema.get("oneOf", [schema])
    if any(form.get("type") == "integer" for form in forms):
        yield path, False
    elif schema.get("type") == "array" and schema.get("items", {}).get("type") == "integer":
        yield path, True
    for key, sub in schema.get("properties", {}).items():
        yield from integer_keys(sub, path + (key,))


def test_a_whole_number_written_as_a_float_is_refused_where_an_integer_is_expected():
    # JSON Schema counts 16.0 as an integer: it passed the check and failed in a job (range(16.0))
    from memorization_curvature.config import RECIPE_KEYS, load_schema

    full = validate_config(copy.deepcopy(DEFAULT), SCHEMA)
    keys = list(integer_keys(load_schema(SCHEMA)))
    assert len(keys) > 30
    for path, listed in keys:
        # a valid integer (list) for the key: its default, or one the key takes
        if path[0] == "train" and path[1] in RECIPE_KEYS:  # overrides of the recipes: no default
            valid = full["recipes"]["digits"][path[1]]
        else:
            valid = {"shadow_models": 16, "review_top": 50}.get(path[-1], value_at(full, path))
        value = [float(v) for v in (valid or [2])] if listed else float(valid)
        config = with_value(DEFAULT, path, value)
        if path[-1] == "shadow_models":
            config["privacy"]["enabled"] = True
        with pytest.raises(ConfigError) as error:
            validate_config(config, SCHEMA)
        name = ".".join(path) + ("[0]" if listed else "")
        assert f"  {name}: {value[0] if listed else value!r}" in str(error.value), (name, str(error.value))
        assert "integer" in str(error.value), name
        validate_config(with_value(DEFAULT, path, [int(v) for v in value] if listed else int(value)), SCHEMA)
    with pytest.raises(ConfigError, match=r"train.epochs: True"):
        validate_config(merged({"train": {"epochs": True}}), SCHEMA)

