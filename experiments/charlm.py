"""Study 3: character language models, LSTM, GRU and minGRU, on tinyshakespeare and PTB characters.

    python experiments/charlm.py [--budget 60] [--smoke] [--data DIR]

The ``lm`` recipe (``rnnkit.recipes.lm``: embedding → 2 recurrent layers of 256 → softmax, trained by
truncated BPTT over windows of 100 characters, Adam, gradient norm clipped to 1):

* **tinyshakespeare** (``tinyshakespeare/input.txt``), split as nanoGPT's ``prepare.py`` splits it,
  the first 90% of the characters for training and the rest for validation (here cut at the end
  of the line where 90% falls, since the recipe reads lines). LSTM, GRU and minGRU (Feng et al.
  2024, arXiv:2410.01201) each get the same share of the budget, a fixed CPU time; the trainer keeps
  the checkpoint with the best validation loss, and the table gives that loss in nats per character.
* **PTB characters** (``ptb/ptb.char.{train,valid,test}.txt``, level ``ptb-char``): the LSTM, with
  twice that share; bits per character on the validation and test files.

Evaluation carries the state from one window to the next (every character is predicted with all
the text of its row before it), which is how recurrent models are scored; nanoGPT's Transformer
sees at most its context (64 characters in its CPU configuration).

Full size: 60 minutes on one thread (12 per tinyshakespeare model, 24 for PTB characters); the
training columns say how many steps that bought on the machine at hand.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from common import Clock, fmt, markdown_table, parse_args, report
from recipe_runs import (absent_note, add_data_option, batch_size, excerpts, fixed_seconds, missing, run_summary,
                         train_and_test, training_options)

SHAKESPEARE = "tinyshakespeare/input.txt"
PTB_CHAR = ("ptb/ptb.char.train.txt", "ptb/ptb.char.valid.txt", "ptb/ptb.char.test.txt")
CELLS = (("LSTM", "lstm"), ("GRU", "gru"), ("minGRU", "mingru"))
TRAIN_FRACTION = 0.9                          # nanoGPT's shakespeare_char split
WEIGHTS = {"shakespeare": 1.0, "ptb": 2.0}    # each run's share of the budget

MODEL = dict(hidden=256, layers=2, embedding=64, tie_embeddings=False, dropout=0.0)
DATA = dict(seq_len=100)
TRAINING = dict(lr=2e-3, clip_norm=1.0, epochs=100, eval_every=250)
BATCH = 32
SMOKE_MODEL = dict(hidden=8, layers=1, embedding=8, tie_embeddings=False, dropout=0.0)
SMOKE_DATA = dict(seq_len=8)

NANOGPT_CPU_LOSS = 1.88
NANOGPT_GPU_LOSS = 1.4697
PUBLISHED_PTB = (
    ("3-layer AWD-LSTM (Merity, Keskar & Socher 2018, arXiv:1803.08240)", "1.175",
     "test; 1.18 in the sotaverified.org listing we checked, the paper's table not verified"),
    ("LSTM, 1 layer of 1000 (Cooijmans et al. 2016, *Recurrent Batch Normalization*, arXiv:1603.09025)",
     "1.38", "test; not verified"),
)

PUBLISHED = f"""\
Published figures. nanoGPT's README (github.com/karpathy/nanoGPT, "quick start") reports a best
validation loss of **{NANOGPT_CPU_LOSS}** for its "I only have a macbook" run: a character Transformer
of 4 layers, 4 heads and 128 channels, context 64, batch 12, 2,000 iterations, about 3 minutes on a
laptop CPU; and {NANOGPT_GPU_LOSS} for the 6-layer, 384-channel, context-256 model trained for about 3
minutes on an A100 GPU. Both are a different model (a Transformer) trained on different hardware,
with the same 90/10 character split; the comparison says where a recurrent model stands at a similar
scale of compute, not which architecture is better. PTB characters: published LSTM results use far
larger models, dropout or other regularisers and days of GPU training; they bound what a CPU run can
reach rather than being a target for it."""


def split_shakespeare(path: Path, into: Path) -> tuple[Path, Path]:
    """The first TRAIN_FRACTION of ``path``'s characters (to the end of that line) and the rest, as
    two files in ``into``."""
    text = path.read_text(encoding="utf-8")
    cut = text.find("\n", int(len(text) * TRAIN_FRACTION))
    cut = len(text) if cut < 0 else cut + 1
    train, valid = into / "shakespeare.train.txt", into / "shakespeare.valid.txt"
    train.write_text(text[:cut], encoding="utf-8")
    valid.write_text(text[cut:], encoding="utf-8")
    return train, valid


def shakespeare_rows(args, clock: Clock, data: Path, work: Path, total_weight: float, notes: list[str]
                     ) -> tuple[list[list[str]], list[float]]:
    """One row per cell: parameters, validation loss (nats/char) and bits per character."""
    path = data / SHAKESPEARE
    if missing([path]):
        notes.append(absent_note("tinyshakespeare", [path]))
        return [[label, "", "skipped", "", ""] for label, _ in CELLS], []
    train, valid = split_shakespeare(path, work)
    rows, losses = [], []
    for label, cell in CELLS:
        seconds = fixed_seconds(clock, WEIGHTS["shakespeare"], total_weight)
        print(f"tinyshakespeare, {label}: {seconds / 60:.1f} min", flush=True)
        try:
            outcome = train_and_test("lm", str(train), str(valid), str(valid), seconds=seconds,
                                     out_dir=work / f"shakespeare-{cell}",
                                     training=training_options(args, TRAINING),
                                     model_options={**model(args), "cell": cell}, data_options=data_options(args),
                                     batch_size=batch_size(args, BATCH))
        except FloatingPointError as error:            # a diverged run is a result, not a crash
            notes.append(f"{label}: training diverged ({error}).")
            rows.append([label, "", "diverged", "", ""])
            continue
        losses.append(outcome.test["loss"])
        rows.append([label, f"{outcome.parameters:,}", fmt(outcome.test["loss"]),
                     fmt(outcome.test["bits_per_character"]), run_summary(outcome)])
    return rows, losses


def ptb_rows(args, clock: Clock, data: Path, work: Path, total_weight: float, notes: list[str]) -> list[list[str]]:
    paths = [data / name for name in PTB_CHAR]
    absent = missing(paths)
    if absent:
        notes.append(absent_note("PTB characters", absent))
        return [["LSTM (ours)", "", "skipped", "skipped", ""]]
    train, valid, test = (str(p) for p in paths)
    seconds = fixed_seconds(clock, WEIGHTS["ptb"], total_weight)
    print(f"PTB characters, LSTM: {seconds / 60:.1f} min", flush=True)
    ptb_training = {**TRAINING, "eval_every": 500}           # its validation text is 3.5 times larger
    outcome = train_and_test("lm", train, valid, test, seconds=seconds, out_dir=work / "ptb-char-lstm",
                             training=training_options(args, ptb_training),
                             model_options={**model(args), "cell": "lstm"},
                             data_options={**data_options(args), "level": "ptb-char"},
                             batch_size=batch_size(args, BATCH))
    best_valid = outcome.best_dev["bits_per_character"] if outcome.best_dev else float("nan")
    return [["LSTM (ours)", f"{outcome.parameters:,}", fmt(best_valid), fmt(outcome.test["bits_per_character"]),
             run_summary(outcome)]]


def model(args) -> dict:
    return SMOKE_MODEL if args.smoke else MODEL


def data_options(args) -> dict:
    return SMOKE_DATA if args.smoke else DATA


def main(argv=None) -> None:
    args = parse_args("charlm", __doc__, full_budget=60, argv=argv, add_options=add_data_option)
    clock = Clock(args.budget)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rnnkit-charlm-") as tmp:
        work = Path(tmp)
        data = excerpts(args.data, [SHAKESPEARE, *PTB_CHAR], work / "data", records=40) if args.smoke else args.data
        total_weight = ((0 if missing([data / SHAKESPEARE]) else len(CELLS) * WEIGHTS["shakespeare"])
                        + (0 if missing(data / name for name in PTB_CHAR) else WEIGHTS["ptb"]))
        shakespeare, losses = shakespeare_rows(args, clock, data, work, total_weight, notes)
        ptb = ptb_rows(args, clock, data, work, total_weight, notes)
    if losses:
        best = min(losses)
        relation = "below" if best < NANOGPT_CPU_LOSS else "above"
        notes.insert(0, f"Our best validation loss, {best:.3f} nats/char, is {relation} nanoGPT's CPU figure "
                        f"({NANOGPT_CPU_LOSS}) and {best - NANOGPT_GPU_LOSS:+.3f} from its GPU figure "
                        f"({NANOGPT_GPU_LOSS}).")
    shakespeare += [["nanoGPT, CPU run: Transformer 4 × 128, context 64 (published)", "", f"{NANOGPT_CPU_LOSS}", "",
                     "2,000 iterations, ~3 min on a laptop CPU"],
                    ["nanoGPT, GPU run: Transformer 6 × 384, context 256 (published)", "", f"{NANOGPT_GPU_LOSS}", "",
                     "~3 min on one A100"]]
    ptb += [[label, "", "", value, remark] for label, value, remark in PUBLISHED_PTB]
    layers, hidden = model(args)["layers"], model(args)["hidden"]
    parts = [f"**tinyshakespeare** (90/10 split by characters): {layers} layer(s) of {hidden}, windows of "
             f"{data_options(args)['seq_len']} characters, batch {batch_size(args, BATCH)}, Adam lr {TRAINING['lr']}, "
             "the same time for each cell; the checkpoint with the best validation loss.",
             markdown_table(["model", "parameters", "validation loss (nats/char)", "bits/char", "training"],
                            shakespeare),
             "**PTB characters** (`ptb.char.*`, 49 symbols + `<eos>`): the same LSTM.",
             markdown_table(["model", "parameters", "valid bits/char", "test bits/char", "training / remark"], ptb),
             *notes, PUBLISHED]
    report(args, "\n\n".join(parts), clock)


if __name__ == "__main__":
    main()
