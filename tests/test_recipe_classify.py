"""The ``classify`` recipe end to end: files → trained run → reloaded model → metrics and labels."""
import collections
import math
import random

import pytest
import torch

from rnnkit.data.errors import DataFormatError
from rnnkit.recipes import get_recipe, run
from rnnkit.recipes.classify import detect_format
from quiet_runs import quiet_config, write_lines

TINY = {"hidden": 8, "embedding": 8}
POSITIVE, NEGATIVE = ("good", "great", "fine"), ("bad", "awful", "poor")
FILLERS = ("the", "film", "was", "a", "movie", "plot", "really", "quite")


def quiet(*_):
    pass


def sentiment_lines(count, seed):
    """``text<TAB>label`` lines: a few filler words around one word that decides the label."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        label = rng.choice(("pos", "neg"))
        words = [rng.choice(FILLERS) for _ in range(rng.randint(1, 6))]
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        lines.append(f"{' '.join(words)}\t{label}")
    return lines


def config(tmp_path, **options):
    return quiet_config(tmp_path / "run", **{"epochs": 1, "seed": 0, **options})


@pytest.fixture
def sentiment_files(tmp_path):
    return (write_lines(tmp_path / "train.tsv", sentiment_lines(48, seed=1)),
            write_lines(tmp_path / "dev.tsv", sentiment_lines(24, seed=2)))


def test_a_run_writes_checkpoints_and_reloads_to_the_metric_it_was_selected_by(tmp_path, sentiment_files):
    train_path, dev_path = sentiment_files
    trained, history = run.train("classify", train_path, dev_path, config(tmp_path, epochs=2),
                                 model_options=TINY, batch_size=8, echo=quiet)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "best.json").is_file() and len(list(checkpoints.glob("step-*"))) >= 1
    reloaded = run.load_run(tmp_path / "run")
    assert str(reloaded.checkpoint) == history.best_checkpoint
    # the trainer scored the model in memory; the reloaded one scores the same on the same batches
    metrics = run.evaluate(reloaded, dev_path, batch_size=8)
    assert metrics["accuracy"] == history.best["accuracy"]
    assert metrics["loss"] == pytest.approx(history.best["loss"], rel=1e-6)
    assert list(run.predict(reloaded, ["the film was good"])) == list(run.predict(trained, ["the film was good"]))


def test_the_model_in_memory_and_its_last_checkpoint_give_the_same_logits(tmp_path, sentiment_files):
    train_path, _ = sentiment_files
    in_memory, _ = run.train("classify", train_path, None, config(tmp_path, out_dir=None),
                             model_options=TINY, batch_size=8, echo=quiet)
    run.train("classify", train_path, None, config(tmp_path), model_options=TINY, batch_size=8, echo=quiet)
    reloaded = run.load_run(tmp_path / "run", which="last")
    words = reloaded.state.vocabularies["words"]
    ids = torch.tensor([words.encode("the movie was awful".split())])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(ids), in_memory.model.eval()(ids), rtol=0, atol=0)


def test_accuracy_counts_predicted_labels_and_an_unseen_label_is_an_error(tmp_path, sentiment_files):
    train_path, _ = sentiment_files
    test_lines = sentiment_lines(20, seed=3) + ["the plot was quite\tneutral"]     # a label training never had
    test_path = write_lines(tmp_path / "test.tsv", test_lines)
    trained, _ = run.train("classify", train_path, None, config(tmp_path), model_options=TINY,
                           batch_size=8, echo=quiet)
    metrics = run.evaluate(trained, test_path, batch_size=8)

    texts, gold = zip(*(line.split("\t") for line in test_lines))
    predicted = list(run.predict(trained, texts))
    assert len(predicted) == len(texts)
    assert metrics["accuracy"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold)) / len(gold))
    # the loss: the mean of -log p(gold) over the examples whose label the model knows
    labels, words = trained.state.vocabularies["labels"], trained.state.vocabularies["words"]
    losses = []
    with torch.no_grad():
        for text, label in zip(texts, gold):
            if label in labels:
                probabilities = trained.model(torch.tensor([words.encode(text.split())])).softmax(-1)[0]
                losses.append(-math.log(probabilities[labels.id(label)]))
    assert len(losses) == len(texts) - 1
    assert metrics["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_lowercase_applies_to_the_training_sentences_and_to_the_predicted_lines(tmp_path):
    pairs = [line.split("\t") for line in sentiment_lines(40, seed=4)]
    sst_lines = [f"{1 if label == 'pos' else 0} {text.capitalize()}" for text, label in pairs]
    train_path = write_lines(tmp_path / "stsa.binary.train", sst_lines)
    trained, _ = run.train("classify", train_path, None, config(tmp_path), model_options=TINY,
                           data_options={"lowercase": True}, batch_size=8, echo=quiet)
    assert set(trained.state.vocabularies["labels"].symbols) == {"0", "1"}
    words = trained.state.vocabularies["words"].symbols
    assert words == [w.lower() for w in words] and "the" in words
    texts = ["The film was GOOD", "A movie , really Awful"]
    assert list(run.predict(trained, texts)) == list(run.predict(trained, [t.lower() for t in texts]))


def test_without_lowercase_a_word_with_capitals_is_an_unknown_word(tmp_path, sentiment_files):
    trained, _ = run.train("classify", sentiment_files[0], None, config(tmp_path), model_options=TINY,
                           batch_size=8, echo=quiet)
    assert trained.state.data_options["lowercase"] is False and "GOOD" not in trained.state.vocabularies["words"]
    texts = ["the film was GOOD", "the film was good"]
    unknown = ["the film was zzzz", "the film was good"]               # zzzz: a word training never had
    assert list(run.predict(trained, texts)) == list(run.predict(trained, unknown))


def ucr_lines(count, seed, length=12):
    """UCR rows ``label v1 v2 ...``: class 1 rises, class 2 falls, with noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice((1, 2))
        slope = 1 if label == 1 else -1
        rows.append(" ".join([f"{label}"] + [f"{slope * t / length + rng.gauss(0, 0.1):.4f}" for t in range(length)]))
    return rows


def test_a_time_series_run_predicts_a_label_for_each_line_of_values(tmp_path):
    train_path = write_lines(tmp_path / "Toy_TRAIN.txt", ucr_lines(24, seed=5))
    test_lines = ucr_lines(10, seed=6)
    test_path = write_lines(tmp_path / "Toy_TEST.txt", test_lines)
    trained, _ = run.train("classify", train_path, None, config(tmp_path), model_options={"hidden": 4},
                           batch_size=8, echo=quiet)
    assert "words" not in trained.state.vocabularies
    values_only = [",".join(line.split()[1:]) for line in test_lines]       # commas, as a CSV row
    predicted = list(run.predict(trained, values_only))
    gold = [line.split()[0] for line in test_lines]
    assert len(predicted) == len(test_lines) and set(predicted) <= {"1", "2"}
    accuracy = run.evaluate(trained, test_path, batch_size=4)["accuracy"]
    assert accuracy == pytest.approx(sum(p == g for p, g in zip(predicted, gold)) / len(gold))
    with pytest.raises(ValueError, match="trained on time series, but this file holds sentences"):
        run.evaluate(trained, write_lines(tmp_path / "text.tsv", sentiment_lines(4, 7)))


@pytest.mark.parametrize("name, lines, expected", [
    ("a.tsv", ["a fine film\tpos"], "tsv"),
    ("stsa.binary.dev", ["", "1 a stirring , funny film"], "sst"),
    ("Coffee_TEST.txt", ["0 -0.51 0.2 1.3e-2"], "ucr"),
    ("Coffee_comma.txt", ["1,0.5,0.25"], "ucr"),
])
def test_the_format_is_detected_from_the_first_line(tmp_path, name, lines, expected):
    assert detect_format(write_lines(tmp_path / name, lines)) == expected


def test_a_folder_is_atis(tmp_path):
    assert detect_format(str(tmp_path)) == "atis"


def atis_folder(folder, utterances):
    folder.mkdir()
    for name, column in (("seq.in", 0), ("seq.out", 1), ("label", 2)):
        write_lines(folder / name, [u[column] for u in utterances])
    return str(folder)


def test_atis_folders_classify_the_intent(tmp_path):
    utterances = [("show flights to boston", "O O O B-toloc", "atis_flight"),
                  ("what does it cost", "O O O O", "atis_airfare")] * 4
    folder = atis_folder(tmp_path / "train", utterances)
    records = get_recipe("classify").read(folder, {"format": "auto", "lowercase": False, "min_freq": 1})
    assert [(r.tokens, r.label) for r in records] == [(u[0].split(), u[2]) for u in utterances]
    trained, _ = run.train("classify", folder, folder, config(tmp_path), model_options=TINY, batch_size=4,
                           echo=quiet)
    assert set(run.predict(trained, ["show flights to denver"])) <= {"atis_flight", "atis_airfare"}


@pytest.mark.parametrize("lines, where", [
    (["a good film\tpos", "no tab here", "bad\tneg"], ":2: 1 tab-separated fields"),
    (["a good film\tpos", "\tneg"], ":2: empty text"),
])
def test_a_malformed_line_names_its_file_and_line(tmp_path, lines, where):
    path = write_lines(tmp_path / "broken.tsv", lines)
    with pytest.raises(DataFormatError, match=f"broken.tsv{where}"):
        run.train("classify", path, None, config(tmp_path), echo=quiet)


def test_missing_files_undetectable_formats_and_empty_input_lines_are_clear_errors(tmp_path, sentiment_files):
    with pytest.raises(FileNotFoundError, match="no such data file"):
        run.train("classify", str(tmp_path / "absent.tsv"), None, config(tmp_path), echo=quiet)
    prose = write_lines(tmp_path / "prose.txt", ["just some words"])
    with pytest.raises(DataFormatError, match="prose.txt:1: cannot tell the format"):
        run.train("classify", prose, None, config(tmp_path), echo=quiet)
    with pytest.raises(ValueError, match="format must be one of"):
        run.train("classify", prose, None, config(tmp_path), data_options={"format": "csv"}, echo=quiet)
    trained, _ = run.train("classify", sentiment_files[0], None, config(tmp_path), model_options=TINY,
                           batch_size=8, echo=quiet)
    with pytest.raises(DataFormatError, match="<input>:2: empty line"):
        list(run.predict(trained, ["a good film", "   "]))


# ----------------------------------------------------------------------------------- it learns
def read_atis_excerpt(source, count):
    lines = [source.joinpath(name).read_text().splitlines()[:count] for name in ("seq.in", "seq.out", "label")]
    return list(zip(*lines))


@pytest.mark.slow
def test_atis_intents_beat_the_majority_intent(shared_data, tmp_path):
    source = shared_data("atis/train/seq.in").parent
    test_source = shared_data("atis/test/seq.in").parent
    train_folder = atis_folder(tmp_path / "train", read_atis_excerpt(source, 1000))
    test_utterances = read_atis_excerpt(test_source, 300)
    test_folder = atis_folder(tmp_path / "test", test_utterances)
    trained, _ = run.train("classify", train_folder, None, config(tmp_path, epochs=8, lr=5e-3),
                           model_options={"hidden": 64, "embedding": 32, "cell": "gru"}, batch_size=16,
                           echo=quiet)
    accuracy = run.evaluate(trained, test_folder)["accuracy"]
    train_intents = [u[2] for u in read_atis_excerpt(source, 1000)]
    majority = collections.Counter(train_intents).most_common(1)[0][0]
    baseline = sum(u[2] == majority for u in test_utterances) / len(test_utterances)
    print(f"ATIS intent accuracy {accuracy:.3f}, majority intent {baseline:.3f}")
    assert accuracy >= baseline + 0.08
