"""The `translate` recipe end to end through rnnkit.recipes.run, on a toy language (a dictionary and a
reversed word order) written to tmp_path: formats, training and reloading, BLEU/chrF against
sacrebleu on the predictions, perplexity against a per-sentence loop, attention weights and their
picture, and the errors a user meets."""
import gzip
import math
import random

import pytest
import sacrebleu
import torch

from rnnkit.data.errors import DataFormatError
from rnnkit.data.vocab import EOS
from rnnkit.diagnose.attention import attention_figure, plot_attention
from rnnkit.recipes import get_recipe, model_options_for, run
from rnnkit.recipes.translate import detokenize
from quiet_runs import quiet_config

DICTIONARY = {"one": "un", "two": "deux", "three": "trois", "four": "quatre", "five": "cinq",
              "six": "six", "seven": "sept", "eight": "huit", "red": "rouge", "cat": "chat"}
SMALL = {"hidden": 16, "embedding": 8, "cell": "gru"}


def toy_pairs(count, seed, shortest=2, longest=5):
    """English word lists and their 'translation': each word looked up, the order reversed."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        words = [rng.choice(list(DICTIONARY)) for _ in range(rng.randint(shortest, longest))]
        pairs.append((" ".join(words), " ".join(DICTIONARY[w] for w in reversed(words))))
    return pairs


def write_tsv(path, pairs):
    path.write_text("".join(f"{source}\t{target}\n" for source, target in pairs), encoding="utf-8")
    return str(path)


def config(out, **options):
    return quiet_config(out, **{"lr": 0.01, **options})


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("translate")
    dev = toy_pairs(40, seed=1)
    train_file, dev_file = write_tsv(folder / "train.tsv", toy_pairs(200, seed=0)), write_tsv(folder / "dev.tsv", dev)
    torch.manual_seed(0)
    trained, history = run.train("translate", train_file, dev_file, config(folder / "run", epochs=1),
                                 model_options=SMALL, data_options={"lowercase": True}, batch_size=16,
                                 echo=lambda _: None)
    return trained, history, folder, dev_file, dev


def test_detokenize_joins_tokens_without_spaces_before_closing_punctuation():
    assert detokenize(["Hello", ",", "world", "!"]) == "Hello, world!"
    assert detokenize(["(", "a", ")", "b", ":", "50", "%", "."]) == "(a) b: 50%."
    assert detokenize(["Don't", "go"]) == "Don't go"


def test_tsv_and_parallel_files_read_the_same_pairs(tmp_path):
    recipe = get_recipe("translate")
    options = {**recipe.data_defaults, "lowercase": True}
    pairs = [("Hello, World!", "Bonjour, le monde !"), ("Go.", "Va !")]
    from_tsv = recipe.read(write_tsv(tmp_path / "p.tsv", pairs), options)
    for name, column in (("src.gz", 0), ("tgt.gz", 1)):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as stream:
            stream.write("".join(pair[column] + "\n" for pair in pairs))
    both = f"{tmp_path / 'src.gz'},{tmp_path / 'tgt.gz'}"
    assert recipe.read(both, options) == from_tsv                                  # "auto": two names
    assert recipe.read(both, {**options, "format": "parallel"}) == from_tsv
    assert from_tsv[0].source == ["hello", ",", "world", "!"] and from_tsv[1].target == ["va", "!"]
    reversed_ = recipe.read(str(tmp_path / "p.tsv"), {**options, "reverse": True})
    assert [(p.source, p.target) for p in reversed_] == [(p.target, p.source) for p in from_tsv]


def test_malformed_input_names_the_file_and_line(tmp_path):
    recipe = get_recipe("translate")
    options = recipe.data_defaults
    bad = tmp_path / "bad.tsv"
    bad.write_text("one\tun\ntwo without a tab\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad.tsv:2: 1 tab-separated field"):
        recipe.read(str(bad), options)
    (tmp_path / "a.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("un\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"b.txt:2: file ends after 1 lines"):
        recipe.read(f"{tmp_path / 'a.txt'},{tmp_path / 'b.txt'}", options)
    with pytest.raises(ValueError, match="SOURCE_FILE,TARGET_FILE"):
        recipe.read("a,b,c", {**options, "format": "parallel"})
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        recipe.read(str(tmp_path / "missing.tsv"), options)
    with pytest.raises(ValueError, match="'format' must be one of auto, tsv, parallel, got 'csv'"):
        recipe.read(str(bad), {**options, "format": "csv"})


def test_max_length_leaves_long_pairs_out_of_training_batches_only(tmp_path):
    recipe = get_recipe("translate")
    options = {**recipe.data_defaults, "max_length": 3}
    pairs = recipe.read(write_tsv(tmp_path / "p.tsv", toy_pairs(50, seed=2)), options)
    state = recipe.prepare(pairs, model_options_for(recipe, SMALL), options)
    vocabularies = state.vocabularies
    short = sum(len(p.source) <= 3 and len(p.target) <= 3 for p in pairs)
    assert 0 < short < len(pairs)
    training = recipe.batches(pairs, state, 8, shuffle=True, seed=0)
    evaluation = recipe.batches(pairs, state, 8, shuffle=False, seed=0)
    assert sum(len(b.references) for b in training) == short
    assert sum(len(b.references) for b in evaluation) == len(pairs)
    batch = evaluation[0]
    target = vocabularies["target"]
    for row in range(len(batch.references)):         # target_in = BOS y, target_out = y EOS
        n = int((batch.target_out[row] != target.pad_index).sum())
        assert target.decode(batch.target_out[row, :n].tolist())[-1] == EOS
        assert torch.equal(batch.target_in[row, 1:n], batch.target_out[row, :n - 1])
        assert detokenize(target.decode(batch.target_out[row, :n - 1].tolist())) == batch.references[row]


def test_a_run_writes_checkpoints_and_reloads_to_the_evaluated_model(toy_run):
    trained, history, folder, dev_file, dev = toy_run
    assert any((folder / "run" / "checkpoints").iterdir())
    reloaded = run.load_run(folder / "run")
    metrics = run.evaluate(reloaded, dev_file, batch_size=16)
    assert set(metrics) == {"bleu", "chrf", "perplexity", "loss"}
    assert metrics == pytest.approx({k: v for k, v in history.best.items() if k in metrics}, rel=1e-6)
    sources = [source for source, _ in dev[:5]]
    assert list(run.predict(reloaded, sources)) == list(run.predict(trained, sources))


def test_bleu_and_chrf_are_sacrebleus_scores_of_the_predictions(toy_run):
    trained, _, _, dev_file, dev = toy_run
    metrics = run.evaluate(trained, dev_file)
    predictions = list(run.predict(trained, [source for source, _ in dev]))
    assert len(predictions) == len(dev)
    references = [target for _, target in dev]
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert metrics["chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, [references]).score)


def test_perplexity_is_the_per_sentence_teacher_forced_likelihood(toy_run):
    trained, _, _, dev_file, dev = toy_run
    metrics = run.evaluate(trained, dev_file)
    source_vocabulary, target_vocabulary = trained.state.vocabularies["source"], trained.state.vocabularies["target"]
    total, count = 0.0, 0
    for source, target in dev:
        x = torch.tensor([source_vocabulary.encode(source.split())])
        y = target_vocabulary.encode(target.split())
        y_in, y_out = torch.tensor([[target_vocabulary.index["<bos>"]] + y]), y + [target_vocabulary.index[EOS]]
        with torch.no_grad():
            logits, _ = trained.model(x, torch.tensor([x.shape[1]]), y_in)
        total -= logits[0].log_softmax(-1)[torch.arange(len(y_out)), torch.tensor(y_out)].sum().item()
        count += len(y_out)
    assert metrics["loss"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


@pytest.mark.parametrize("beam", [1, 3])
def test_translate_returns_text_tokens_and_one_attention_row_per_output_token(toy_run, beam):
    trained, _, _, _, _ = toy_run
    lines = ["one two three", "", "RED cat"]
    results = trained.recipe.translate(trained.model, trained.state, lines, beam=beam, max_length=6)
    assert len(results) == 3
    assert results[1].text == "" and results[1].attention is None
    for line, result in zip(lines[::2], results[::2]):
        assert result.source_tokens == line.lower().split()          # as the model read them: lowercase
        assert result.attention.shape == (len(result.output_tokens), len(result.source_tokens))
        assert torch.allclose(result.attention.sum(-1), torch.ones(len(result.output_tokens)))
        words = [t for t in result.output_tokens if t != EOS]
        assert result.text == detokenize(words) and len(result.output_tokens) <= 6
    # the data option lowercase: an upper-cased word is read lower-cased, as the training sources were
    same = trained.recipe.translate(trained.model, trained.state, ["red cat"], beam=beam, max_length=6)[0]
    assert same.text == results[2].text and torch.equal(same.attention, results[2].attention)


def test_attention_figure_draws_the_weights_with_the_tokens_and_saves_a_png(tmp_path):
    weights = torch.softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    source, output = ["a", "b", "c", "d"], ["x", "y", EOS]
    figure = attention_figure(weights, source, output, title="a → x")
    (axes,) = figure.axes
    assert torch.allclose(torch.as_tensor(axes.images[0].get_array()), weights)
    assert [t.get_text() for t in axes.get_xticklabels()] == source
    assert [t.get_text() for t in axes.get_yticklabels()] == output
    path = plot_attention(weights, source, output, tmp_path / "attention.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"weights must have shape \(len\(output_tokens\), len\(source_tokens\)\) "
                                         r"= \(2, 4\), got \(3, 4\)"):
        attention_figure(weights, source, output[:2])
    with pytest.raises(ValueError, match=r"\(T_out, S\) tensor.*shape \(4,\)"):
        attention_figure(weights[0], source, output)


def test_model_options_reach_the_model_and_bad_ones_are_refused(tmp_path):
    recipe = get_recipe("translate")
    train_file = write_tsv(tmp_path / "t.tsv", toy_pairs(20, seed=3))
    with pytest.raises(ValueError, match="attention"):
        run.train("translate", train_file, None, config(tmp_path / "a"), model_options={"attention": "dot"})
    with pytest.raises(ValueError, match=r"unknown translate model option 'beam_size' \(did you mean 'beam'\?\)"):
        run.train("translate", train_file, None, config(tmp_path / "b"), model_options={"beam_size": 2})
    pairs = recipe.read(train_file, recipe.data_defaults)
    options = model_options_for(recipe, {**SMALL, "attention": "none", "layers": 2, "bidirectional": False})
    model = recipe.build_model(recipe.prepare(pairs, options, recipe.data_defaults))
    assert model.attention is None and len(model.decoder_cells) == 2 and model.encoder.num_directions == 1


@pytest.mark.slow
def test_attention_learns_the_toy_language_and_beats_no_attention(tmp_path):
    """600 toy pairs (dictionary + reversed order, 3-7 words), 12 epochs of a GRU encoder-decoder
    (H=64): dev BLEU with Bahdanau attention against the same model without attention."""
    train_file = write_tsv(tmp_path / "train.tsv", toy_pairs(600, seed=0, shortest=3, longest=7))
    dev_file = write_tsv(tmp_path / "dev.tsv", toy_pairs(100, seed=1, shortest=3, longest=7))
    scores = {}
    for attention in ("bahdanau", "none"):
        torch.manual_seed(0)
        _, history = run.train("translate", train_file, dev_file, config(tmp_path / attention, epochs=12),
                               model_options={"hidden": 64, "embedding": 32, "cell": "gru", "attention": attention},
                               batch_size=32, echo=lambda _: None)
        scores[attention] = history.best["bleu"]
    # measured: 90.8 with attention, 49.5 without (8 epochs: 80.7 and 40.0)
    assert scores["bahdanau"] > 80 and scores["bahdanau"] > scores["none"] + 20, scores
