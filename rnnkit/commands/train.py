"""``rnnkit train``: read the files, build the model and train it, from flags or a TOML file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import click
import torch

from ..recipes import RECIPE_MODULES, run
from ..recipes.run import TrainedRun
from ..train import History
from ..train.checkpoint import list_checkpoints
from ..train.device import resolve_device
from ..train.precision import PRECISIONS, check_precision
from ..train.trainer import CHECKPOINTS_DIR
from .errors import user_errors
from .settings import TrainSettings, resolve_settings

# click parameter -> (home, key) of the setting it gives (see settings.py); a flag not given leaves
# the TOML file's value or the default.
FLAG_SETTINGS = {
    "task": ("run", "task"), "train_path": ("run", "train"), "dev_path": ("run", "dev"), "out": ("run", "out"),
    "batch_size": ("run", "batch_size"),
    "cell": ("model", "cell"), "variant": ("model", "variant"), "hidden": ("model", "hidden"),
    "layers": ("model", "layers"), "bidirectional": ("model", "bidirectional"),
    "embedding": ("model", "embedding"), "dropout": ("model", "dropout"),
    "epochs": ("training", "epochs"), "max_minutes": ("training", "max_minutes"),
    "max_steps": ("training", "max_steps"), "lr": ("training", "lr"), "optimizer": ("training", "optimizer"),
    "clip_norm": ("training", "clip_norm"), "seed": ("training", "seed"),
    "deterministic": ("training", "deterministic"), "eval_every": ("training", "eval_every"),
    "patience": ("training", "patience"), "checkpoint_every": ("training", "checkpoint_every"),
    "resume": ("training", "resume"), "progress": ("training", "progress"),
    "tensorboard": ("training", "tensorboard"), "device": ("training", "device"),
    "precision": ("training", "precision"),
}
Echo = Callable[[str], None]
POSITIVE_INT, POSITIVE_FLOAT = click.IntRange(min=1), click.FloatRange(min=0, min_open=True)


@click.command("train")
@click.argument("config_file", metavar="[CONFIG.toml]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--task", type=click.Choice(RECIPE_MODULES), help="What to learn (the recipe).")
@click.option("--train", "train_path", metavar="FILE", help="Training data (for translate's parallel "
              "format SOURCE,TARGET; for ATIS its folder).")
@click.option("--dev", "dev_path", metavar="FILE", help="Dev data: selects the best checkpoint, stops early.")
@click.option("--out", metavar="DIR", help="The run directory: checkpoints, train.csv, eval.csv, curves.png.")
@click.option("--cell", help="A registered cell: elman, jordan, residual, lstm, gru, indrnn, mingru, "
              "minlstm, esn; an installed package's (entry point rnnkit.cells); or your own as "
              "package.module:ClassName (docs/custom-cells.md). [default: lstm]")
@click.option("--variant", help="The cell's variant (lstm: vanilla, cifg, nfg, ...; gru: standard, original).")
@click.option("--hidden", type=POSITIVE_INT, help="Hidden size of every recurrent layer. [default: 128]")
@click.option("--layers", type=POSITIVE_INT, help="Stacked recurrent layers. [default: 1]")
@click.option("--bidirectional/--unidirectional", default=None,
              help="Read both ways (ignored by language models). [default: bidirectional]")
@click.option("--embedding", type=POSITIVE_INT, help="Embedding size of token models. [default: 100]")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), help="Dropout. [default: 0]")
@click.option("--epochs", type=POSITIVE_INT, help="Epochs. [default: 1]")
@click.option("--max-minutes", type=POSITIVE_FLOAT, help="Stop after this many minutes.")
@click.option("--max-steps", type=POSITIVE_INT, help="Stop after this many optimiser steps.")
@click.option("--batch-size", type=POSITIVE_INT, help="Examples per batch. [default: 32]")
@click.option("--lr", type=POSITIVE_FLOAT, help="Peak learning rate. [default: 0.001]")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), help="[default: adam]")
@click.option("--clip-norm", type=POSITIVE_FLOAT, help="Clip the gradient norm to this value.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of weights, batch order, dropout. [default: 0]")
@click.option("--deterministic", is_flag=True, default=None,
              help="Deterministic algorithms: a resumed run ends with the same weights.")
@click.option("--eval-every", type=POSITIVE_INT, help="Evaluate on --dev every N steps. [default: each epoch]")
@click.option("--patience", type=POSITIVE_INT, help="Stop after N evaluations without a better dev metric.")
@click.option("--checkpoint-every", type=POSITIVE_INT, help="Save every N steps. [default: after each evaluation]")
@click.option("--resume", is_flag=True, default=None, help="Continue the run in --out from its last checkpoint.")
@click.option("--progress/--no-progress", default=None, help="A progress bar on a terminal. [default: on]")
@click.option("--tensorboard/--no-tensorboard", default=None, help="TensorBoard event files. [default: on]")
@click.option("--device", help="Where to train: cpu, cuda, cuda:N, or auto (CUDA where available, else the "
              "CPU). [default: the CPU; under torchrun with GPUs, cuda:LOCAL_RANK]")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="32 (float32), 64 (float64), bf16-mixed (bfloat16 autocast, float32 weights; CPU and "
                   "CUDA) or 16-mixed (float16 autocast with loss scaling; CUDA only). [default: 32]")
@click.option("--option", "options", metavar="KEY=VALUE", multiple=True,
              help="A recipe's model or data option (format=sst, crf=true, attention=luong-dot); "
                   "VALUE is read as JSON where it parses. Repeatable.")
@click.pass_context
def train_command(ctx: click.Context, config_file: Path | None, options: tuple[str, ...], **flags) -> None:
    """Train a model for a task and save it, with its vocabularies, in --out.

    Every setting may also come from a TOML file (flat keys, or [model], [data] and [training]
    tables; the keys are the flags' names with '_' for '-', and 'format', 'crf', ... for --option);
    flags override the file.

    \b
    Examples:
        rnnkit train --task classify --train stsa.binary.train --dev stsa.binary.dev \\
            --option format=sst --out runs/sst2 --epochs 3
        rnnkit train --task tag --train en_ewt-ud-train.conllu --dev en_ewt-ud-dev.conllu \\
            --out runs/upos --cell gru --hidden 256 --option crf=true
        rnnkit train run.toml --epochs 10
        rnnkit train run.toml --resume          # continue a run that was killed
    """
    given = {FLAG_SETTINGS[name]: value for name, value in flags.items()
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}
    echo = click.echo if os.environ.get("RANK", "0") == "0" else _silent     # under torchrun: rank 0 speaks
    with user_errors():
        settings = resolve_settings(config_file, given, options)
        _check_out(settings)
        _check_hardware(settings)
        _echo_settings(settings, echo)
        trained, history = run.train(settings.task, settings.train, settings.dev, settings.config,
                                     model_options=settings.given_model_options,
                                     data_options=settings.given_data_options,
                                     batch_size=settings.batch_size, echo=echo)
    _echo_outcome(trained, history, echo)


def _echo_outcome(trained: TrainedRun, history: History, echo: Echo) -> None:
    echo(f"stopped after {history.steps} steps, {history.epochs} epochs ({history.stop_reason})")
    if history.best is not None:
        metrics = ", ".join(f"{name} {value:.4g}" for name, value in history.best.items()
                            if name not in ("step", "epoch"))
        echo(f"best dev: {metrics} (step {history.best['step']})")
    echo(f"model: {trained.checkpoint}")


def _check_out(settings: TrainSettings) -> None:
    """Refuse, before reading any data, to start a fresh run over the checkpoints of another."""
    if not settings.config.resume and list_checkpoints(Path(settings.out) / CHECKPOINTS_DIR):
        raise ValueError(f"{settings.out} already holds a run: pass --resume to continue it, "
                         "or choose another --out")


def _check_hardware(settings: TrainSettings) -> None:
    """Refuse, before reading any data, a device this machine lacks or a precision it cannot compute in.
    Without --device one process trains on the CPU, each of torchrun's on its GPU where there are GPUs."""
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    default = torch.device("cuda" if under_torchrun and torch.cuda.is_available() else "cpu")
    check_precision(settings.config.precision, resolve_device(settings.config.device) or default)


def _silent(*args, **kwargs) -> None:
    pass


def _echo_settings(settings: TrainSettings, echo: Echo) -> None:
    config = settings.config
    limits = [f"{config.epochs} epochs"] + [f"{value} {name}" for name, value in
                                            (("steps", config.max_steps), ("minutes", config.max_minutes))
                                            if value is not None]
    echo(f"{settings.task}: {settings.train}" + (f", dev {settings.dev}" if settings.dev else "")
         + f" -> {settings.out}" + (" (resuming)" if config.resume else ""))
    echo("model: " + " ".join(f"{k}={v}" for k, v in settings.model_options.items()))
    echo(f"training: {config.optimizer} lr {config.lr:g}, batch {settings.batch_size}, "
         f"{' / '.join(limits)}, seed {config.seed}" + (", deterministic" if config.deterministic else "")
         + f", precision {config.precision}" + (f", device {config.device}" if config.device else ""))
