"""Study 7: Multi30k German→English with a GRU encoder-decoder, with and without attention.

    python experiments/translation.py [--budget 90] [--smoke] [--data DIR] [--maps 3]

The ``translate`` recipe (``rnnkit.models.seq2seq.Seq2Seq``): a bidirectional GRU encoder, a GRU
decoder started from the encoder's final state through a bridge, trained by teacher forcing on
the pairs of ``multi30k/train.{de,en}.gz`` (lower-cased, tokenised by ``simple_tokenize``, words
seen once read as ``<unk>``, pairs over 50 tokens left out of training). Two models, the same
except for the attention:

* **no attention** (Sutskever, Vinyals & Le 2014, arXiv:1409.3215; Cho et al. 2014): the source
  reaches the decoder only through the initial state;
* **Bahdanau attention** (Bahdanau, Cho & Bengio 2015, arXiv:1409.0473: additive scores over the
  encoder's outputs at every decoder step), with input feeding (Luong et al. 2015).

Each trains for half the budget (a fixed CPU time; test decoding comes on top) with Adam, the
gradient norm clipped to 1, one evaluation per epoch on ``val`` (greedy decoding, BLEU), stopping
after 3 epochs without a better BLEU; the best checkpoint is scored on ``test_2016_flickr`` by sacrebleu (BLEU and chrF on detokenised, lower-cased
text; ``rnnkit.recipes.translate``). The attention weights of the first ``--maps`` test sentences
are drawn as pictures (``rnnkit.diagnose.attention.plot_attention``) beside the results file.

Full size: 90 minutes on one thread (45 per model).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from common import Clock, figure_path, markdown_table, parse_args, report
from recipe_runs import (absent_note, add_data_option, batch_size, excerpts, fixed_seconds, missing, run_summary,
                         train_and_test, training_options)
from rnnkit.data.text import iter_lines
from rnnkit.diagnose.attention import plot_attention

SPLITS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}
FILES = tuple(f"multi30k/{name}.{side}.gz" for name in SPLITS.values() for side in ("de", "en"))
MODELS = (("no attention", "none"), ("Bahdanau attention", "bahdanau"))

MODEL = dict(cell="gru", bidirectional=True, layers=1, embedding=256, hidden=256, dropout=0.3, beam=1)
DATA = dict(lowercase=True, min_freq=2, max_length=50)
TRAINING = dict(lr=1e-3, clip_norm=1.0, epochs=20, patience=3)
BATCH = 64
SMOKE_MODEL = dict(MODEL, embedding=8, hidden=8, dropout=0.0)

TUTORIAL_BLEU = {"none": 20.6, "bahdanau": 28.3}
PUBLISHED = f"""\
Published figures: the PyTorch seq2seq tutorial's GRU encoder-decoder on Multi30k De→En, BLEU
{TUTORIAL_BLEU['none']} without attention and {TUTORIAL_BLEU['bahdanau']} with Bahdanau attention, trained on a
GPU (the study's reference figures; which tutorial and which BLEU implementation were not verified
here). Their models, tokenisation and number of epochs differ from ours, so the gain from attention
is the figure to compare more than either score."""


def pair(data: Path, split: str) -> str:
    """The ``SOURCE,TARGET`` path of a Multi30k split, as the translate recipe's parallel format reads it."""
    return f"{data / 'multi30k' / split}.de.gz,{data / 'multi30k' / split}.en.gz"


def attention_maps(args, trained, data: Path, count: int) -> list[str]:
    """Draw the attention of the first ``count`` test sentences; the markdown links to the PNGs."""
    sources = [line for _, line in zip(range(count), iter_lines(data / "multi30k" / f"{SPLITS['test']}.de.gz"))]
    links = []
    for number, translation in enumerate(trained.recipe.translate(trained.model, trained.state, sources), start=1):
        path, link = figure_path(args, f"translation_attention_{number}.png")
        if path is None or translation.attention is None:
            continue
        plot_attention(translation.attention, translation.source_tokens, translation.output_tokens, path,
                       title=f"test sentence {number}")
        links.append(f"![attention, test sentence {number}]({link}) `{sources[number - 1]}` → "
                     f"`{translation.text}`")
    return links


def add_options(parser) -> None:
    add_data_option(parser)
    parser.add_argument("--maps", type=int, default=3, help="test sentences whose attention is drawn (default 3)")


def main(argv=None) -> None:
    args = parse_args("translation", __doc__, full_budget=90, argv=argv, add_options=add_options)
    clock = Clock(args.budget)
    notes: list[str] = []
    rows: list[list[str]] = []
    links: list[str] = []
    model = SMOKE_MODEL if args.smoke else MODEL
    training, batch = training_options(args, TRAINING), batch_size(args, BATCH)
    with tempfile.TemporaryDirectory(prefix="rnnkit-translation-") as tmp:
        work = Path(tmp)
        data = excerpts(args.data, FILES, work / "data") if args.smoke else args.data
        absent = missing(data / name for name in FILES)
        if absent:
            notes.append(absent_note("The study", absent))
        bleus = {}
        for label, attention in MODELS:
            if absent:
                rows.append([label, "", "skipped", "", "", f"{TUTORIAL_BLEU[attention]}", ""])
                continue
            seconds = fixed_seconds(clock, 1.0, len(MODELS))
            print(f"Multi30k, {label}: {seconds / 60:.1f} min", flush=True)
            outcome = train_and_test("translate", pair(data, SPLITS["train"]), pair(data, SPLITS["dev"]),
                                     pair(data, SPLITS["test"]), seconds=seconds, out_dir=work / attention,
                                     training=training, model_options={**model, "attention": attention},
                                     data_options=DATA, batch_size=batch)
            bleus[attention] = outcome.test["bleu"]
            best_dev = f"{outcome.best_dev['bleu']:.1f}" if outcome.best_dev else "n/a"
            rows.append([label, f"{outcome.parameters:,}", f"{outcome.test['bleu']:.1f}", f"{outcome.test['chrf']:.1f}",
                         best_dev, f"{TUTORIAL_BLEU[attention]}", run_summary(outcome)])
            if attention != "none":
                links = attention_maps(args, outcome.trained, data, args.maps)
    if len(bleus) == len(MODELS):
        gain, published_gain = bleus["bahdanau"] - bleus["none"], TUTORIAL_BLEU["bahdanau"] - TUTORIAL_BLEU["none"]
        notes.insert(0, f"Gain from attention: {gain:+.1f} BLEU (the tutorial's: {published_gain:+.1f}).")
    parts = [f"GRU encoder-decoder, bidirectional encoder, embeddings {model['embedding']}, {model['hidden']} "
             f"units, dropout {model['dropout']}, batch {batch}, Adam lr {TRAINING['lr']}; greedy decoding; "
             "sacrebleu BLEU and chrF on `test_2016_flickr` (1,000 sentences), best `val` epoch.",
             markdown_table(["model", "parameters", "test BLEU", "test chrF", "val BLEU", "tutorial BLEU (GPU)",
                             "training"], rows),
             *notes]
    if links:
        parts += ["Attention of the model with attention on the first test sentences (rows: output words, "
                  "columns: source words; darker = more weight):", "\n\n".join(links)]
    parts.append(PUBLISHED)
    report(args, "\n\n".join(parts), clock)


if __name__ == "__main__":
    main()
