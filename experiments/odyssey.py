"""Study 2: the LSTM search-space odyssey (Greff et al. 2017), in small.

    python experiments/odyssey.py [--budget 150] [--smoke] [--trials 5] [--text PATH]

Vanilla LSTM (peepholes, Greff et al.'s reference) and its eight variants, each changing one thing
(``rnnkit.cells.lstm.VARIANTS``): NIG no input gate, NFG no forget gate, NOG no output gate, NIAF
no input activation, NOAF no output activation, NP no peepholes, CIFG coupled input and forget
gate, FGR full gate recurrence. Two tasks:

* a character language model on an excerpt of tinyshakespeare (``--text``; skipped, with a message,
  when the file is absent): validation bits per character after training;
* the adding problem at T = 50 (study 1's task, at a length that every gated variant can learn in
  the minute or two a run gets; at T = 100 study 1's LSTM needs more): test MSE.

Each variant runs the same ``--trials`` random draws of (learning rate, hidden size, seed), a small
random search as in the paper (log-uniform learning rate). Within a trial every variant takes the
same number of training steps, as in the paper's fixed schedules: vanilla trains first for its
share of the budget and sets the count; a slower variant (FGR runs a Python loop) is given up to
``SLOW_CAP`` times vanilla's time to reach it, and the table says how many steps each took. Writes
a box plot (one box per variant and task) and a table of medians, and compares the ordering with
the paper's conclusions.
"""
from __future__ import annotations

import dataclasses
import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

import adding
from common import Clock, fmt, figure_path, markdown_table, parse_args, report, train_for
from rnnkit.cells.lstm import VARIANTS
from rnnkit.data.text import read_characters
from rnnkit.data.vocab import Vocabulary
from rnnkit.models.language_model import LanguageModel
from rnnkit.train.rng import seed_everything

DEFAULT_TEXT = Path("/work/shared/data/tinyshakespeare/input.txt")
ODYSSEY = ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr")
FACTOR = {"chars": 1.02, "adding": 2.0}       # ratio of medians that counts as a difference
SLOW_CAP = 8.0                                # a variant's time limit, in vanilla run-times of its trial

PUBLISHED = """\
Published conclusions (Greff, Srivastava, Koutník, Steunebrink & Schmidhuber, *LSTM: A Search
Space Odyssey*, IEEE TNNLS 2017, arXiv:1503.04069; speech (TIMIT), handwriting (IAM) and
polyphonic music (JSB) with 27 random-search trials per variant and dataset): none of the variants
improves on the vanilla LSTM significantly; removing the forget gate (NFG) or the output
activation function (NOAF) hurts most; coupling the input and forget gates (CIFG) or removing the
peepholes (NP) does not hurt significantly; full gate recurrence (FGR) brings no gain.
"""


@dataclass(frozen=True)
class Sizes:
    train_chars: int = 300_000
    valid_chars: int = 30_000
    window: int = 100
    batch_size: int = 32
    hidden_sizes: tuple[int, ...] = (64, 128)
    adding_length: int = 50
    max_steps: int = 20_000
    every: int = 100


SMOKE = Sizes(train_chars=3_000, valid_chars=600, window=20, batch_size=4, hidden_sizes=(8,),
              adding_length=8, max_steps=2, every=2)


@dataclass(frozen=True)
class Trial:
    """One random-search draw, shared by every variant (a paired comparison)."""
    lr: float
    hidden_size: int
    seed: int


def draw_trials(count: int, sizes: Sizes, seed: int) -> list[Trial]:
    """Learning rate log-uniform in [10^-3.5, 10^-2], hidden size from ``sizes.hidden_sizes``."""
    rng = random.Random(seed)
    return [Trial(10 ** rng.uniform(-3.5, -2.0), rng.choice(sizes.hidden_sizes), seed + k)
            for k in range(count)]


# ------------------------------------------------------------------------------ character model
@dataclass
class CharData:
    train: torch.Tensor          # (N,) character ids
    valid: torch.Tensor          # (B_v, window + 1) non-overlapping validation windows
    vocab_size: int


def load_chars(path: Path, sizes: Sizes) -> CharData:
    """The first ``train_chars`` characters for training, the next ``valid_chars`` for validation;
    the vocabulary is the training excerpt's characters plus <unk>."""
    text = read_characters(path)
    train_text = text[:sizes.train_chars]
    valid_text = text[sizes.train_chars:sizes.train_chars + sizes.valid_chars]
    vocab = Vocabulary.build([train_text])
    train = torch.tensor(vocab.encode(train_text))
    valid = torch.tensor(vocab.encode(valid_text))
    width = sizes.window + 1
    valid = valid[:len(valid) // width * width].view(-1, width)                  # (B_v, W + 1)
    return CharData(train, valid, len(vocab))


def char_batch(data: CharData, sizes: Sizes, generator: torch.Generator):
    """Random windows: inputs (B, W) and the characters that follow them (B, W)."""
    starts = torch.randint(0, len(data.train) - sizes.window - 1, (sizes.batch_size,), generator=generator)
    windows = torch.stack([data.train[s:s + sizes.window + 1] for s in starts.tolist()])  # (B, W + 1)
    return windows[:, :-1], windows[:, 1:]


def lm_loss(model: LanguageModel, tokens, targets):
    return model.loss(tokens, targets).mean


@dataclass(frozen=True)
class Run:
    """One variant's training run: its score (lower is better; inf or NaN when it diverged), the
    steps it took and the seconds they took."""
    value: float
    steps: int
    seconds: float


def train_chars(variant: str, trial: Trial, data: CharData, sizes: Sizes, seconds: float,
                max_steps: int) -> Run:
    """Validation bits per character of one variant after at most ``max_steps`` steps."""
    seed_everything(trial.seed)
    model = LanguageModel(data.vocab_size, hidden_size=trial.hidden_size, cell="lstm", num_layers=1,
                          variant=variant)
    generator = torch.Generator().manual_seed(trial.seed + 1)
    log = train_for(model, lambda: char_batch(data, sizes, generator), lm_loss, seconds=seconds,
                    max_steps=max_steps, lr=trial.lr, seed=trial.seed, every=sizes.every)
    if log.diverged_at is not None:
        return Run(math.inf, log.steps, log.seconds)  # a diverged run: worse than any other
    model.eval()
    with torch.no_grad():
        nats = lm_loss(model, data.valid[:, :-1], data.valid[:, 1:]).item()
    return Run(nats / math.log(2), log.steps, log.seconds)


def train_adding(variant: str, trial: Trial, length: int, study_sizes: adding.Sizes,
                 seconds: float, max_steps: int) -> Run:
    """Test MSE on the adding problem at ``length``, trained and tested as in study 1 (stopping
    early once solved) for at most ``max_steps`` steps."""
    contender = adding.Contender(variant, "lstm", (("variant", variant),), trial.lr)
    run_sizes = dataclasses.replace(study_sizes, hidden_size=trial.hidden_size, max_steps=max_steps)
    _, log, test_mse = adding.train_adding(contender, length, run_sizes, seconds, trial.seed)
    return Run(test_mse, log.steps, log.seconds)


# ------------------------------------------------------------------------------------- report
def compare(results: dict[str, list[float]], task: str) -> list[str]:
    """The paper's conclusions, checked on medians (lower is better): a variant differs from
    vanilla when the ratio of its median to vanilla's is above FACTOR[task] or below its inverse."""
    factor = FACTOR[task]
    vanilla = median(results["vanilla"])
    if not math.isfinite(vanilla):
        return ["Vanilla diverged in most trials: no comparison with the paper."]

    def ratio(variant: str) -> float:
        return median(results[variant]) / vanilla

    def says(variant: str) -> str:
        r = ratio(variant)
        verdict = "worse" if r > factor else "better" if r < 1 / factor else "close"
        return f"{variant.upper()} {verdict} (×{r:.3g})"

    worse_ok = all(ratio(v) > factor for v in ("nfg", "noaf"))
    close_ok = all(1 / factor <= ratio(v) <= factor for v in ("cifg", "np"))
    fgr_ok = ratio("fgr") >= 1 / factor
    ranking = sorted(results, key=lambda v: median(results[v]))
    return [
        f"Ordering by median (best first): {', '.join(v.upper() for v in ranking)}. A variant "
        f"differs from vanilla when its median is more than ×{factor:g} (or less than ×{1 / factor:.3g}) "
        "vanilla's.",
        f"* NFG and NOAF clearly worse: {says('nfg')}, {says('noaf')}: "
        f"{'agrees' if worse_ok else 'does not agree'} with the paper.",
        f"* CIFG and NP close to vanilla: {says('cifg')}, {says('np')}: "
        f"{'agrees' if close_ok else 'does not agree'}.",
        f"* FGR no gain: {says('fgr')}: {'agrees' if fgr_ok else 'does not agree'}.",
    ]


def median(values: list[float]) -> float:
    """The median, a diverged run (NaN or infinite loss) counting as worse than any other."""
    return statistics.median(v if math.isfinite(v) else math.inf for v in values)


def box_plot(results: dict[str, dict[str, list[float]]], path: Path) -> None:
    """One panel per task, one box per variant over its trials (diverged runs counted in the label)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = {"chars": "validation bits per character", "adding": "adding problem: test MSE"}
    fig = Figure(figsize=(6.0 * len(results), 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, (task, by_variant) in zip(axes, results.items()):
        finite = {v: [x for x in by_variant[v] if math.isfinite(x)] for v in ODYSSEY}
        ax.boxplot([finite[v] or [math.nan] for v in ODYSSEY])
        ticks = [v.upper() + (f"\n({len(by_variant[v]) - len(finite[v])} div.)"
                              if len(finite[v]) < len(by_variant[v]) else "") for v in ODYSSEY]
        ax.set_xticks(range(1, len(ODYSSEY) + 1), ticks, rotation=45)
        ax.set_ylabel(labels[task])
        if task == "adding":
            ax.set_yscale("log")
        ax.set_title(f"{labels[task].split(':')[0]}: {len(by_variant['vanilla'])} trials per variant")
    fig.savefig(path, dpi=100)


def table(runs: dict[str, list[Run]], digits: int) -> str:
    rows = []
    for v in ODYSSEY:
        values = [run.value for run in runs[v]]
        finite = [x for x in values if math.isfinite(x)]
        rows.append([v.upper(), VARIANTS[v], fmt(median(values), digits) if finite else "diverged",
                     fmt(min(finite), digits) if finite else "", fmt(max(finite), digits) if finite else "",
                     len(values) - len(finite), f"{statistics.median(run.steps for run in runs[v]):,.0f}"])
    return markdown_table(["variant", "what changes", "median", "best", "worst finite", "diverged", "steps"],
                          rows)


def add_options(parser) -> None:
    parser.add_argument("--trials", type=int, default=5, help="random-search draws per variant (default 5)")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT,
                        help=f"tinyshakespeare input.txt (default {DEFAULT_TEXT})")


def main(argv=None) -> None:
    args = parse_args("odyssey", __doc__, full_budget=150, argv=argv, add_options=add_options)
    sizes = SMOKE if args.smoke else Sizes()
    adding_sizes = adding.SMOKE if args.smoke else adding.Sizes()
    trials = draw_trials(1 if args.smoke else args.trials, sizes, args.seed)
    clock = Clock(args.budget)
    notes = []
    tasks = ["chars", "adding"]
    if not args.text.exists():
        tasks.remove("chars")
        notes.append(f"The character model was skipped: {args.text} is absent (pass --text PATH to "
                     "tinyshakespeare's input.txt).")
        print(notes[-1])
    else:
        data = load_chars(args.text, sizes)

    def train(task: str, variant: str, trial: Trial, seconds: float, max_steps: int) -> Run:
        if task == "chars":
            return train_chars(variant, trial, data, sizes, seconds, max_steps)
        return train_adding(variant, trial, sizes.adding_length, adding_sizes, seconds, max_steps)

    runs: dict[str, dict[str, list[Run]]] = {task: {v: [] for v in ODYSSEY} for task in tasks}
    trials_left = len(tasks) * len(trials)
    cost = len(ODYSSEY) + 3.0         # a trial's time in vanilla run-times; measured after each trial
    vanilla_seconds = []
    for task in tasks:
        for trial in trials:
            started = clock.elapsed()
            share = clock.left() / (trials_left * cost)
            trials_left -= 1
            vanilla = train(task, "vanilla", trial, share, sizes.max_steps)
            vanilla_seconds.append(vanilla.seconds)
            # the steps vanilla had time for: more than it took when it stopped early (solved or
            # diverged), never more than the step limit
            steps = min(sizes.max_steps,
                        max(1, vanilla.steps, round(vanilla.steps * share / max(vanilla.seconds, 1e-9))))
            for variant in ODYSSEY:
                run = vanilla if variant == "vanilla" else train(task, variant, trial, SLOW_CAP * share, steps)
                runs[task][variant].append(run)
                print(f"{task:<6} {variant:<8} lr {trial.lr:.1e} H {trial.hidden_size:<4} seed {trial.seed}: "
                      f"{fmt(run.value, 4)} after {run.steps} of {steps} steps, {run.seconds:.0f} s", flush=True)
            cost = max(1.0, (clock.elapsed() - started) / max(share, 1e-9))
    results = {task: {v: [run.value for run in by_variant[v]] for v in ODYSSEY}
               for task, by_variant in runs.items()}

    png, link = figure_path(args, "odyssey.png")
    if png is not None:
        box_plot(results, png)
    parts = [f"{len(trials)} random-search trial(s) per variant and task, the same draws for every "
             f"variant: learning rate log-uniform in [3e-4, 1e-2], hidden size in "
             f"{list(sizes.hidden_sizes)}; Adam, clipping 1, one layer. Within a trial every variant "
             f"has the same number of steps: the ones vanilla took in its share of the budget "
             f"({statistics.median(vanilla_seconds):.0f} s, median over trials; a run solved early "
             f"stops early). The `steps` column is each variant's median; a variant short of "
             f"vanilla's ran out of its {SLOW_CAP:g}× time limit."]
    parts += notes
    if link:
        parts.append(f"![box plot of every trial]({link})")
    if "chars" in results:
        parts += [f"**Character model** (tinyshakespeare: first {sizes.train_chars:,} characters for "
                  f"training, the next {sizes.valid_chars:,} for validation; windows of "
                  f"{sizes.window}, batch {sizes.batch_size}): validation bits per character.",
                  table(runs["chars"], 3), "\n".join(compare(results["chars"], "chars"))]
    parts += [f"**Adding problem**, T = {sizes.adding_length}: test MSE (baseline 0.167).",
              table(runs["adding"], 4), "\n".join(compare(results["adding"], "adding")), PUBLISHED]
    report(args, "\n\n".join(parts), clock)


if __name__ == "__main__":
    main()
