"""What a recipe is: one way of using a recurrent network, end to end, from files to predictions.

A recipe joins the pieces that must not know each other (``docs/architecture.md``): the readers of
``rnnkit.data``, a model of ``rnnkit.models``, the metrics, and the ``Trainer``'s task interface.
The ``rnnkit`` command and ``rnnkit.recipes.run`` drive every recipe the same way:

    records = recipe.read(path, data_options)                   # a plain list, file:line on errors
    state = recipe.prepare(train_records, model_options, data_options)   # a RecipeState
    model = recipe.build_model(state)                           # a torch.nn.Module
    batches = recipe.batches(records, state, batch_size, shuffle=..., seed=...)
    task = recipe.task(state)                                   # rnnkit.train.task.Task
    for line in recipe.predict(model, state, lines): ...

``prepare`` builds the vocabularies from the training records and may complete the data options
with what it derived from them (``regress``: the mean and standard deviation that normalise the
series). Every later call receives that state, so it sees the same model options, data options
(``lowercase``, ``level``, ``seq_len``, ``max_length``, ...) and vocabularies at training,
evaluation and prediction time. A recipe's own operations (``lm.generate``, ``translate.translate``)
take the state too (``rnnkit.recipes.run.TrainedRun.state``).

Everything in the state — the recipe's name, its model and data options, the vocabularies — is
plain JSON saved with every checkpoint (``RecipeState.to_dict``), never pickled code.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

from torch import nn

from ..cells import resolve as resolve_cell
from ..data.vocab import Vocabulary
from ..models.encoder import EncoderConfig
from ..train.task import Task

# Model options every recipe understands (the command's --cell, --variant, --hidden, ...).
COMMON_MODEL_DEFAULTS: dict[str, Any] = {
    "cell": "lstm",            # a cell: a registered name, package.module:ClassName (rnnkit.cells.resolve)
    "variant": None,           # the cell's variant (lstm: vanilla, cifg, ...; gru: standard, original)
    "hidden": 128,             # hidden size of every recurrent layer
    "layers": 1,               # stacked recurrent layers
    "embedding": 100,          # embedding size (token models)
    "bidirectional": True,     # ignored where a recipe cannot be bidirectional (language models)
    "dropout": 0.0,
}


@runtime_checkable
class Recipe(Protocol):
    """The members every recipe has (see the module's docstring)."""

    name: str                          # "classify", "tag", "translate", "lm", "tree", "regress"
    summary: str                       # one line for `rnnkit train --help`
    model_defaults: dict[str, Any]     # the recipe's own model options beyond COMMON_MODEL_DEFAULTS
    data_defaults: dict[str, Any]      # its data options (format, lowercase, min_freq, ...)

    def read(self, path: str, data_options: dict[str, Any]) -> list[Any]: ...

    def prepare(self, records: list[Any], model_options: dict[str, Any],
                data_options: dict[str, Any]) -> RecipeState: ...

    def build_model(self, state: RecipeState) -> nn.Module: ...

    def batches(self, records: list[Any], state: RecipeState, batch_size: int, *,
                shuffle: bool, seed: int) -> list[Any]: ...

    def task(self, state: RecipeState) -> Task: ...

    def predict(self, model: nn.Module, state: RecipeState, lines: Iterable[str]) -> Iterator[str]: ...


_RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add a recipe instance under ``recipe.name`` (each recipe module registers itself)."""
    _RECIPES[recipe.name] = recipe
    return recipe


def recipe_names() -> list[str]:
    _load_all()
    return sorted(_RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` lists the known ones."""
    _load_all()
    if name not in _RECIPES:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def _load_all() -> None:
    from . import RECIPE_MODULES        # importing a recipe module registers its recipe
    for module in RECIPE_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def resolve_options(given: dict[str, Any] | None, defaults: dict[str, Any], what: str) -> dict[str, Any]:
    """``defaults`` updated by ``given``; a key not among the defaults is refused, naming the nearest
    known one (so that a misspelled option fails instead of silently keeping its default)."""
    given = dict(given or {})
    unknown = [key for key in given if key not in defaults]
    if unknown:
        key = unknown[0]
        near = difflib.get_close_matches(key, list(defaults), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown {what} option {key!r}{hint}; known: {', '.join(sorted(defaults))}")
    return {**defaults, **given}


def model_options_for(recipe: Recipe, given: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe's model options; an unknown cell, or a package.module:ClassName that does not
    import, fails here, before any data is read (the text itself is what the run saves)."""
    options = resolve_options(given, {**COMMON_MODEL_DEFAULTS, **recipe.model_defaults}, f"{recipe.name} model")
    resolve_cell(options["cell"])
    return options


def data_options_for(recipe: Recipe, given: dict[str, Any] | None) -> dict[str, Any]:
    return resolve_options(given, recipe.data_defaults, f"{recipe.name} data")


def cell_options(model_options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that select the cell: ``cell`` and, when set, ``variant``."""
    options = {"cell": model_options["cell"]}
    if model_options.get("variant") is not None:
        options["variant"] = model_options["variant"]
    return options


def encoder_config(model_options: dict[str, Any], **fields: Any) -> EncoderConfig:
    """The model's recurrent encoder as the common model options describe it (``cell``, ``variant``,
    ``hidden``, ``layers``, ``bidirectional``, ``dropout``: between stacked layers, as the model's
    other dropouts), the one place where a recipe's options become an ``EncoderConfig``; ``fields``
    override what a recipe fixes (``lm``: ``bidirectional=False``)."""
    options = cell_options(model_options)
    settings = {"cell": options.pop("cell"), "hidden_size": model_options["hidden"],
                "num_layers": model_options["layers"], "bidirectional": model_options["bidirectional"],
                "dropout": model_options["dropout"], "options": options}
    return EncoderConfig(**{**settings, **fields})


@dataclass
class RecipeState:
    """What is saved with every checkpoint (``extra.json``) to rebuild a trained model: JSON only.

    ``data_options`` are the options the run was given, completed by ``Recipe.prepare`` with what
    it derived from the training data; every recipe call after ``prepare`` receives this state."""

    recipe: str
    model_options: dict[str, Any]
    data_options: dict[str, Any]
    vocabularies: dict[str, Vocabulary] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "model_options": self.model_options, "data_options": self.data_options,
                "vocabularies": {name: v.to_dict() for name, v in self.vocabularies.items()}}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RecipeState:
        if not isinstance(data, dict) or not isinstance(data.get("recipe"), str):
            raise ValueError(f"{where}: does not describe an rnnkit model (no 'recipe' entry); "
                             "was it written by `rnnkit train`?")
        try:
            return cls(recipe=data["recipe"], model_options=dict(data["model_options"]),
                       data_options=dict(data["data_options"]),
                       vocabularies={name: Vocabulary.from_dict(v) for name, v in data["vocabularies"].items()})
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: the model description is incomplete or malformed ({error})") from None
