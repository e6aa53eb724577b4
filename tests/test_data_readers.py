"""Readers: records written in each format read back equal (plain and gzipped), a malformed record names
its file and line, and the shared datasets read with the counts their README gives."""
import gzip
import itertools
import re
from collections import Counter
from pathlib import Path

import conllu
import pytest

from rnnkit.data.atis import AtisUtterance, iter_atis, read_atis
from rnnkit.data.conll import TaggedSentence, iter_conllu, read_conllu
from rnnkit.data.errors import DataFormatError
from rnnkit.data.labelled import LabelledText, iter_labelled_tsv, read_labelled_tsv, read_sst_sentences
from rnnkit.data.parallel import (SentencePair, iter_pair_tsv, iter_parallel, read_pair_tsv, read_parallel,
                                  simple_tokenize)
from rnnkit.data.text import (iter_char_tokens, iter_lines, iter_numbered_lines, iter_word_lines,
                              read_char_tokens, read_characters, read_lines, read_word_lines, split_by_fraction)


def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
    """Write ``lines`` to ``path`` as UTF-8, through gzip when the name ends in .gz."""
    data = "".join(line + newline for line in lines).encode("utf-8")
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as stream:
            stream.write(data)
    else:
        path.write_bytes(data)
    return path


def raises_at(path: Path, line: int, match: str = ""):
    """pytest.raises for a DataFormatError whose message starts with ``path:line:``."""
    return pytest.raises(DataFormatError, match=rf"^{re.escape(str(path))}:{line}: .*{match}")


compressions = pytest.mark.parametrize("suffix", ["", ".gz"])


# ---------------------------------------------------------------- text: lines, PTB, tinyshakespeare

@compressions
def test_lines_drop_only_their_endings(tmp_path, suffix):
    lines = ["  leading and trailing  ", "", "a stray\rcarriage return", "ünïcödé \u2028 line separator"]
    path = write(tmp_path / f"t.txt{suffix}", lines, newline="\r\n")
    assert read_lines(path) == lines
    assert [n for n, _ in iter_numbered_lines(path)] == [1, 2, 3, 4]


def test_last_line_without_newline_is_read(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"one\ntwo")
    assert read_lines(path) == ["one", "two"]


def test_missing_file_is_named_when_the_reader_is_called(tmp_path):
    missing = tmp_path / "absent"
    for reader in (iter_lines, iter_word_lines, iter_conllu, iter_labelled_tsv, iter_pair_tsv, iter_atis):
        with pytest.raises(FileNotFoundError, match="absent"):
            reader(missing)                                                # no next() needed
    with pytest.raises(FileNotFoundError, match="absent"):
        iter_parallel(write(tmp_path / "present", ["a"]), missing)


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("fine\ncafé\n".encode("latin-1"))
    with raises_at(path, 2, "UTF-8"):
        read_lines(path)
    with raises_at(path, 2, "UTF-8"):
        read_characters(path)


@compressions
def test_word_lines_append_eos_per_line(tmp_path, suffix):
    path = write(tmp_path / f"ptb.txt{suffix}", [" the cat sat ", " on N mats "])
    assert read_word_lines(path) == [["the", "cat", "sat", "<eos>"], ["on", "N", "mats", "<eos>"]]
    assert read_word_lines(path, eos=False)[1] == ["on", "N", "mats"]


def test_char_tokens_round_trip_through_the_ptb_char_rule(tmp_path):
    sentences = ["the <unk> sat", "on N mats"]
    # the rule that produced ptb.char.*: ' '.join('_'.join(line.split())) + ' \n '
    path = tmp_path / "ptb.char.txt"
    path.write_text("".join(" ".join("_".join(s.split())) + " \n " for s in sentences))
    symbols = read_char_tokens(path)
    assert ["".join(line).split("_") for line in symbols] == [s.split() for s in sentences]
    assert list(iter_char_tokens(path, eos=True))[0][-1] == "<eos>"


def test_characters_keep_every_byte_of_text(tmp_path):
    text = "First Citizen:\r\nBefore we proceed\nany further\n"
    path = tmp_path / "input.txt"
    path.write_bytes(text.encode("utf-8"))
    assert read_characters(path) == text


@pytest.mark.parametrize("n", [0, 1, 9, 10, 1001])
def test_split_by_fraction_cuts_by_position(n):
    data = list(range(n))
    train, valid = split_by_fraction(data)
    assert (train, valid) == (data[:int(n * 0.9)], data[int(n * 0.9):])
    pieces = split_by_fraction(data, (0.5, 0.25, 0.25))
    assert sum(pieces, []) == data and len(pieces[0]) == n // 2


@pytest.mark.parametrize("fractions", [(0.9, 0.2), (1.1, -0.1), ()])
def test_split_by_fraction_refuses_fractions_not_summing_to_one(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_by_fraction("abc", fractions)


def test_ptb_words_and_characters_agree(shared_data):
    words = read_word_lines(shared_data("ptb/ptb.valid.txt"))
    chars = read_char_tokens(shared_data("ptb/ptb.char.valid.txt"))
    assert len(words) == 3370 and sum(map(len, words)) == 73_760
    assert sum(map(len, chars)) == 389_672
    # two files, one text: the character symbols spell the word lines
    assert ["".join(line).split("_") for line in chars] == [line[:-1] for line in words]


def test_tinyshakespeare_characters(shared_data):
    text = read_characters(shared_data("tinyshakespeare/input.txt"))
    assert len(text) == 1_115_394 and len(set(text)) == 65
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    train, valid = split_by_fraction(text)
    assert train + valid == text and len(valid) == len(text) - int(len(text) * 0.9)


# ---------------------------------------------------------------- labelled text: TSV and SST

@compressions
def test_labelled_tsv_round_trip(tmp_path, suffix):
    records = [LabelledText(["a", "fine", "film", "."], "pos"), LabelledText(["Dull"], "neg")]
    path = write(tmp_path / f"l.tsv{suffix}", [" ".join(r.tokens) + "\t" + r.label for r in records] + [""])
    assert read_labelled_tsv(path) == records
    assert read_labelled_tsv(path, lowercase=True)[1] == LabelledText(["dull"], "neg")


@pytest.mark.parametrize("bad_line, match", [("no tab here", "1 tab-separated fields"),
                                             ("a\tb\tc", "3 tab-separated"),
                                             ("   \tpos", "empty text"), ("words\t ", "empty label")])
def test_labelled_tsv_malformed_line_is_named(tmp_path, bad_line, match):
    path = write(tmp_path / "l.tsv", ["good one\tpos", bad_line])
    records = iter_labelled_tsv(path)
    assert next(records) == LabelledText(["good", "one"], "pos")       # streamed: the good line first
    with raises_at(path, 2, match):
        next(records)


def test_sst_sentences_round_trip_and_errors(tmp_path):
    path = write(tmp_path / "stsa.fine.dev", ["4 a masterpiece .", "0 tedious"])
    assert read_sst_sentences(path) == [LabelledText(["a", "masterpiece", "."], "4"), LabelledText(["tedious"], "0")]
    for bad in ("positive a masterpiece", "3"):
        path = write(tmp_path / "bad", ["1 fine", bad])
        with raises_at(path, 2, "<label> <sentence>"):
            read_sst_sentences(path)


def test_sst2_shared_files(shared_data):
    folder = "sst/sst2_sentences/stsa.binary"
    counts = {split: Counter(r.label for r in read_sst_sentences(shared_data(f"{folder}.{split}")))
              for split in ("train", "dev", "test")}
    assert counts == {"train": {"0": 3310, "1": 3610}, "dev": {"0": 428, "1": 444}, "test": {"0": 912, "1": 909}}


# ---------------------------------------------------------------- CoNLL-U

CONLLU_SENTENCES = """\
# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tit\tit\tPRON\tPRP\t_\t_\t_\t4:obj\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


@compressions
def test_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path, suffix):
    path = write(tmp_path / f"s.conllu{suffix}", CONLLU_SENTENCES.splitlines())   # no final blank line
    assert read_conllu(path) == [TaggedSentence(["I", "do", "n't", "know", "."], ["PRON", "AUX", "PART", "VERB", "PUNCT"]),
                                 TaggedSentence(["Yes"], ["INTJ"])]
    assert read_conllu(path, column="xpos")[0].tags == ["PRP", "VBP", "RB", "VB", "."]


@pytest.mark.parametrize("bad_line, match", [("3\tknow\tknow\tVERB\tVB\t_\t0\troot\t_", "9 tab-separated fields"),
                                             ("one\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_", "word ID 'one'"),
                                             ("4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_", "expected 3")])
def test_conllu_malformed_word_line_is_named(tmp_path, bad_line, match):
    lines = ["# sent_id = 1", "1\tI\tI\tPRON\tPRP\t_\t2\tnsubj\t_\t_", "2\tsee\tsee\tVERB\tVBP\t_\t0\troot\t_\t_",
             bad_line, ""]
    path = write(tmp_path / "bad.conllu", lines)
    with raises_at(path, 4, match):
        read_conllu(path)


def test_conllu_refuses_unknown_column(tmp_path):
    with pytest.raises(ValueError, match="column must be one of"):
        iter_conllu(tmp_path / "x.conllu", column="pos")


def test_ewt_dev_matches_the_conllu_library(shared_data):
    path = shared_data("ud_english_ewt/en_ewt-ud-dev.conllu")
    ours = read_conllu(path)
    assert len(ours) == 2001 and sum(len(s.words) for s in ours) == 25_147
    with open(path, encoding="utf-8") as stream:               # an independent parser
        theirs = [TaggedSentence([t["form"] for t in s if isinstance(t["id"], int)],
                                 [t["upos"] for t in s if isinstance(t["id"], int)])
                  for s in conllu.parse_incr(stream)]
    assert ours == theirs
    assert len({tag for s in ours for tag in s.tags}) == 17


# ---------------------------------------------------------------- ATIS

def write_atis(folder: Path, utterances: list[AtisUtterance]) -> Path:
    folder.mkdir(exist_ok=True)
    write(folder / "seq.in", [" ".join(u.words) for u in utterances])
    write(folder / "seq.out", [" ".join(u.tags) for u in utterances])
    write(folder / "label", [u.intent for u in utterances])
    return folder


ATIS_UTTERANCES = [AtisUtterance(["fly", "to", "dallas"], ["O", "O", "B-toloc.city_name"], "atis_flight"),
                   AtisUtterance(["fares", "to", "st.", "louis"], ["O", "O", "B-toloc.city_name", "I-toloc.city_name"],
                                 "atis_flight#atis_airfare")]


def test_atis_round_trip(tmp_path):
    utterances = read_atis(write_atis(tmp_path / "train", ATIS_UTTERANCES))
    assert utterances == ATIS_UTTERANCES
    assert utterances[1].intents == ["atis_flight", "atis_airfare"]


def test_atis_tag_count_mismatch_names_seq_out_line(tmp_path):
    folder = write_atis(tmp_path / "train", ATIS_UTTERANCES)
    write(folder / "seq.out", ["O O B-toloc.city_name", "O O B-toloc.city_name"])   # 3 tags, 4 words
    with raises_at(folder / "seq.out", 2, "3 tags for the 4 words"):
        read_atis(folder)


def test_atis_files_of_different_lengths_name_the_shorter(tmp_path):
    folder = write_atis(tmp_path / "train", ATIS_UTTERANCES)
    write(folder / "label", ["atis_flight"])
    utterances = iter_atis(folder)
    assert next(utterances) == ATIS_UTTERANCES[0]
    with raises_at(folder / "label", 2, "ends after 1 lines.*seq.in"):
        next(utterances)


def test_atis_shared_splits(shared_data):
    train = read_atis(shared_data("atis/train/seq.in").parent)
    assert len(train) == 4478
    assert len({t for u in train for t in u.tags}) == 120 and len({u.intent for u in train}) == 21
    assert sum("#" in u.intent for u in train) == 23
    assert [len(read_atis(shared_data(f"atis/{s}/label").parent)) for s in ("valid", "test")] == [500, 893]


# ---------------------------------------------------------------- parallel text

def test_simple_tokenize_separates_punctuation_and_keeps_words():
    assert simple_tokenize("Don't go, Mr. Smith!") == ["Don't", "go", ",", "Mr", ".", "Smith", "!"]
    assert simple_tokenize("Zwei Männer, 3.5 km — là-bas.") == ["Zwei", "Männer", ",", "3.5", "km", "—", "là-bas", "."]
    assert simple_tokenize("Cours\u202f!") == ["Cours", "!"]           # narrow no-break space is a space


@compressions
def test_parallel_round_trip(tmp_path, suffix):
    pairs = [SentencePair(["A", "dog", "runs", "."], ["Ein", "Hund", "läuft", "."]),
             SentencePair(["Two", "men", "!"], ["Zwei", "Männer", "!"])]
    source = write(tmp_path / f"p.en{suffix}", [" ".join(p.source) for p in pairs])
    target = write(tmp_path / f"p.de{suffix}", [" ".join(p.target) for p in pairs])
    assert read_parallel(source, target) == pairs
    assert read_parallel(source, target, lowercase=True, tokenize=str.split)[1] == (["two", "men", "!"],
                                                                                    ["zwei", "männer", "!"])


@pytest.mark.parametrize("short_side", ["source", "target"])
def test_parallel_unequal_lengths_name_the_shorter_file(tmp_path, short_side):
    lines = {"source": ["a", "b", "c"], "target": ["x", "y", "z"]}
    lines[short_side] = lines[short_side][:2]
    source, target = write(tmp_path / "p.src", lines["source"]), write(tmp_path / "p.tgt", lines["target"])
    shorter = source if short_side == "source" else target
    with raises_at(shorter, 3, "ends after 2 lines"):
        read_parallel(source, target)


def test_parallel_empty_sentence_names_its_file(tmp_path):
    source, target = write(tmp_path / "p.src", ["a", "b"]), write(tmp_path / "p.tgt", ["x", " "])
    with raises_at(target, 2, "empty sentence"):
        read_parallel(source, target)


@compressions
def test_pair_tsv_round_trip_and_reverse(tmp_path, suffix):
    path = write(tmp_path / f"fra.txt{suffix}", ["Go.\tVa !", "Who?\tQui ?\tCC-BY 2.0 (France) Attribution"])
    assert read_pair_tsv(path) == [(["Go", "."], ["Va", "!"]), (["Who", "?"], ["Qui", "?"])]
    assert read_pair_tsv(path, reverse=True, lowercase=True)[0] == (["va", "!"], ["go", "."])


def test_pair_tsv_malformed_line_is_named(tmp_path):
    path = write(tmp_path / "fra.txt", ["Go.\tVa !", "Run!", "Hi.\tSalut !"])
    with raises_at(path, 2, "1 tab-separated field"):
        read_pair_tsv(path)


def test_multi30k_validation_pairs(shared_data):
    english, german = shared_data("multi30k/val.en.gz"), shared_data("multi30k/val.de.gz")
    pairs = read_parallel(english, german)
    assert len(pairs) == 1014
    # the tokenizer only removes spaces: the tokens spell the raw line
    for line, pair in zip(iter_lines(english), pairs):
        assert "".join(pair.source) == "".join(line.split())


def test_tatoeba_streams_from_the_start(shared_data):
    pairs = iter_pair_tsv(shared_data("tatoeba_fra_eng/fra.txt.gz"), reverse=True)
    assert next(pairs) == SentencePair(["Va", "!"], ["Go", "."])
    assert len(list(itertools.islice(pairs, 999))) == 999
