"""Study 6: sentiment, SST-2 with a bidirectional LSTM and SST-5 with the Tree-LSTM.

    python experiments/sentiment.py [--budget 35] [--smoke] [--data DIR]

* **SST-2**: the ``classify`` recipe (``SequenceClassifier``: embeddings → a bidirectional LSTM →
  max pooling over time → a linear layer) trained, as Socher et al. 2013 and Tai et al. 2015 train
  their binary models, on every labelled phrase of the training trees (``sst/trees/train.txt``)
  whose label is not neutral (0-1 negative, 3-4 positive; each distinct phrase once), and scored on
  the sentences of ``sst/sst2_sentences/stsa.binary.{dev,test}``. Without the trees it trains on the
  6,920 sentences of ``stsa.binary.train`` and says so. Test accuracy; goal ≥ 84%.
* **SST-5** (``sst/trees/{train,dev,test}.txt``, fine-grained labels 0-4): the ``tree`` recipe, a
  constituency Tree-LSTM (Tai, Socher & Manning 2015, arXiv:1503.00075) trained on the label of
  every node of the parse trees, scored as they score it: accuracy of the sentence (root) label on
  the test trees. Goal ≥ 48%.

Both train with Adam and the gradient norm clipped to 5, evaluate on dev (SST-5 once per epoch,
SST-2's phrases every 500 steps), stop after 4 (SST-2: 6) evaluations without a better dev accuracy
and score the best checkpoint on test. Words are
lower-cased; those seen once in training read as ``<unk>``; the word vectors start random (Tai et
al. start from 300-dimensional GloVe vectors and tune them, which is worth several points). The
"majority class" row answers the most frequent test label every time: the floor to beat.

Full size: 35 minutes on one thread. SST-5 trains first, for at most 10 (it stopped on the dev
metric after 7 in a 20-minute run); SST-2, which was still improving when 8 minutes ran out,
gets the rest (about 25).
"""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from common import Clock, markdown_table, parse_args, report
from recipe_runs import (absent_note, add_data_option, batch_size, excerpts, goal_note, missing, percent,
                         run_summary, seconds_for, train_and_test, training_options)
from rnnkit.data.text import iter_nonblank_lines
from rnnkit.data.trees import Tree, iter_trees

SST2 = tuple(f"sst/sst2_sentences/stsa.binary.{split}" for split in ("train", "dev", "test"))
SST5_TREES = tuple(f"sst/trees/{split}.txt" for split in ("train", "dev", "test"))
WEIGHTS = {"sst2": 2.5, "sst5": 1.0}

BILSTM = dict(cell="lstm", bidirectional=True, layers=1, embedding=200, hidden=150, dropout=0.5, pooling="max")
TREE_LSTM = dict(composition="tree-lstm", embedding=200, hidden=150, dropout=0.5)
TRAINING = dict(lr=1e-3, clip_norm=5.0, epochs=30, patience=4)
PHRASE_TRAINING = dict(TRAINING, eval_every=500, patience=6)    # an epoch of phrases is ~3,000 steps
BATCH = 25
SMOKE_BILSTM = dict(BILSTM, embedding=8, hidden=8)
SMOKE_TREE_LSTM = dict(TREE_LSTM, embedding=8, hidden=8)

GOALS = {"sst2": 0.84, "sst5": 0.48}
TAI_TREE_LSTM_FINE = 51.0
PUBLISHED = f"""\
Published figures: Tai, Socher & Manning 2015 (arXiv:1503.00075), Table 2: the constituency
Tree-LSTM reaches **{TAI_TREE_LSTM_FINE}%** fine-grained (SST-5) root accuracy (the study's reference figure)
with GloVe vectors tuned during training; their bidirectional LSTM baseline gets about 49% fine-grained
and 87% binary (from our reading of the same table, not verified here). Their binary models, and
ours, train on every labelled phrase of the training trees and are scored on whole sentences."""
LEFT_OUT = """What we leave out, and the likeliest reasons for a gap: neither model starts from pretrained word
vectors (Tai et al. start from 300-d GloVe; the shared data folder holds none, so every word
vector is learned from SST's 8,544 training sentences and rare words read as `<unk>`), and no
hyper-parameter search was run: one setting each, the one stated above."""


def majority_accuracy(labels: list[str]) -> float:
    """The accuracy of always answering the most frequent of ``labels``."""
    return Counter(labels).most_common(1)[0][1] / len(labels)


def sst2_labels(path: Path) -> list[str]:
    """The labels of an ``stsa`` file: the first field of each line."""
    return [line.split(maxsplit=1)[0] for _, line in iter_nonblank_lines(path)]


def root_labels(path: Path) -> list[str]:
    """The root label of each bracketed tree of ``path``: ``(3 (2 ...`` → ``3``."""
    return [line.split(maxsplit=1)[0].lstrip("(") for _, line in iter_nonblank_lines(path)]


def subtrees(tree: Tree):
    """Every node of ``tree``, the root first."""
    yield tree
    for child in tree.children:
        yield from subtrees(child)


def polar_phrases(tree_path: Path) -> list[str]:
    """Every distinct phrase of the trees whose label is not neutral, as ``stsa.binary`` lines: ``0
    words`` for labels 0-1, ``1 words`` for 3-4 (first occurrence's label; a phrase is one line)."""
    lines, seen = [], set()
    for tree in iter_trees(tree_path):
        for node in subtrees(tree):
            text = " ".join(node.leaves())
            if node.label == "2" or text in seen:
                continue
            seen.add(text)
            lines.append(f"{int(node.label in ('3', '4'))} {text}")
    return lines


def sst2_rows(args, clock: Clock, data: Path, work: Path, notes: list[str]) -> list[list[str]]:
    paths = [data / name for name in SST2]
    absent = missing(paths)
    if absent:
        notes.append(absent_note("SST-2", absent))
        return [["SST-2", "BiLSTM (ours)", "skipped", percent(GOALS["sst2"]), ""]]
    trees = data / SST5_TREES[0]
    training = TRAINING
    if missing([trees]):
        notes.append(f"SST-2 trained on the sentences of {paths[0].name} only: {trees} is absent, so not on "
                     "the labelled phrases.")
    else:
        phrases = polar_phrases(trees)
        paths[0] = work / "sst2-phrases.train"
        paths[0].write_text("".join(line + "\n" for line in phrases), encoding="utf-8")
        training = PHRASE_TRAINING
        notes.append(f"SST-2 trained on {len(phrases):,} distinct polar phrases of {trees.name}.")
    seconds = seconds_for(clock, WEIGHTS["sst2"], WEIGHTS["sst2"])
    print(f"SST-2: {seconds / 60:.1f} min", flush=True)
    outcome = train_and_test("classify", *(str(p) for p in paths), seconds=seconds, out_dir=work / "sst2",
                             training=training_options(args, training),
                             model_options=SMOKE_BILSTM if args.smoke else BILSTM,
                             data_options=dict(format="sst", lowercase=True, min_freq=2),
                             batch_size=batch_size(args, BATCH))
    accuracy = outcome.test["accuracy"]
    notes.append(goal_note("SST-2: accuracy", accuracy, GOALS["sst2"], outcome))
    return [["SST-2", "BiLSTM, max pooling (ours)", percent(accuracy), percent(GOALS["sst2"]), run_summary(outcome)],
            ["SST-2", "majority class", percent(majority_accuracy(sst2_labels(paths[2]))), "", ""]]


def sst5_rows(args, clock: Clock, data: Path, work: Path, weights_left: float, notes: list[str]) -> list[list[str]]:
    paths = [data / name for name in SST5_TREES]
    absent = missing(paths)
    if absent:
        notes.append(absent_note("SST-5", absent))
        return [["SST-5", "Tree-LSTM (ours)", "skipped", percent(GOALS["sst5"]), ""]]
    seconds = seconds_for(clock, WEIGHTS["sst5"], weights_left)
    print(f"SST-5: {seconds / 60:.1f} min", flush=True)
    outcome = train_and_test("tree", *(str(p) for p in paths), seconds=seconds, out_dir=work / "sst5",
                             training=training_options(args, TRAINING),
                             model_options=SMOKE_TREE_LSTM if args.smoke else TREE_LSTM,
                             data_options=dict(labels="fine", lowercase=True, min_freq=2),
                             batch_size=batch_size(args, BATCH))
    accuracy = outcome.test["accuracy"]
    notes.append(goal_note("SST-5: root accuracy", accuracy, GOALS["sst5"], outcome)
                 + f" Tai et al. report {TAI_TREE_LSTM_FINE}%.")
    return [["SST-5", "Tree-LSTM (ours)", percent(accuracy), percent(GOALS["sst5"]), run_summary(outcome)],
            ["SST-5", "majority class", percent(majority_accuracy(root_labels(paths[2]))), "", ""],
            ["SST-5", "Tree-LSTM, Tai et al. 2015 (published)", f"{TAI_TREE_LSTM_FINE}", "", "GloVe 300-d, tuned"]]


def main(argv=None) -> None:
    args = parse_args("sentiment", __doc__, full_budget=35, argv=argv, add_options=add_data_option)
    clock = Clock(args.budget)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rnnkit-sentiment-") as tmp:
        work = Path(tmp)
        data = excerpts(args.data, [*SST2, *SST5_TREES], work / "data") if args.smoke else args.data
        # SST-5 first: it stops on the dev metric and leaves its unused minutes to SST-2
        weights_left = WEIGHTS["sst5"] + (0 if missing(data / name for name in SST2) else WEIGHTS["sst2"])
        sst5_notes: list[str] = []
        sst5 = sst5_rows(args, clock, data, work, weights_left, sst5_notes)
        rows = sst2_rows(args, clock, data, work, notes) + sst5
        notes += sst5_notes
    bilstm = SMOKE_BILSTM if args.smoke else BILSTM
    parts = [f"Test accuracy in percent; embeddings {bilstm['embedding']}, {bilstm['hidden']} units (each way for "
             f"the BiLSTM), dropout {bilstm['dropout']}, Adam lr {TRAINING['lr']}, batch {batch_size(args, BATCH)}; "
             "best dev epoch.",
             markdown_table(["data", "model", "accuracy (test)", "goal", "training"], rows),
             *notes, PUBLISHED, LEFT_OUT]
    report(args, "\n\n".join(parts), clock)


if __name__ == "__main__":
    main()
