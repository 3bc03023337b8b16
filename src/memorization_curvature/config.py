"""Checking the workflow's configuration before any job runs, with messages that name the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import re

import jsonschema
import yaml

from . import choices
from .data import DATA_FILES

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
# cleaning.fractions: a number, "rate" or "k*rate" (the run's noise rate, times k)
_RATE = re.compile(r"^(?:(\d+(?:\.\d+)?)\*)?rate$")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _key_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error.validator == "additionalProperties":
        # the offending key is in the message, not in the path
        extra = ",".join(sorted(set(error.instance) - set(error.schema.get("properties", {}))))
        path = f"{path}.{extra}" if path else extra
    return path or "<top level>"


_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def _expected(error: jsonschema.ValidationError) -> str:
    """What the schema allows at the failing key, e.g. 'number > 0 (finite-difference step)'."""
    schema = error.schema
    if error.validator == "additionalProperties":
        return "one of the known keys: " + ", ".join(sorted(schema.get("properties", {})))
    if error.validator == "required":
        return "the key to be present"
    description = schema.get("description")
    return _allowed(schema) + (f" ({description})" if description else "")


def _allowed(schema: dict) -> str:
    if "oneOf" in schema:
        return " or ".join(_allowed(option) for option in schema["oneOf"])
    if "const" in schema:
        return repr(schema["const"])
    words = [str(schema.get("type", "value"))]
    words += [f"{op} {schema[key]}" for key, op in _BOUNDS if key in schema]
    if "enum" in schema:
        words.append("one of " + ", ".join(map(str, schema["enum"])))
    if "pattern" in schema:
        words.append(f"matching {schema['pattern']}")
    if "minItems" in schema:
        words.append(f"with at least {schema['minItems']} item(s)")
    if schema.get("uniqueItems"):
        words.append("without repeated values")
    return " ".join(words)


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Validate ``config`` against the JSON schema, fill in defaults, and check cross-key rules.

    Raises :class:`ConfigError` listing every bad key as ``key: problem; expected ...``.
    """
    schema = load_schema(schema_path)
    _coerce_numbers(config, schema)
    validator_cls = _whole_integers(_filling_defaults(jsonschema.validators.validator_for(schema)))
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    messages = [f"  {_key_path(e)}: {e.message}; expected {_expected(e)}" for e in errors]
    if not messages:
        messages = [f"  {key}: {problem}" for key, problem in _cross_checks(config)]
    if messages:
        raise ConfigError("invalid configuration:\n" + "\n".join(messages))
    return config


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Numbers and booleans written as text become numbers and booleans.

    ``snakemake --config seeds=[0,1]`` passes list items as strings (every value nested in a
    ``--config`` entry is text), and YAML 1.1 reads ``1e-3`` as a string; both mean the number. A key
    that takes several forms (``oneOf``) takes the first the text reads as.
    """
    options = schema.get("oneOf") or schema.get("anyOf")
    if options:
        # the first form the value takes, read as that form (cleaning.review_top: 50 or all)
        for option in options:
            candidate = _coerce(copy.deepcopy(value), option)
            if jsonschema.validators.validator_for(option)(option).is_valid(candidate):
                return candidate
        return value
    kind = schema.get("type")
    if isinstance(value, str):
        text = value.strip()
        if kind == "integer" and _INTEGER.match(text):
            return int(text)
        if kind == "number" and _NUMBER.match(text):
            return float(text)
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
    elif isinstance(value, list) and "items" in schema:
        return [_coerce(item, schema["items"]) for item in value]
    elif isinstance(value, dict):
        _coerce_numbers(value, schema)
    return value


def _coerce_numbers(config: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key in config:
            config[key] = _coerce(config[key], sub)


def load_schema(schema_path: str | Path) -> dict[str, Any]:
    """The config schema, each ``x-choices: NAME`` replaced by ``enum: choices.NAME``."""

    def resolve(node):
        if isinstance(node, dict):
            resolved = {key: resolve(value) for key, value in node.items() if key != "x-choices"}
            if "x-choices" in node:
                resolved["enum"] = list(getattr(choices, node["x-choices"]))
            return resolved
        return [resolve(item) for item in node] if isinstance(node, list) else node

    return resolve(yaml.safe_load(Path(schema_path).read_text()))


def _whole_integers(validator_class):
    """``validator_class`` for which an integer is a Python int: JSON Schema counts 16.0 as an integer,
    and such a value (``shadow_models: 16.0``) passed the check only to fail in a job, as a count or
    index (``range(16.0)``). Booleans are not integers either."""
    def is_integer(checker, instance):
        return isinstance(instance, int) and not isinstance(instance, bool)

    return jsonschema.validators.extend(validator_class,
                                        type_checker=validator_class.TYPE_CHECKER.redefine("integer", is_integer))


def _filling_defaults(validator_class):
    """``validator_class`` that also fills in defaults as it validates (jsonschema's documented
    extension of the ``properties`` keyword): a missing key gets its default, and an object given in
    part (``recipes: {digits: {epochs: 3}}``) keeps the keys of its default it does not set."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def fill_then_validate(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for key, sub in properties.items():
                if "default" not in sub:
                    continue
                if key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
                elif isinstance(sub["default"], dict) and isinstance(instance[key], dict):
                    for name, value in sub["default"].items():
                        instance[key].setdefault(name, copy.deepcopy(value))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_then_validate})


# The keys of a training recipe: set per dataset under ``recipes``; one given under ``train`` wins
# for every dataset (the user's explicit choice over the dataset's default).
RECIPE_KEYS = ("model", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_milestones", "lr_gamma",
               "augment_shift", "augment_flip")


def training_recipe(config: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The recipe ``dataset`` trains with: ``recipes.<dataset>`` overridden by recipe keys under ``train``."""
    recipe = dict(config.get("recipes", {}).get(dataset, {}))
    recipe.update({key: config["train"][key] for key in RECIPE_KEYS if key in config["train"]})
    return recipe


def run_epochs(config: dict[str, Any]) -> int:
    """Training epochs of every run (checked by validate_config to be the same for all datasets)."""
    return training_recipe(config, config["datasets"][0])["epochs"]


def _recipe_checks(config: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    recipes = {d: training_recipe(config, d) for d in config["datasets"]}
    for dataset, recipe in recipes.items():
        missing = [key for key in RECIPE_KEYS if key not in recipe]
        if missing:
            problems.append((f"recipes.{dataset}", f"lacks {', '.join(missing)}; expected every recipe key, in "
                                                   f"recipes.{dataset} or under train"))
    if problems:
        return problems
    epochs = {d: r["epochs"] for d, r in recipes.items()}
    if len(set(epochs.values())) > 1:
        listed = ", ".join(f"{d} {e}" for d, e in epochs.items())
        problems.append(("train.epochs", f"the datasets train for different epochs ({listed}); expected one number "
                                         "for all datasets of a run: set train.epochs, or run them separately"))
        return problems
    epochs = run_epochs(config)
    every = config["curvature"]["score_every"]
    if every > epochs:
        problems.append(("curvature.score_every", f"{every} is larger than the epochs ({epochs}); expected <= {epochs}"))
    if config["baselines"]["el2n_epoch"] > epochs and "el2n" in config["baselines"]["history"]:
        problems.append(("baselines.el2n_epoch", f"{config['baselines']['el2n_epoch']} is larger than the epochs "
                                                 f"({epochs}); expected <= {epochs}"))
    return problems


def _cross_checks(config: dict[str, Any]) -> list[tuple[str, str]]:
    problems = _recipe_checks(config)
    scoring = config["curvature"]
    if scoring["precision"] != "float32" and scoring["method"] != "finite_difference":
        problems.append(("curvature.precision", f"{scoring['precision']} applies to the finite difference, not to "
                                                f"method {scoring['method']}; expected float32, or method "
                                                "finite_difference"))
    shadows = config["privacy"]["shadow_models"]
    if shadows and (shadows < 6 or shadows % 2):
        problems.append(("privacy.shadow_models", f"{shadows}; expected 0 (off) or an even number of at least 6 "
                                                  "(models in pairs that split the training set; a target's "
                                                  "shadows, all but it and its partner, hold every sample IN "
                                                  "for two models or more, and OUT too)"))
    computed = computed_methods(config["baselines"])
    for method in config["cleaning"]["methods"]:
        if method not in computed:
            problems.append(("cleaning.methods", f"{method} is not computed in this run; expected one of "
                                                 f"{', '.join(computed)} (switch a peer method on under baselines)"))
    root = Path(config["data"]["root"])
    for dataset in config["datasets"]:
        missing = [f for f in {**DATA_FILES, "imagefolder": ("train",)}.get(dataset, ()) if not (root / f).exists()]
        if missing and not config["data"]["download"]:
            problems.append(("data.root", f"{str(root)!r} lacks the {dataset} files {', '.join(missing)}; expected "
                                          "them there (see the README), or data.download: true"))
    return problems


# Settings that change speed, memory or placement, never a result: jobs read them from the config
# (never rule params), so changing one reruns nothing. step -> {argument of the stage: (section, key)}.
# Thread counts travel as each rule's `threads:`, which Snakemake does not rerun for either.
RUNTIME_SETTINGS = {
    "train": {"placement": ("train", "placement"), "loader_workers": ("train", "loader_workers")},
    "score": {"batch_size": ("curvature", "batch_size"), "probes_per_pass": ("curvature", "probes_per_pass"),
              "device": ("curvature", "device"), "placement": ("train", "placement"),
              "loader_workers": ("train", "loader_workers"),
              "checkpoints_per_job": ("curvature", "checkpoints_per_job")},
    "final_outputs": {"batch_size": ("curvature", "batch_size"), "device": ("curvature", "device"),
                      "placement": ("train", "placement"), "loader_workers": ("train", "loader_workers")},
    "shadow_score": {"batch_size": ("curvature", "batch_size"), "probes_per_pass": ("curvature", "probes_per_pass"),
                     "device": ("curvature", "device"), "placement": ("train", "placement"),
                     "loader_workers": ("train", "loader_workers")},
}


def runtime_settings(config: dict[str, Any], step: str) -> dict[str, Any]:
    """The speed-only settings of a step (``train`` covers every training job), as stage arguments."""
    return {argument: config[section][key] for argument, (section, key) in RUNTIME_SETTINGS[step].items()}


def scored_epochs(epochs: int, score_every: int) -> list[int]:
    """Epochs whose checkpoints are scored: every ``score_every``-th, counted back from the last."""
    return sorted(range(epochs, 0, -score_every))


def rate_label(rate: float) -> str:
    """How a noise rate is written in paths: 0.1 -> '0.1', 0.0 -> '0'."""
    return f"{float(rate):g}"


# What the rules plan for cleaning (rules/common.smk), checked here with the rest of the configuration.


def computed_methods(baselines: dict) -> list[str]:
    """Every ranking a run computes under the ``baselines`` config: curvature and the peer methods."""
    methods = ["curvature", *baselines["history"]]
    if baselines["confident_learning"]:
        methods += ["confident_learning", "self_confidence"]
    if baselines["ssft"]:
        methods.append("ssft")
    return methods


def fraction_of(spec: float | str, rate: float) -> float | None:
    """A fraction of ``cleaning.fractions``: a number, or ``rate`` / ``k*rate`` (the run's noise rate,
    times k); None where that is not in (0, 1) (a clean run)."""
    if isinstance(spec, str):
        match = _RATE.match(spec)
        if match is None:
            raise ValueError(f"cleaning fraction {spec!r}: expected a number in (0, 1), 'rate' or 'k*rate'")
        spec = float(match.group(1) or 1) * rate
    return float(spec) if 0 < spec < 1 else None


def fraction_label(fraction: float) -> str:
    """How a fraction is written in file names: 0.1 -> '0.1'."""
    return f"{fraction:g}"
