"""What `rnnkit train` is asked to do, from its flags and an optional TOML file, checked before any work.

Every setting has one home:

* the run: ``task``, ``train``, ``dev``, ``out`` (the run directory) and ``batch_size``;
* ``training``: the fields of ``rnnkit.train.TrainConfig`` (``epochs``, ``lr``, ``seed``, ...; its
  ``out_dir`` is ``out``);
* ``model``: the recipe's model options (``rnnkit.recipes.base.COMMON_MODEL_DEFAULTS`` and the
  recipe's ``model_defaults``: ``cell``, ``hidden``, ``crf``, ...);
* ``data``: the recipe's data options (``format``, ``lowercase``, ...).

A TOML file may hold them as flat keys (each goes to the one home that knows it) or in ``[model]``,
``[data]`` and ``[training]`` tables::

    task = "tag"
    train = "en_ewt-ud-train.conllu"
    dev = "en_ewt-ud-dev.conllu"
    out = "runs/upos"
    epochs = 5
    [model]
    hidden = 256
    crf = true

Flags override the file; ``--option KEY=VALUE`` sets a model or data option (``model.KEY`` or
``data.KEY`` where a key is both), its value read as JSON where it parses (``true``, ``3``, ``0.5``,
``null``) and as a string otherwise. A key no home knows fails naming the nearest known key.
"""
from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..recipes import RECIPE_MODULES
from ..recipes.base import (COMMON_MODEL_DEFAULTS, Recipe, data_options_for, get_recipe, model_options_for,
                            resolve_options)
from ..train import TrainConfig

RUN_DEFAULTS: dict[str, Any] = {"task": None, "train": None, "dev": None, "out": None, "batch_size": 32}
TRAINING_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig) if f.name != "out_dir"}
TABLES = ("model", "data", "training")


@dataclass
class TrainSettings:
    """A checked request to train: what ``rnnkit.recipes.run.train`` takes."""

    task: str
    train: str
    dev: str | None
    out: str
    batch_size: int
    config: TrainConfig
    model_options: dict[str, Any] = field(default_factory=dict)   # with the recipe's defaults filled in
    data_options: dict[str, Any] = field(default_factory=dict)
    given_model_options: dict[str, Any] = field(default_factory=dict)   # only what the user set
    given_data_options: dict[str, Any] = field(default_factory=dict)


def resolve_settings(config_file: str | Path | None, flags: dict[tuple[str, str], Any],
                     options: list[str] | tuple[str, ...] = ()) -> TrainSettings:
    """Merge the TOML file (if any), then the flags given on the command line (``{(home, key): value}``
    with home ``run``, ``training`` or ``model``), then the ``--option KEY=VALUE`` strings."""
    tables, flat = read_config_file(config_file) if config_file is not None else ({}, {})
    task = flags.get(("run", "task"), flat.get("task"))
    if task is None:
        raise ValueError(f"no task: pass --task ({', '.join(RECIPE_MODULES)}) "
                         "or set task = \"...\" in the TOML file")
    if not isinstance(task, str):
        raise ValueError(f"task must be a string naming a recipe, got {task!r}")
    recipe = get_recipe(task)
    homes = {"run": dict(RUN_DEFAULTS), "training": {}, "model": {}, "data": {}}
    for key, value in flat.items():
        homes[_home_of(key, recipe)][key] = value
    for table, values in tables.items():
        homes[table].update(values)
    for (home, key), value in flags.items():
        homes[home][key] = value
    for option in options:
        key, value = parse_option(option)
        home, key = _option_home(key, recipe)
        homes[home][key] = value
    return _checked(recipe, homes)


def read_config_file(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The ``[model]``, ``[data]`` and ``[training]`` tables of a TOML file and its flat keys."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    tables, flat = {}, {}
    for key, value in document.items():
        if isinstance(value, dict):
            if key not in TABLES:
                raise ValueError(f"{path}: unknown table [{key}]{_nearest(key, TABLES)}; "
                                 f"tables: {', '.join(f'[{t}]' for t in TABLES)}")
            tables[key] = value
        else:
            flat[key] = value
    return tables, flat


def parse_option(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` → ``(KEY, VALUE read as JSON, or the string where it is not JSON)``."""
    key, equals, raw = text.partition("=")
    if not equals or not key.strip():
        raise ValueError(f"--option must be KEY=VALUE (e.g. --option crf=true), got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _home_of(key: str, recipe: Recipe) -> str:
    """Where a flat key of the TOML file belongs; refuse unknown and ambiguous keys."""
    homes = {"run": RUN_DEFAULTS, "training": TRAINING_DEFAULTS, **_option_homes(recipe)}
    found = [home for home, known in homes.items() if key in known]
    if len(found) > 1:
        raise ValueError(f"{key!r} is both a {found[0]} and a {found[1]} setting of {recipe.name}; "
                         f"put it in a [{found[-1]}] table")
    if not found:
        every = {name: None for known in homes.values() for name in known}
        resolve_options({key: None}, every, f"{recipe.name}")    # raises, naming the nearest key
    return found[0]


def _option_home(key: str, recipe: Recipe) -> tuple[str, str]:
    """Where ``--option KEY=...`` belongs: ``model`` or ``data`` (a ``model.``/``data.`` prefix says)."""
    homes = _option_homes(recipe)
    prefix, dot, rest = key.partition(".")
    if dot and prefix in homes:
        return prefix, rest
    found = [home for home, known in homes.items() if key in known]
    if len(found) > 1:
        raise ValueError(f"--option {key}: {key!r} is both a model and a data option of {recipe.name}; "
                         f"write model.{key} or data.{key}")
    if not found:
        resolve_options({key: None}, {**homes["model"], **homes["data"]}, f"{recipe.name} model or data")
    return found[0], key


def _option_homes(recipe: Recipe) -> dict[str, dict[str, Any]]:
    return {"model": {**COMMON_MODEL_DEFAULTS, **recipe.model_defaults}, "data": dict(recipe.data_defaults)}


def _checked(recipe: Recipe, homes: dict[str, dict[str, Any]]) -> TrainSettings:
    run = resolve_options(homes["run"], RUN_DEFAULTS, "run")
    for key, flag in (("train", "--train FILE"), ("out", "--out DIR")):
        if run[key] is None:
            raise ValueError(f"no {key}: pass {flag} or set {key} = \"...\" in the TOML file")
    for key in ("train", "dev", "out"):
        if run[key] is not None and not isinstance(run[key], str):
            raise ValueError(f"{key} must be a path string, got {run[key]!r}")
    if isinstance(run["batch_size"], bool) or not isinstance(run["batch_size"], int) or run["batch_size"] < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {run['batch_size']!r}")
    training = resolve_options(homes["training"], TRAINING_DEFAULTS, "training")
    return TrainSettings(task=recipe.name, train=run["train"], dev=run["dev"], out=run["out"],
                         batch_size=run["batch_size"], config=TrainConfig(**training, out_dir=run["out"]),
                         model_options=model_options_for(recipe, homes["model"]),
                         data_options=data_options_for(recipe, homes["data"]),
                         given_model_options=dict(homes["model"]), given_data_options=dict(homes["data"]))


def _nearest(key: str, known) -> str:
    near = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean [{near[0]}]?)" if near else ""
