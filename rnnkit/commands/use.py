"""``rnnkit evaluate``, ``predict``, ``generate`` and ``translate``: use the model of a run directory."""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import IO, Iterator

import click

from ..data.errors import DataFormatError
from ..recipes import run
from .errors import check_png_path, user_errors

RUN_DIR = click.Path(file_okay=False, path_type=Path)
CHECKPOINT = click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best",
                          show_default=True, help="The best dev checkpoint, or the last one saved.")
DEVICE = click.option("--device", default="cpu", show_default=True,
                      help="Where to run the model: cpu, cuda, cuda:N or auto (CUDA where available), "
                           "whatever device it was trained on.")
INPUT = click.argument("input_file", metavar="[FILE|-]", type=click.File("r", encoding="utf-8"), default="-")


@click.command("evaluate")
@click.argument("run_dir", metavar="DIR", type=RUN_DIR)
@click.option("--test", "test_path", metavar="FILE", required=True,
              help="Data in the format the model was trained on (translate's parallel: SOURCE,TARGET).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {metric: value} on stdout.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@CHECKPOINT
@DEVICE
def evaluate_command(run_dir: Path, test_path: str, as_json: bool, batch_size: int, which: str,
                     device: str) -> None:
    """Score the model in DIR on a test file: accuracy, f1, bleu, perplexity, ... as the task has them.

    \b
    Examples:
        rnnkit evaluate runs/upos --test en_ewt-ud-test.conllu
        rnnkit evaluate runs/sst2 --test stsa.binary.test --json
    """
    with user_errors():
        trained = run.load_run(run_dir, which, device)
        metrics = run.evaluate(trained, test_path, batch_size=batch_size)
    if as_json:         # strict JSON: a metric that is not finite is null
        click.echo(json.dumps({name: _finite_or_none(value) for name, value in metrics.items()}))
        return
    width = max(map(len, metrics), default=0)
    for name, value in metrics.items():
        click.echo(f"{name:<{width}}  {value:.6g}")


@click.command("predict")
@click.argument("run_dir", metavar="DIR", type=RUN_DIR)
@INPUT
@CHECKPOINT
@DEVICE
def predict_command(run_dir: Path, input_file: IO[str], which: str, device: str) -> None:
    """One output line per input line of FILE (or of stdin, with '-' or no FILE): the label of a
    sentence, the tags of a tokenised sentence, a translation, a forecast, a line's perplexity.

    \b
    Examples:
        echo "a gripping , funny film" | rnnkit predict runs/sst2
        rnnkit predict runs/upos sentences.txt > tags.txt
    """
    with user_errors(), _naming_the_input(input_file):
        trained = run.load_run(run_dir, which, device)
        for output in run.predict(trained, _lines(input_file)):
            click.echo(output)


@click.command("generate")
@click.argument("run_dir", metavar="DIR", type=RUN_DIR)
@click.option("--prompt", default="", help="Text the sampled continuation starts from.")
@click.option("--length", type=click.IntRange(min=1), default=200, show_default=True,
              help="Tokens (characters or words) to sample.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Divide the logits by T: below 1 safer, above 1 more varied.")
@click.option("--top-k", type=click.IntRange(min=1), help="Sample among the K most likely tokens only.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@CHECKPOINT
@DEVICE
def generate_command(run_dir: Path, prompt: str, length: int, temperature: float, top_k: int | None,
                     seed: int, which: str, device: str) -> None:
    """Sample text from the language model in DIR (a run of --task lm).

    \b
    Examples:
        rnnkit generate runs/shakespeare --prompt "ROMEO:" --length 300 --temperature 0.8
        rnnkit generate runs/ptb --prompt "the company" --length 20 --top-k 10 --seed 1
    """
    with user_errors():
        trained = run.load_run(run_dir, which, device)
        generate = _extra_operation(trained, "generate", "lm")
        text = generate(trained.model, trained.state, prompt=prompt, length=length, temperature=temperature,
                        top_k=top_k, seed=seed)
    click.echo(text)


@click.command("translate")
@click.argument("run_dir", metavar="DIR", type=RUN_DIR)
@INPUT
@click.option("--beam", type=click.IntRange(min=1), help="Beam width; 1 is greedy. [default: the run's]")
@click.option("--max-length", type=click.IntRange(min=1), help="Most tokens per translation. [default: the run's]")
@click.option("--attention-plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Draw the attention weights as PNG: this file for one sentence, NAME-1.png, NAME-2.png, "
                   "... for several.")
@CHECKPOINT
@DEVICE
def translate_command(run_dir: Path, input_file: IO[str], beam: int | None, max_length: int | None,
                      attention_plot: Path | None, which: str, device: str) -> None:
    """Translate each line of FILE (or of stdin) with the model in DIR (a run of --task translate).

    \b
    Examples:
        echo "Ein Hund läuft im Schnee." | rnnkit translate runs/multi30k --beam 5
        rnnkit translate runs/multi30k test.de --beam 5 --attention-plot attention.png
    """
    if attention_plot is not None:
        check_png_path(attention_plot, "--attention-plot")
    with user_errors(attention_plot):
        trained = run.load_run(run_dir, which, device)
        translate = _extra_operation(trained, "translate", "translate")
        if attention_plot is not None and trained.state.model_options.get("attention") == "none":
            raise ValueError(f"{trained.checkpoint}: the model has no attention (attention=none); "
                             "there is nothing for --attention-plot to draw")
        with _naming_the_input(input_file):
            translations = translate(trained.model, trained.state, list(_lines(input_file)), beam=beam,
                                     max_length=max_length)
        for translation in translations:
            click.echo(translation.text)
        if attention_plot is not None:
            _plot_attention(translations, attention_plot)


def _plot_attention(translations, attention_plot: Path) -> None:
    """One PNG per sentence (an empty line, which has no attention, gets none)."""
    from ..diagnose.attention import plot_attention

    for path, translation in zip(_numbered(attention_plot, len(translations)), translations):
        if translation.attention is not None:
            plot_attention(translation.attention, translation.source_tokens, translation.output_tokens, path)
            click.echo(f"wrote {path}", err=True)


def _extra_operation(trained, name: str, task: str):
    """The recipe's own operation ``name`` (``generate`` of lm, ``translate`` of translate)."""
    operation = getattr(trained.recipe, name, None)
    if not callable(operation):
        raise ValueError(f"{trained.checkpoint} holds a {trained.recipe.name!r} model; "
                         f"`rnnkit {name}` needs a run of --task {task}")
    return operation


@contextlib.contextmanager
def _naming_the_input(file: IO[str]) -> Iterator[None]:
    """A malformed input line is reported as FILE:LINE (the recipes read lines, not files: <input>)."""
    try:
        yield
    except DataFormatError as error:
        if error.path is not None:
            raise
        message = str(error).split(": ", 1)[-1]
        raise DataFormatError(getattr(file, "name", None), error.line, message) from None


def _lines(file: IO[str]) -> Iterator[str]:
    """The lines of ``file`` without their line ends (read as they come, so stdin can stream)."""
    for line in file:
        yield line.rstrip("\r\n")


def _numbered(path: Path, count: int) -> list[Path]:
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{k}{path.suffix}") for k in range(1, count + 1)]


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
