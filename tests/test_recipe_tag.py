"""The ``tag`` recipe end to end: CoNLL-U files and ATIS folders → trained run → tags, spans, intents."""
import collections
import random

import pytest
import torch

from rnnkit import metrics
from rnnkit.data.atis import AtisUtterance
from rnnkit.data.conll import TaggedSentence
from rnnkit.data.errors import DataFormatError
from rnnkit.data.vocab import Vocabulary
from rnnkit.recipes import data_options_for, get_recipe, model_options_for, run
from rnnkit.recipes.tag import is_bio
from quiet_runs import quiet_config, write_lines

TINY = {"hidden": 8, "embedding": 8}
CITIES = ("boston", "denver", "dallas", "new york", "san francisco", "atlanta")


def quiet(*_):
    pass


def config(tmp_path, **options):
    return quiet_config(tmp_path / "run", **{"epochs": 1, "seed": 0, **options})


def city_tags(city, slot):
    return [f"B-{slot}"] + [f"I-{slot}"] * (len(city.split()) - 1)


def atis_utterances(count, seed):
    """(words, BIO tags, intent) of flights and fares between two cities."""
    rng = random.Random(seed)
    utterances = []
    for _ in range(count):
        origin, destination = rng.sample(CITIES, 2)
        intent = rng.choice(("atis_flight", "atis_airfare"))
        opening = ["show", "flights"] if intent == "atis_flight" else ["what", "is", "the", "fare"]
        words = [*opening, "from", *origin.split(), "to", *destination.split()]
        tags = ["O"] * (len(opening) + 1) + city_tags(origin, "fromloc") + ["O"] + city_tags(destination, "toloc")
        utterances.append((words, tags, intent))
    return utterances


def atis_folder(folder, utterances):
    folder.mkdir()
    write_lines(folder / "seq.in", [" ".join(words) for words, _, _ in utterances])
    write_lines(folder / "seq.out", [" ".join(tags) for _, tags, _ in utterances])
    write_lines(folder / "label", [intent for _, _, intent in utterances])
    return str(folder)


GRAMMAR = [("the", "DET", "DT"), ("a", "DET", "DT")], [("dog", "NOUN", "NN"), ("Cat", "NOUN", "NN")], \
          [("runs", "VERB", "VBZ"), ("sleeps", "VERB", "VBZ")]


def conllu_sentences(count, seed):
    """CoNLL-U blocks of ``DET NOUN VERB .`` sentences (10 tab-separated fields per word)."""
    rng = random.Random(seed)
    lines = []
    for number in range(count):
        words = [rng.choice(choices) for choices in GRAMMAR] + [(".", "PUNCT", ".")]
        lines.append(f"# sent_id = {number}")
        lines += [f"{i}\t{form}\t{form.lower()}\t{upos}\t{xpos}\t_\t0\tdep\t_\t_"
                  for i, (form, upos, xpos) in enumerate(words, start=1)]
        lines.append("")
    return lines


@pytest.fixture
def atis_files(tmp_path):
    return (atis_folder(tmp_path / "train", atis_utterances(40, seed=1)),
            atis_folder(tmp_path / "dev", atis_utterances(16, seed=2)))


def test_an_atis_run_reloads_to_the_metrics_it_was_selected_by(tmp_path, atis_files):
    train_folder, dev_folder = atis_files
    trained, history = run.train("tag", train_folder, dev_folder, config(tmp_path, epochs=2),
                                 model_options={**TINY, "crf": True, "char_features": True}, batch_size=8,
                                 echo=quiet)
    assert trained.model.crf is not None and trained.model.char_encoder is not None
    assert trained.model.intent_scores.out_features == 2                  # the intent head came by itself
    reloaded = run.load_run(tmp_path / "run")
    assert str(reloaded.checkpoint) == history.best_checkpoint
    evaluated = run.evaluate(reloaded, dev_folder, batch_size=8)
    assert {k: evaluated[k] for k in ("accuracy", "precision", "recall", "f1", "intent_accuracy")} == \
        {k: history.best[k] for k in ("accuracy", "precision", "recall", "f1", "intent_accuracy")}


@pytest.mark.parametrize("options", [{"crf": True, "char_features": True}, {"crf": False}])
def test_evaluate_agrees_with_the_predicted_lines(tmp_path, atis_files, options):
    train_folder, _ = atis_files
    test_utterances = atis_utterances(12, seed=3)
    test_utterances[0] = (["show", "flights", "to", "paris"], ["O", "O", "O", "B-toloc.country"], "atis_city")
    test_folder = atis_folder(tmp_path / "test", test_utterances)    # a tag and an intent never trained on
    trained, _ = run.train("tag", train_folder, None, config(tmp_path), model_options={**TINY, **options},
                           batch_size=8, echo=quiet)
    scores = run.evaluate(trained, test_folder, batch_size=5)

    lines = list(run.predict(trained, [" ".join(words) for words, _, _ in test_utterances]))
    assert len(lines) == len(test_utterances)
    predicted_tags = [line.split("\t")[0].split() for line in lines]
    predicted_intents = [line.split("\t")[1] for line in lines]
    gold_tags = [tags for _, tags, _ in test_utterances]
    assert [len(tags) for tags in predicted_tags] == [len(tags) for tags in gold_tags]
    flat = [(p, g) for ps, gs in zip(predicted_tags, gold_tags) for p, g in zip(ps, gs)]
    assert scores["accuracy"] == pytest.approx(sum(p == g for p, g in flat) / len(flat))
    spans = metrics.span_f1(predicted_tags, gold_tags)
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx(
        (spans["precision"], spans["recall"], spans["f1"]))
    assert scores["intent_accuracy"] == pytest.approx(
        sum(p == g for p, (_, _, g) in zip(predicted_intents, test_utterances)) / len(test_utterances))


@pytest.mark.parametrize("crf, chars, intents", [(False, False, False), (True, False, True), (False, True, True),
                                                 (True, True, False)])
def test_the_training_loss_is_the_taggers_own_loss(crf, chars, intents):
    recipe = get_recipe("tag")
    utterances = atis_utterances(6, seed=4)
    records = [AtisUtterance(*u) if intents else TaggedSentence(u[0], u[1]) for u in utterances]
    options = model_options_for(recipe, {**TINY, "crf": crf, "char_features": chars})
    state = recipe.prepare(records, options, data_options_for(recipe, {}))
    torch.manual_seed(0)
    tagger = recipe.build_model(state)
    batch, = recipe.batches(records, state, 8, shuffle=False, seed=0)
    loss, counts = recipe.task(state).training_loss(tagger, batch)
    reference = tagger.loss(batch.words, batch.lengths, batch.tags, batch.intents if intents else None,
                            chars=batch.chars if chars else None, char_lengths=batch.char_lengths if chars else None)
    torch.testing.assert_close(loss, reference)
    assert counts["tokens"] == sum(len(u[0]) for u in utterances)


def test_a_conllu_run_tags_each_word_and_the_column_option_picks_the_tags(tmp_path):
    train_path = write_lines(tmp_path / "train.conllu", conllu_sentences(30, seed=5))
    for column, tag_set in (("upos", {"DET", "NOUN", "VERB", "PUNCT"}), ("xpos", {"DT", "NN", "VBZ", "."})):
        trained, _ = run.train("tag", train_path, None, config(tmp_path / column), model_options=TINY,
                               data_options={"column": column}, batch_size=8, echo=quiet)
        assert set(trained.state.vocabularies["tags"].symbols) == tag_set
        assert "intents" not in trained.state.vocabularies and trained.model.intent_scores is None
        lines = list(run.predict(trained, ["the dog runs .", "a Cat sleeps"]))
        assert [len(line.split(" ")) for line in lines] == [4, 3] and "\t" not in "".join(lines)
        assert set(" ".join(lines).split()) <= tag_set
        scores = run.evaluate(trained, train_path)
        assert set(scores) == {"accuracy"} and recipe_metric(trained) == "accuracy"


def recipe_metric(trained):
    return trained.recipe.task(trained.state).metric


def test_lowercase_applies_to_the_training_words_and_to_the_predicted_lines(tmp_path):
    train_path = write_lines(tmp_path / "train.conllu", conllu_sentences(30, seed=5))       # "Cat" has a capital
    trained, _ = run.train("tag", train_path, None, config(tmp_path), model_options=TINY,
                           data_options={"lowercase": True}, batch_size=8, echo=quiet)
    words = trained.state.vocabularies["words"].symbols
    assert "cat" in words and "Cat" not in words
    assert list(run.predict(trained, ["A CAT Runs ."])) == list(run.predict(trained, ["a cat runs ."]))
    scores = run.evaluate(trained, train_path)                     # the capitalised file, read lower-cased
    lines = [line.split("\t") for line in conllu_sentences(30, seed=5) if line and not line.startswith("#")]
    sentences, gold = [], []
    for fields in lines:
        if fields[0] == "1":
            sentences.append([])
        sentences[-1].append(fields[1])
        gold.append(fields[3])
    predicted = " ".join(run.predict(trained, [" ".join(s) for s in sentences])).split()
    assert scores["accuracy"] == pytest.approx(sum(p == g for p, g in zip(predicted, gold)) / len(gold))


@pytest.mark.parametrize("tags, expected", [
    (["O", "B-city", "I-city"], True),
    (["O", "S-PER", "B-LOC", "E-LOC"], True),                 # IOBES
    (["NOUN", "VERB", "DET"], False),                         # UPOS
    (["NN", "-LRB-", "IN", "B"], False),                      # XPOS
    (["O"], False),
])
def test_bio_tag_sets_are_told_from_the_others(tags, expected):
    assert is_bio(Vocabulary(tags, unknown=None)) is expected


def test_the_dev_metric_is_f1_for_bio_tags(tmp_path, atis_files):
    trained, _ = run.train("tag", atis_files[0], None, config(tmp_path), model_options=TINY, batch_size=8,
                           echo=quiet)
    assert recipe_metric(trained) == "f1"


@pytest.mark.parametrize("lines, message", [
    (["1\tThe\tthe\tDET\tDT\t_\t0\tdep\t_\t_", "2\tdog\tdog\tNOUN"], "broken.conllu:2: 4 tab-separated fields"),
    (["1\tThe\tthe\tDET\tDT\t_\t0\tdep\t_\t_", "3\tdog\tdog\tNOUN\tNN\t_\t0\tdep\t_\t_"],
     "broken.conllu:2: word ID '3'"),
])
def test_a_malformed_conllu_line_names_its_file_and_line(tmp_path, lines, message):
    with pytest.raises(DataFormatError, match=message):
        run.train("tag", write_lines(tmp_path / "broken.conllu", lines), None, config(tmp_path), echo=quiet)


def test_misaligned_atis_files_missing_files_and_empty_input_lines_are_clear_errors(tmp_path, atis_files):
    folder = atis_folder(tmp_path / "broken", atis_utterances(3, seed=6))
    write_lines(tmp_path / "broken" / "seq.out", ["O O", "O", "O"])
    with pytest.raises(DataFormatError, match=r"seq.out:1: 2 tags for the \d+ words"):
        run.train("tag", folder, None, config(tmp_path), echo=quiet)
    with pytest.raises(FileNotFoundError, match="absent.conllu"):
        run.train("tag", str(tmp_path / "absent.conllu"), None, config(tmp_path), echo=quiet)
    trained, _ = run.train("tag", atis_files[0], None, config(tmp_path), model_options=TINY, batch_size=8,
                           echo=quiet)
    with pytest.raises(DataFormatError, match="<input>:1: empty line"):
        list(run.predict(trained, [""]))
    with pytest.raises(ValueError, match="trained with intents"):
        run.evaluate(trained, write_lines(tmp_path / "dev.conllu", conllu_sentences(2, seed=7)))


# ----------------------------------------------------------------------------------- it learns
def read_atis_excerpt(source, count):
    columns = [source.joinpath(name).read_text().splitlines()[:count] for name in ("seq.in", "seq.out", "label")]
    return [(words.split(), tags.split(), intent) for words, tags, intent in zip(*columns)]


@pytest.mark.slow
def test_atis_slots_beat_the_most_frequent_tag_of_each_word(shared_data, tmp_path):
    train_utterances = read_atis_excerpt(shared_data("atis/train/seq.in").parent, 800)
    test_utterances = read_atis_excerpt(shared_data("atis/test/seq.in").parent, 300)
    trained, _ = run.train("tag", atis_folder(tmp_path / "train", train_utterances), None,
                           config(tmp_path, epochs=5, lr=1e-2),
                           model_options={"hidden": 64, "embedding": 50, "crf": True}, batch_size=32, echo=quiet)
    scores = run.evaluate(trained, atis_folder(tmp_path / "test", test_utterances))

    counts = collections.defaultdict(collections.Counter)
    for words, tags, _ in train_utterances:
        for word, tag in zip(words, tags):
            counts[word][tag] += 1
    baseline = [[counts[w].most_common(1)[0][0] if w in counts else "O" for w in words]
                for words, _, _ in test_utterances]
    baseline_f1 = metrics.span_f1(baseline, [tags for _, tags, _ in test_utterances])["f1"]
    majority = collections.Counter(intent for _, _, intent in train_utterances).most_common(1)[0][0]
    majority_accuracy = sum(intent == majority for _, _, intent in test_utterances) / len(test_utterances)
    print(f"ATIS slot F1 {scores['f1']:.3f} (most frequent tag per word {baseline_f1:.3f}); intent accuracy "
          f"{scores['intent_accuracy']:.3f} (majority {majority_accuracy:.3f})")
    assert scores["f1"] > baseline_f1 + 0.15
    assert scores["intent_accuracy"] > majority_accuracy + 0.04
