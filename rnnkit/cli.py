"""The ``rnnkit`` command (also ``python -m rnnkit``).

A click group; each subcommand parses its options, calls the library and prints what it did.
Mistakes in what the user asked for (an unknown cell, an unwritable --out, a missing or malformed
data file, a directory without a model) end with one line on stderr and exit status 1; malformed
options are click's usage errors, also one line (exit status 2). See ``rnnkit.commands.errors``.
The commands that train and use models live in ``rnnkit.commands``.

    rnnkit train --task tag --train train.conllu --dev dev.conllu --out runs/upos
    rnnkit evaluate runs/upos --test test.conllu --json
    rnnkit predict runs/upos sentences.txt
    rnnkit generate runs/shakespeare --prompt "ROMEO:" --length 300
    rnnkit translate runs/multi30k test.de --beam 5 --attention-plot attention.png
    rnnkit demo
    rnnkit diagnose gradient-flow --cells elman,lstm,gru --length 200 --out flow.png
    rnnkit diagnose gates --cell lstm --length 100 --out gates.png
    rnnkit bench --quick
"""
from __future__ import annotations

from pathlib import Path

import click

from . import __version__
from .commands.errors import OneLineGroup, check_png_path, check_writable, user_errors
from .commands.train import train_command
from .commands.use import evaluate_command, generate_command, predict_command, translate_command

CELL_SPEC_HELP = ("NAME[:OPTION]...[@RADIUS]: a registered cell or a cell of one's own "
                  "(package.module:ClassName); ':word' is its variant (lstm:cifg) or nonlinearity "
                  "(elman:relu), ':key=value' any option (lstm:forget_bias=1) or layer option "
                  "(lstm:zoneout=0.1, :recurrent_dropout=R, :input_dropout=R); '@R' rescales the "
                  "recurrent matrix to spectral radius R (elman@3 explodes).")


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rnnkit")
def main() -> None:
    """rnnkit: recurrent networks, correct to the equation.

    \b
    Examples:
        rnnkit demo                                   # 1 minute, no data: tanh RNN vs LSTM vs GRU
        rnnkit train --task tag --train train.conllu --dev dev.conllu --out runs/upos --cell gru
        rnnkit evaluate runs/upos --test test.conllu --json
        echo "the dog runs ." | rnnkit predict runs/upos
        rnnkit generate runs/shakespeare --prompt "ROMEO:" --length 200 --temperature 0.8
        rnnkit translate runs/multi30k sentences.txt --beam 5 --attention-plot attention.png
        rnnkit diagnose gradient-flow --cells elman,lstm,gru --length 200 --out flow.png
        rnnkit bench --quick

    Each command's --help gives its options and more examples.
    """


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="rnnkit-demo.png",
              show_default=True, help="PNG file for the training curves.")
@click.option("--length", type=click.IntRange(min=2), default=50, show_default=True,
              help="Sequence length T of the adding problem.")
@click.option("--steps", type=click.IntRange(min=1), default=1500, show_default=True,
              help="Training steps per model.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out: Path, length: int, steps: int, seed: int) -> None:
    """Train a tanh RNN, an LSTM and a GRU on the adding problem (about a minute, no data needed).

    \b
    Example:
        rnnkit demo --out demo.png
    """
    from .tasks.demo import run_demo

    check_png_path(out)
    with user_errors(out):
        run_demo(out, length=length, steps=steps, seed=seed, echo=click.echo)


@main.group()
def diagnose() -> None:
    """Pictures of gradient flow through time and of gate activity."""


@diagnose.command("gradient-flow")
@click.option("--cells", default="elman,lstm,gru", show_default=True,
              help="Comma-separated cell specs, one line each. " + CELL_SPEC_HELP)
@click.option("--length", type=click.IntRange(min=2), default=200, show_default=True,
              help="Sequence length T.")
@click.option("--hidden", type=click.IntRange(min=1), default=32, show_default=True,
              help="Hidden size H of every cell.")
@click.option("--input", "input_size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Input size I; the input is x ~ N(0, 1).")
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Sequences to average the norms over.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the input and of every cell's initial weights.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="gradient_flow.png",
              show_default=True, help="PNG file to write.")
def gradient_flow_command(cells: str, length: int, hidden: int, input_size: int, batch: int, seed: int,
                          out: Path) -> None:
    """Plot ||dL/dh_k|| and ||dh_T/dh_k|| against the distance T - k, one line per cell."""
    from . import diagnose as diag

    specs = [spec.strip() for spec in cells.split(",") if spec.strip()]
    check_png_path(out)
    with user_errors(out):
        results = diag.compare_gradient_flow(specs, length=length, hidden_size=hidden,
                                             input_size=input_size, batch_size=batch, seed=seed)
        diag.plot_gradient_flow(results, out, title=f"Gradient flow back through time: T = {length}, "
                                f"H = {hidden}, {batch} random sequences, untrained (seed {seed})")
    click.echo(diag.decay_table(results))
    click.echo(f"wrote {out} (gradient flow of {', '.join(specs)} over {length} steps)")


@diagnose.command("gates")
@click.option("--cell", "spec", default="lstm", show_default=True,
              help="A gated cell (lstm, gru, mingru, minlstm). " + CELL_SPEC_HELP)
@click.option("--length", type=click.IntRange(min=1), default=100, show_default=True,
              help="Sequence length T.")
@click.option("--hidden", type=click.IntRange(min=1), default=16, show_default=True,
              help="Hidden size H (rows of each heatmap).")
@click.option("--input", "input_size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Input size I; the input is x ~ N(0, 1).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the input and of the cell's initial weights.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="gates.png",
              show_default=True, help="PNG file to write.")
def gates_command(spec: str, length: int, hidden: int, input_size: int, seed: int, out: Path) -> None:
    """Heatmaps of each gate's activation (units x time) on one random sequence."""
    from . import diagnose as diag

    check_png_path(out)
    with user_errors(out):
        gates = diag.gates_of(spec, length=length, hidden_size=hidden, input_size=input_size, seed=seed)
        diag.plot_gate_activity(gates, out, title=f"{spec}: gate activations on one random sequence "
                                f"(untrained, seed {seed})")
    click.echo("mean activation: " + ", ".join(f"{name} {float(v.mean()):.3f}" for name, v in gates.items()))
    click.echo(f"wrote {out} (gates {', '.join(gates)} of {spec}, {hidden} units x {length} steps)")


@main.command()
@click.option("--quick", is_flag=True,
              help="Small sizes (8x20x32), a subset of cells and few repeats: under a minute.")
@click.option("--sizes", metavar="BxTxH,...",
              help="Problem sizes, I = H (BxTxIxH for another I). "
                   "[default: 32x100x128,32x100x256,64x200x512]")
@click.option("--cells", metavar="SPEC,...",
              help="Comma-separated cell specs to time (default: every cell family and LSTM/GRU "
                   "variant). " + CELL_SPEC_HELP)
@click.option("--rounds", type=click.IntRange(min=1), help="Timing rounds; the best round's median "
              "is reported. [default: 3; 2 with --quick]")
@click.option("--threads", type=click.IntRange(min=1), help="torch.set_num_threads. [default: 2]")
@click.option("--sections", metavar="NAME,...",
              help="Which sections to run, of train,lengths,scan,streaming,memory. lengths always "
                   "times lstm:vanilla, gru:original and nn.LSTM (packed); scan the mingru/minlstm "
                   "among --cells, or both. [default: all]")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as a markdown document (docs/performance.md is made so).")
def bench(quick: bool, sizes: str | None, cells: str | None, rounds: int | None, threads: int | None,
          sections: str | None, markdown: Path | None) -> None:
    """Time training steps, variable lengths, long minGRU/minLSTM sequences and streaming
    inference of rnnkit's layers against torch.nn.LSTM and torch.nn.GRU (CPU, float32; a spec
    ending in '+bf16' runs under bfloat16 autocast). Each row names the path the dispatcher took.

    Each configuration is first checked against the reference loop (same weights and masks, within
    1e-4; 2e-2 under bf16); one that differs is reported and not timed. Progress goes to stderr,
    the tables to stdout.

    \b
    Example:
        rnnkit bench --quick
        rnnkit bench --sections train --cells lstm:vanilla,gru:original --sizes 32x100x256
    """
    from .bench import BenchConfig, parse_specs, run_and_report

    if markdown is not None:
        check_writable(markdown)
    with user_errors(markdown or Path(".")):
        config = BenchConfig.from_options(quick=quick, sizes=sizes, cells=cells, rounds=rounds,
                                          threads=threads, sections=sections,
                                          markdown=None if markdown is None else str(markdown))
        parse_specs(config.cells)                   # an unknown cell or option fails before any timing
    run_and_report(config, program="rnnkit bench", markdown=markdown,
                   echo=lambda line: click.echo(line, err=True), out=click.echo)


for command in (train_command, evaluate_command, predict_command, generate_command, translate_command):
    main.add_command(command)


if __name__ == "__main__":
    main()
