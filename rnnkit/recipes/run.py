"""Train, load, evaluate and predict with any recipe: what `rnnkit train/evaluate/predict` call.

A trained model lives in a run directory (``--out``): ``checkpoints/step-N/`` (safetensors weights,
the recipe's state as JSON (options, vocabularies), a SHA-256 manifest; ``rnnkit.train.checkpoint``),
``checkpoints/best.json``, ``train.csv``, ``eval.csv``, ``curves.png``. ``load_run`` rebuilds the model
from the best checkpoint (the last one where there was no dev set) without executing anything read,
except that a run trained with ``--cell package.module:ClassName`` imports that module again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..train import History, Trainer, TrainConfig
from ..train.checkpoint import CheckpointError, best_checkpoint, latest_checkpoint, load_checkpoint
from ..train.device import resolve_device
from ..train.trainer import CHECKPOINTS_DIR, to_device
from .base import Recipe, RecipeState, data_options_for, get_recipe, model_options_for
from .common import model_device


@dataclass
class TrainedRun:
    """A model rebuilt from a run directory, with what it needs to read and write data."""

    recipe: Recipe
    model: nn.Module
    state: RecipeState
    checkpoint: Path


def train(task: str, train_path: str, dev_path: str | None, train_config: TrainConfig, *,
          model_options: dict[str, Any] | None = None, data_options: dict[str, Any] | None = None,
          batch_size: int = 32, echo=print) -> tuple[TrainedRun, History]:
    """Read the files, prepare the recipe's state (vocabularies, completed data options), build the
    model, train; return the run and its history.

    ``train_config.resume`` continues the run in ``train_config.out_dir`` with the state it was
    started with (the options given here must then agree or be omitted)."""
    recipe = get_recipe(task)
    state = _resumed_state(train_config, recipe, model_options, data_options)
    if state is None:
        data_options = data_options_for(recipe, data_options)
        model_options = model_options_for(recipe, model_options)
        train_records = recipe.read(train_path, data_options)
        if not train_records:
            raise ValueError(f"{train_path}: holds no training examples")
        state = recipe.prepare(train_records, model_options, data_options)
    else:
        train_records = recipe.read(train_path, state.data_options)
    dev_records = recipe.read(dev_path, state.data_options) if dev_path else None
    torch.manual_seed(train_config.seed)
    model = recipe.build_model(state)
    echo(f"{recipe.name}: {len(train_records)} training examples"
         + (f", {len(dev_records)} dev examples" if dev_records is not None else "")
         + f"; {sum(p.numel() for p in model.parameters() if p.requires_grad):,} parameters")

    def train_batches(epoch: int) -> list[Any]:
        return recipe.batches(train_records, state, batch_size, shuffle=True, seed=train_config.seed + epoch)

    dev_batches = (recipe.batches(dev_records, state, batch_size, shuffle=False, seed=0)
                   if dev_records else None)
    trainer = Trainer(model, recipe.task(state), train_config, extra=state.to_dict())
    history = trainer.fit(train_batches, dev_batches)
    # Under several processes only rank 0 writes checkpoints: the others wait for its last one,
    # then every process reads the same best model.
    trainer.context.barrier()
    run = load_run(train_config.out_dir) if train_config.out_dir else TrainedRun(recipe, model, state, Path())
    return run, history


def load_run(run_dir: str | Path, which: str = "best", device: str | None = None) -> TrainedRun:
    """The model of a run directory (or of one checkpoint directory): ``which`` = ``"best"`` (the best
    dev metric; the last checkpoint where there was none) or ``"last"``. ``device``: where to put the
    model (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``; None: the CPU), wherever it was trained:
    checkpoints hold CPU tensors, loaded in the model's float32."""
    path = _checkpoint_of(Path(run_dir), which)
    checkpoint = load_checkpoint(path)
    state = RecipeState.from_dict(checkpoint.extra, str(path / "extra.json"))
    recipe = get_recipe(state.recipe)
    model = recipe.build_model(state)
    try:
        checkpoint.restore(model)
    except RuntimeError as error:
        raise CheckpointError(path / "model.safetensors",
                              f"does not fit the {recipe.name} model it describes ({error})") from None
    model.eval()
    return TrainedRun(recipe, model.to(resolve_device(device) or torch.device("cpu")), state, path)


def evaluate(run: TrainedRun, test_path: str, batch_size: int = 64) -> dict[str, float]:
    """The recipe's metrics of the run's model on a test file (its batches go where the model is)."""
    records = run.recipe.read(test_path, run.state.data_options)
    if not records:
        raise ValueError(f"{test_path}: holds no examples to evaluate on")
    batches = run.recipe.batches(records, run.state, batch_size, shuffle=False, seed=0)
    task = run.recipe.task(run.state)
    run.model.eval()
    with torch.no_grad():
        return task.evaluate(run.model, (to_device(batch, model_device(run.model)) for batch in batches))


def predict(run: TrainedRun, lines: Iterable[str]) -> Iterator[str]:
    """One output line per input line (labels, tags, translations, forecasts)."""
    run.model.eval()
    with torch.no_grad():
        yield from run.recipe.predict(run.model, run.state, lines)


def _checkpoint_of(run_dir: Path, which: str) -> Path:
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if (run_dir / "manifest.json").is_file():              # a checkpoint directory itself
        return run_dir
    root = run_dir / CHECKPOINTS_DIR
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    found = (best_checkpoint(root) if which == "best" else None) or latest_checkpoint(root)
    if found is None:
        raise CheckpointError(run_dir, "holds no trained model (no complete checkpoint under "
                                       f"{CHECKPOINTS_DIR}/); train one with `rnnkit train --out {run_dir}`")
    return found


def _resumed_state(config: TrainConfig, recipe: Recipe, model_options: dict[str, Any] | None,
                   data_options: dict[str, Any] | None) -> RecipeState | None:
    """The saved state of the run to continue (None for a fresh run). Options given again must
    agree with the saved ones: a resumed run keeps the model and data it was started with."""
    if not config.resume or config.out_dir is None:
        return None
    last = latest_checkpoint(Path(config.out_dir) / CHECKPOINTS_DIR)
    if last is None:
        return None
    state = RecipeState.from_dict(load_checkpoint(last).extra, str(last / "extra.json"))
    if state.recipe != recipe.name:
        raise ValueError(f"{config.out_dir}: holds a {state.recipe!r} run, not {recipe.name!r}")
    for kind, given, saved in (("model", model_options, state.model_options),
                               ("data", data_options, state.data_options)):
        for key, value in (given or {}).items():
            if key in saved and saved[key] != value:
                raise ValueError(f"{config.out_dir}: the run was started with {kind} option "
                                 f"{key}={saved[key]!r}; --resume cannot change it to {value!r}")
    return state
