"""The `lm` recipe end to end through rnnkit.recipes.run: reading the three levels, training and
reloading, evaluation against whole-row reference computations, per-line perplexities against a
per-line loop, generation, and the errors a user meets."""
import gzip
import math
from collections import Counter

import pytest
import torch

from rnnkit.data.errors import DataFormatError
from rnnkit.data.vocab import EOS, UNK
from rnnkit.recipes import data_options_for, get_recipe, model_options_for, run
from rnnkit.recipes.lm import join_tokens
from quiet_runs import quiet_config

TEXT = ("the quick brown fox jumps over the lazy dog\n"
        "a lazy dog sleeps in the sun\n"
        "\n"
        "the brown dog jumps\n") * 12
SMALL = {"hidden": 16, "embedding": 8}


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def config(out, **options):
    return quiet_config(out, **{"lr": 0.01, **options})


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    """A tiny character model trained for 2 epochs with a dev file (seq_len 16, batch 4)."""
    folder = tmp_path_factory.mktemp("lm")
    train_file, dev_file = write(folder / "train.txt", TEXT), write(folder / "dev.txt", TEXT[:300])
    torch.manual_seed(0)
    trained, history = run.train("lm", train_file, dev_file, config(folder / "run", epochs=2),
                                 model_options=SMALL, data_options={"seq_len": 16}, batch_size=4, echo=lambda _: None)
    return trained, history, folder, dev_file


def prepared(recipe, records, data_options):
    """The recipe's state for ``records`` with the default model options."""
    return recipe.prepare(records, model_options_for(recipe, SMALL), data_options)


def test_char_level_reads_every_character_and_a_newline_per_line(tmp_path):
    recipe = get_recipe("lm")
    path = write(tmp_path / "t.txt", "aB\n\nc")
    records = recipe.read(path, data_options_for(recipe, {"level": "char"}))
    assert type(records) is list and records == [["a", "B", "\n"], ["\n"], ["c", "\n"]]
    assert recipe.read(path, data_options_for(recipe, {"lowercase": True}))[0] == ["a", "b", "\n"]


def test_word_and_ptb_char_levels_end_each_line_with_eos(tmp_path):
    recipe = get_recipe("lm")
    options = data_options_for(recipe, {"seq_len": 8})
    words = recipe.read(write(tmp_path / "w.txt", " the cat <unk> \n a dog \n"), {**options, "level": "word"})
    assert words == [["the", "cat", "<unk>", EOS], ["a", "dog", EOS]]
    # ptb.char.*: ' '.join('_'.join(line.split())) + ' \n ' (the data README's rule); blank "lines" skipped
    raw = " the cat \n a dog \n"
    ptb_char = "".join(" ".join("_".join(line.split())) + " \n " for line in raw.splitlines())
    symbols = recipe.read(write(tmp_path / "c.txt", ptb_char), {**options, "level": "ptb-char"})
    assert symbols == [list("the_cat") + [EOS], list("a_dog") + [EOS]]
    state = prepared(recipe, symbols, {**options, "level": "ptb-char"})
    assert list(state.vocabularies) == ["tokens"] and state.data_options["level"] == "ptb-char"
    assert set(state.vocabularies["tokens"].symbols) == {UNK, EOS} | set("the_cat") | set("a_dog")


def test_training_windows_are_the_rows_of_the_stream_shifted_by_one(tmp_path):
    """Windows in position order rebuild Zaremba's layout of the stream (training: from an offset)."""
    recipe = get_recipe("lm")
    short = "".join(TEXT.splitlines(keepends=True)[:5])                    # ends with a newline
    options = data_options_for(recipe, {"level": "char", "seq_len": 5})
    records = recipe.read(write(tmp_path / "t.txt", short), options)
    state = prepared(recipe, records, options)
    stream = torch.tensor(state.vocabularies["tokens"].encode(short))

    def layout(offset):
        ids = stream[offset:]
        N = ids.numel() // 4
        return ids[:4 * N].view(4, N)                                      # (B, N)

    for shuffle, offsets in ((False, [0]), (True, range(5))):
        windows = sorted(recipe.batches(records, state, 4, shuffle=shuffle, seed=3), key=lambda w: w.position)
        assert [w.position for w in windows] == list(range(len(windows)))
        assert all(w.inputs.shape[1] <= 5 for w in windows)
        inputs = torch.cat([w.inputs for w in windows], dim=1)              # (4, N-1)
        targets = torch.cat([w.targets for w in windows], dim=1)
        assert any(layout(o).shape[1] - 1 == inputs.shape[1] and torch.equal(layout(o)[:, :-1], inputs)
                   and torch.equal(layout(o)[:, 1:], targets) for o in offsets)
    shuffled = [w.position for w in recipe.batches(records, state, 4, shuffle=True, seed=3)]
    assert shuffled != sorted(shuffled)


def test_a_run_writes_checkpoints_and_reloads_to_the_evaluated_model(char_run):
    trained, history, folder, dev_file = char_run
    assert sorted(p.name for p in (folder / "run" / "checkpoints").iterdir() if p.is_dir())
    reloaded = run.load_run(folder / "run")
    metrics = run.evaluate(reloaded, dev_file, batch_size=4)     # the batch size of the dev evaluations
    assert set(metrics) == {"perplexity", "loss", "bits_per_character"}
    for name, value in history.best.items():
        if name in metrics:
            assert metrics[name] == pytest.approx(value, rel=1e-6)
    assert list(run.predict(reloaded, ["the dog", "xyz"])) == list(run.predict(trained, ["the dog", "xyz"]))


def test_evaluation_with_the_state_carried_equals_reading_each_row_at_once(char_run):
    trained, _, _, dev_file = char_run
    metrics = run.evaluate(trained, dev_file, batch_size=3)
    vocabulary = trained.state.vocabularies["tokens"]
    ids = torch.tensor(vocabulary.encode(TEXT[:300]))
    N = ids.numel() // 3
    rows = ids[:3 * N].view(3, N)                                              # Zaremba's layout
    with torch.no_grad():
        logits, _ = trained.model(rows[:, :-1])                                # (3, N-1, V)
    nll = -logits.log_softmax(-1).gather(-1, rows[:, 1:].unsqueeze(-1)).sum().item()
    count = 3 * (N - 1)
    assert metrics["loss"] == pytest.approx(nll / count, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert metrics["bits_per_character"] == pytest.approx(nll / count / math.log(2), rel=1e-5)


def test_predict_gives_each_lines_perplexity_as_a_per_line_loop_computes_it(char_run):
    trained, _, _, _ = char_run
    lines = ["the lazy fox", "", "Qq!", "a dog sleeps in the brown sun"]
    predicted = list(run.predict(trained, lines))
    assert len(predicted) == len(lines)
    vocabulary = trained.state.vocabularies["tokens"]
    assert "Q" not in vocabulary and "q" in vocabulary                 # no lowercase: "Q" reads as <unk>
    for line, value in zip(lines, predicted):
        ids = [vocabulary.id("\n")] + [vocabulary.id(c) for c in line]
        targets = ids[1:] + [vocabulary.id("\n")]
        with torch.no_grad():
            logits, _ = trained.model(torch.tensor([ids]))
        log_p = logits[0].log_softmax(-1)[torch.arange(len(targets)), torch.tensor(targets)]
        assert float(value) == pytest.approx(math.exp(-log_p.mean().item()), rel=1e-5)


def test_generate_continues_the_prompt_reproducibly(char_run):
    trained, _, _, _ = char_run
    recipe, model, state = trained.recipe, trained.model, trained.state
    text = recipe.generate(model, state, prompt="the ", length=30, temperature=0.8, seed=5)
    assert text.startswith("the ") and len(text) == 4 + 30
    assert recipe.generate(model, state, prompt="the ", length=30, temperature=0.8, seed=5) == text
    others = {recipe.generate(model, state, prompt="the ", length=30, temperature=0.8, seed=s) for s in range(6, 10)}
    assert others != {text}
    # greedy: each character is the argmax after re-reading the whole text so far
    greedy = recipe.generate(model, state, prompt="a", length=8, temperature=0, seed=0)
    vocabulary = state.vocabularies["tokens"]
    expected = "a"
    for _ in range(8):
        with torch.no_grad():
            logits, _ = trained.model(torch.tensor([vocabulary.encode("\n" + expected)]))
        expected += vocabulary.symbols[int(logits[0, -1].argmax())]
    assert greedy == expected


def test_generated_words_and_ptb_symbols_are_joined_as_text():
    assert join_tokens(["the", "cat", EOS, "a", "dog"], "word") == "the cat\na dog"
    assert join_tokens(["sat", EOS], "word", after_text=True) == " sat\n"
    assert join_tokens(list("a_cat") + [EOS], "ptb-char") == "a cat\n"


def test_word_model_trains_and_predicts_with_eos_as_the_line_start(tmp_path):
    lines = TEXT.splitlines()
    train_file = write(tmp_path / "train.txt.gz", "")
    with gzip.open(train_file, "wt", encoding="utf-8") as stream:       # gzip-transparent
        stream.write(TEXT.replace("the quick", "The quick"))
    trained, _ = run.train("lm", train_file, None, config(tmp_path / "run", epochs=1), model_options=SMALL,
                           data_options={"level": "word", "seq_len": 8, "lowercase": True}, batch_size=4,
                           echo=lambda _: None)
    vocabulary = trained.state.vocabularies["tokens"]
    assert set(vocabulary.symbols) == {"<unk>", EOS} | {w for line in lines for w in line.split()}   # no "The"
    (value,) = run.predict(trained, ["The lazy dog"])               # lowercase: "The" read as "the"
    ids = vocabulary.encode([EOS, "the", "lazy", "dog"])
    with torch.no_grad():
        logits, _ = trained.model(torch.tensor([ids]))
    targets = torch.tensor(ids[1:] + [vocabulary.id(EOS)])
    log_p = logits[0].log_softmax(-1)[torch.arange(4), targets]
    assert float(value) == pytest.approx(math.exp(-log_p.mean().item()), rel=1e-5)
    assert trained.recipe.generate(trained.model, trained.state, prompt="the", length=5, seed=0).startswith("the ")


def test_errors_name_the_file_and_line_or_the_option(tmp_path):
    recipe = get_recipe("lm")
    options = data_options_for(recipe, {"seq_len": 8})
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        recipe.read(str(tmp_path / "missing.txt"), options)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nnot \xff utf-8\n")
    with pytest.raises(DataFormatError, match=r"bad.txt:2: not UTF-8"):
        recipe.read(str(bad), options)
    with pytest.raises(ValueError, match="'level' must be one of char, word, ptb-char, got 'chars'"):
        recipe.read(str(bad), {**options, "level": "chars"})
    with pytest.raises(ValueError, match="'seq_len' must be a positive int, got 0"):
        recipe.read(str(bad), {**options, "seq_len": 0})
    with pytest.raises(ValueError, match=r"unknown lm data option 'seq_length' \(did you mean 'seq_len'\?\)"):
        run.train("lm", str(bad), None, config(tmp_path / "run"), data_options={"seq_length": 8})
    one = recipe.read(write(tmp_path / "one.txt", ""), options)
    with pytest.raises(ValueError, match="holds 0 token"):
        recipe.batches(one, prepared(recipe, [["a"]], options), 4, shuffle=False, seed=0)


@pytest.mark.slow
def test_character_model_learns_tinyshakespeare_through_the_recipe(shared_data, tmp_path):
    """100,000 training characters, 2 epochs of a 1-layer LSTM (H=128, T=64, B=16), dev bits per
    character against the add-one unigram and bigram models of the training text."""
    text = shared_data("tinyshakespeare/input.txt").read_text(encoding="utf-8")
    train_text, dev_text = text[:100_000], text[100_000:110_000]
    train_file, dev_file = write(tmp_path / "train.txt", train_text), write(tmp_path / "dev.txt", dev_text)
    torch.manual_seed(0)
    trained, history = run.train("lm", train_file, dev_file, config(tmp_path / "run", epochs=2),
                                 model_options={"hidden": 128, "embedding": 64},
                                 data_options={"seq_len": 64}, batch_size=16, echo=lambda _: None)
    bits = history.best["bits_per_character"]
    symbols = len(set(train_text)) + 1
    counts = Counter(train_text)
    unigram = -sum(math.log2((counts[c] + 1) / (len(train_text) + symbols)) for c in dev_text) / len(dev_text)
    pairs, previous = Counter(zip(train_text, train_text[1:])), Counter(train_text[:-1])
    bigram = -sum(math.log2((pairs[a, b] + 1) / (previous[a] + symbols))
                  for a, b in zip(dev_text, dev_text[1:])) / (len(dev_text) - 1)
    # measured: unigram 4.76, bigram 3.49, the model 2.71 bits per character (8 s)
    assert bits < bigram - 0.5, (bits, bigram, unigram)
