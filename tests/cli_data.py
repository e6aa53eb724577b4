"""Tiny data files, one per task, in each recipe's format, for the tests of the `rnnkit` command.

Each writer puts ``n`` examples in ``path`` and returns them (as the command's predict input and the
gold answers), so that a test can score the command's output by itself. The examples follow a rule a
model can learn (a cue word decides the class, a word's tag is fixed, a word-for-word translation),
and are seeded, so that a file is the same on every run.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

POSITIVE, NEGATIVE = ["good", "great", "fine", "superb"], ["bad", "awful", "poor", "dull"]
FILLER = ["the", "a", "film", "plot", "was", "very", "and", "actors", "story", "quite"]
TAGS = {"the": "DET", "a": "DET", "dog": "NOUN", "cat": "NOUN", "film": "NOUN", "runs": "VERB",
        "sees": "VERB", "likes": "VERB", "big": "ADJ", "old": "ADJ", ".": "PUNCT"}
LEXICON = {"one": "un", "two": "deux", "three": "trois", "cat": "chat", "dog": "chien", "red": "rouge",
           "big": "grand", "sees": "voit", "eats": "mange", "the": "le"}


def classify_tsv(path: Path, n: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    """``text<TAB>label`` lines, label ``pos`` or ``neg`` by the cue word the text holds."""
    rng = random.Random(seed)
    texts, labels = [], []
    for k in range(n):
        label = "pos" if k % 2 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        texts.append(" ".join(words))
        labels.append(label)
    path.write_text("".join(f"{t}\t{y}\n" for t, y in zip(texts, labels)), encoding="utf-8")
    return texts, labels


def tag_conllu(path: Path, n: int = 30, seed: int = 0) -> tuple[list[str], list[str]]:
    """CoNLL-U sentences whose UPOS tag is fixed by the word; returns the sentences and tag lines."""
    rng = random.Random(seed)
    words_of_tag = {}
    for word, tag in TAGS.items():
        words_of_tag.setdefault(tag, []).append(word)
    sentences, tag_lines, blocks = [], [], []
    for k in range(n):
        pattern = ["DET", "NOUN", "VERB", "DET", "ADJ", "NOUN", "PUNCT"][: rng.randint(3, 7)]
        words = [rng.choice(words_of_tag[tag]) for tag in pattern]
        rows = [f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(zip(words, pattern), 1)]
        blocks.append(f"# sent_id = s{k}\n# text = {' '.join(words)}\n" + "\n".join(rows) + "\n\n")
        sentences.append(" ".join(words))
        tag_lines.append(" ".join(pattern))
    path.write_text("".join(blocks), encoding="utf-8")
    return sentences, tag_lines


def translate_tsv(path: Path, n: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    """``source<TAB>target`` pairs translated word for word by ``LEXICON``."""
    rng = random.Random(seed)
    sources = [" ".join(rng.choice(list(LEXICON)) for _ in range(rng.randint(2, 5))) for _ in range(n)]
    targets = [" ".join(LEXICON[w] for w in s.split()) for s in sources]
    path.write_text("".join(f"{s}\t{t}\n" for s, t in zip(sources, targets)), encoding="utf-8")
    return sources, targets


def lm_text(path: Path, n: int = 40, seed: int = 0) -> tuple[list[str], None]:
    """Lines of plain text for a character model."""
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 8))) for _ in range(n)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return lines, None


def sst_trees(path: Path, n: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    """Right-branching SST trees, labels 0-4 on every node, the root 4 or 0 by its cue word; returns
    the sentences and their binary root labels (``positive`` / ``negative``)."""
    rng = random.Random(seed)
    sentences, labels, lines = [], [], []
    for k in range(n):
        positive = bool(k % 2)
        words = [rng.choice(FILLER) for _ in range(rng.randint(1, 4))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
        root = "4" if positive else "0"
        tree = f"(2 {words[-1]})"
        for word in reversed(words[:-1]):
            tree = f"({root} (2 {word}) {tree})"
        lines.append(tree if len(words) > 1 else f"({root} {words[0]})")
        sentences.append(" ".join(words))
        labels.append("positive" if positive else "negative")
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return sentences, labels


def series_txt(path: Path, n: int = 200, seed: int = 0) -> tuple[list[str], list[float]]:
    """One value per line of a noisy sine; returns history lines of 8 values and the value after each."""
    rng = random.Random(seed)
    values = [math.sin(0.3 * t) + 0.05 * rng.gauss(0, 1) for t in range(n)]
    path.write_text("".join(f"{v:.6f}\n" for v in values), encoding="utf-8")
    histories = [" ".join(f"{v:.6f}" for v in values[s:s + 8]) for s in range(0, n - 9, 20)]
    return histories, [values[s + 8] for s in range(0, n - 9, 20)]
