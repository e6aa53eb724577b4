"""The models' one encoder argument and their loss from forward.

EncoderConfig is checked when made and builds the layer it describes; a built Recurrent (batch-first or
not) is accepted and its input size checked; the flat settings of earlier releases build the very same
model (weights, dropout draws and outputs) with a DeprecationWarning that shows the config to write
instead; forward(..., targets) returns (output, loss) equal to the loss the models computed before;
and every recipe's task trains through a DistributedDataParallel wrapper without unwrapping it.
"""
import contextlib
import copy
import dataclasses
import pickle
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import cli_data
import rnnkit
from rnnkit import Recurrent
from rnnkit.models import (CharacterWordEncoder, EncoderConfig, LanguageModel, RecurrentEncoder, Seq2Seq,
                           SequenceClassifier, SequenceRegressor, SequenceTagger)
from rnnkit.recipes import data_options_for, get_recipe, model_options_for

ROOT = Path(__file__).resolve().parents[1]
TOKENS, LENGTHS = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0], [9, 2, 3, 0]]), torch.tensor([4, 2, 3])
FEATURES = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))


# ----- EncoderConfig -------------------------------------------------------------------------------
@pytest.mark.parametrize("fields,error,message", [
    (dict(cell="lstmm"), ValueError, "unknown cell 'lstmm'; available cells: .*gru"),
    (dict(cell=3), TypeError, "cell must be a cell name"),
    (dict(hidden_size=0), ValueError, "hidden_size must be a positive int, got 0"),
    (dict(hidden_size=2.5), TypeError, r"hidden_size must be an int, got float \(2.5\)"),
    (dict(num_layers=True), TypeError, "num_layers must be an int, got bool"),
    (dict(bidirectional="yes"), TypeError, r"bidirectional must be a bool \(True or False\), got str"),
    (dict(dropout=1.5), ValueError, r"dropout must be a number in \[0, 1\], got 1.5"),
    (dict(options=[("variant", "cifg")]), TypeError, "options must be a mapping of option names"),
    (dict(options={"varient": "cifg"}), TypeError, "cell 'lstm' does not take option.*'varient'.*variant"),
    (dict(cell="gru", options={"zoneout": 0.1, "peephole": 1}), TypeError, "cell 'gru' does not take option.*'peephole'"),
    (dict(options={"num_layers": 2}), ValueError, "options must not hold 'num_layers': give it in EncoderConfig's field"),
    (dict(options={"batch_first": False}), ValueError, "'batch_first'.*the encoder reads batch-first input"),
    (dict(options={"dtype": torch.float64}), ValueError, r"'dtype'.*model.to\(dtype\)"),
])
def test_config_refuses_bad_settings_naming_them(fields, error, message):
    with pytest.raises(error, match=message):
        EncoderConfig(**fields)


def test_config_is_frozen_hashable_and_copies_and_pickles():
    config = EncoderConfig("gru", 8, num_layers=2, dropout=0.1, options={"variant": "original", "zoneout": 0.1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_size = 9
    with pytest.raises(TypeError):
        config.options["variant"] = "standard"                    # read-only
    given = {"variant": "original"}
    assert EncoderConfig("gru", options=given).options is not given   # a copy, not the caller's dict
    assert hash(config) == hash(EncoderConfig("gru", 8, 2, dropout=0.1, options={"zoneout": 0.1, "variant": "original"}))
    assert pickle.loads(pickle.dumps(config)) == config == copy.deepcopy(config)
    assert eval(repr(config), {"EncoderConfig": EncoderConfig}) == config
    assert repr(EncoderConfig()) == "EncoderConfig()"
    assert config.cell_options == {"variant": "original"}         # zoneout is Recurrent's


def test_build_makes_the_layer_it_describes_and_drops_out_between_layers_only():
    config = EncoderConfig("lstm", 6, num_layers=2, bidirectional=True, dropout=0.3,
                           options={"variant": "cifg", "zoneout": 0.2})
    encoder = config.build(4)
    layer = encoder.rnn
    assert isinstance(encoder, RecurrentEncoder) and layer.batch_first
    assert (layer.cell_name, layer.input_size, layer.hidden_size, layer.num_layers, layer.bidirectional) == \
           ("lstm", 4, 6, 2, True)
    assert (layer.dropout, layer.zoneout, layer.cells[0].variant) == (0.3, 0.2, "cifg")
    assert (encoder.input_size, encoder.output_size, encoder.num_directions) == (4, 12, 2)
    with _no_warning():                                           # Recurrent would warn of dropout with one layer
        assert EncoderConfig(dropout=0.5).layer(4).dropout == 0.0


def test_a_time_major_layer_encodes_as_the_batch_first_one():
    torch.manual_seed(0)
    time_major = Recurrent("gru", 3, 4, bidirectional=True).double()
    batch_first = Recurrent("gru", 3, 4, bidirectional=True, batch_first=True).double()
    batch_first.load_state_dict(time_major.state_dict())
    x, lengths = torch.randn(2, 5, 3, dtype=torch.float64), torch.tensor([5, 3])
    for expected, got in zip(RecurrentEncoder(batch_first)(x, lengths), RecurrentEncoder(time_major)(x, lengths)):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    drop_in = rnnkit.GRU(3, 4)                                    # torch.nn's signature, time-major
    outputs, summary, _ = RecurrentEncoder(drop_in)(x.float(), lengths)
    assert outputs.shape == (2, 5, 4) and summary.shape == (2, 4)


def test_recurrent_encoder_takes_a_layer_and_nothing_else():
    with pytest.raises(TypeError, match="RecurrentEncoder takes a built rnnkit.Recurrent .*got str"):
        RecurrentEncoder("gru")
    with pytest.raises(TypeError, match="takes no other arguments"):
        RecurrentEncoder(Recurrent("gru", 3, 4), 5)


# ----- models take a built encoder ------------------------------------------------------------------
# each model with a given encoder, and the size of what it feeds it
MODELS = {
    "classifier": (lambda encoder: SequenceClassifier(20, 3, 6, encoder=encoder), 6),
    "classifier features": (lambda encoder: SequenceClassifier(num_classes=3, input_size=2, encoder=encoder), 2),
    "regressor": (lambda encoder: SequenceRegressor(2, 1, encoder=encoder), 2),
    "tagger": (lambda encoder: SequenceTagger(20, 4, 6, encoder=encoder, char_vocab_size=9, char_embedding_dim=3,
                                             char_encoder=EncoderConfig("gru", 2, bidirectional=True)), 6 + 4),
    "tagger characters": (lambda encoder: SequenceTagger(20, 4, 6, char_vocab_size=9, char_embedding_dim=3,
                                                         char_encoder=encoder), 3),
    "seq2seq": (lambda encoder: Seq2Seq(10, 11, 6, encoder=encoder, bos_index=1, eos_index=2), 6),
    "language model": (lambda encoder: LanguageModel(20, 6, encoder=encoder), 6),
    "characters": (lambda encoder: CharacterWordEncoder(9, 6, encoder=encoder), 6),
}


@pytest.mark.parametrize("name", MODELS)
def test_a_built_layer_is_used_as_it_is_and_a_wrong_size_refused_naming_both(name):
    build, size = MODELS[name]
    layer = Recurrent("gru", size, 5, batch_first=True)
    model = build(layer)
    assert any(module is layer for module in model.modules())
    assert build(RecurrentEncoder(layer)) is not None
    with pytest.raises(ValueError, match=rf"the encoder's input_size is {size + 1}, but the model feeds it "
                                         rf".*: {size} features; build the layer with input_size={size}"):
        build(Recurrent("gru", size + 1, 5))
    with pytest.raises(TypeError, match="encoder must be an EncoderConfig, an rnnkit.Recurrent or a "
                                        "RecurrentEncoder, got GRU"):
        build(nn.GRU(size, 5))


def test_seq2seq_decoder_follows_a_built_encoder_layer():
    layer = Recurrent("lstm", 6, 5, num_layers=2, bidirectional=True, batch_first=True, variant="cifg")
    model = Seq2Seq(10, 11, 6, encoder=layer, bos_index=1, eos_index=2)
    assert len(model.decoder_cells) == 2
    assert all(cell.variant == "cifg" and cell.hidden_size == 5 for cell in model.decoder_cells)
    (logits, _), loss = model(TOKENS, LENGTHS, TOKENS, targets=TOKENS)
    assert logits.shape == (3, 4, 11) and loss.ndim == 0


def test_a_language_model_refuses_a_bidirectional_encoder():
    with pytest.raises(ValueError, match=r"the encoder must be one-way \(bidirectional=False\)"):
        LanguageModel(20, 6, encoder=Recurrent("gru", 6, 5, bidirectional=True))
    with pytest.raises(ValueError, match="bidirectional must be False"):
        LanguageModel(20, 6, bidirectional=True)


def test_encoder_and_flat_settings_together_are_refused():
    with pytest.raises(TypeError, match=r"got encoder= and the flat encoder settings 'hidden_size'"):
        SequenceClassifier(20, 3, encoder=EncoderConfig(hidden_size=4), hidden_size=5)
    with pytest.raises(TypeError, match=r"takes at most 4 positional arguments after its own .*got 5"):
        SequenceClassifier(20, 3, 6, 5, "gru", 1, True, "mean")


# ----- the deprecated flat settings build the same model --------------------------------------------
def _tagger_inputs():
    chars = torch.randint(1, 9, (3, 4, 3), generator=torch.Generator().manual_seed(1))
    return TOKENS, LENGTHS, chars


# name: (old form, the config it stands for, new form given that config, inputs); dropout between layers
# and zoneout make the random draws part of the check
FORMS = {
    "SequenceClassifier": (
        lambda: SequenceClassifier(20, 3, 6, 5, "gru", 2, dropout=0.2, variant="original"),     # positional
        EncoderConfig("gru", 5, 2, True, 0.2, {"variant": "original"}),
        lambda config: SequenceClassifier(20, 3, 6, encoder=config, dropout=0.2),
        lambda: (TOKENS, LENGTHS)),
    "SequenceRegressor": (
        lambda: SequenceRegressor(2, 3, hidden_size=5, num_layers=2, dropout=0.2, many_to_many=True, zoneout=0.1),
        EncoderConfig("lstm", 5, 2, dropout=0.2, options={"zoneout": 0.1}),
        lambda config: SequenceRegressor(2, 3, encoder=config, dropout=0.2, many_to_many=True),
        lambda: (FEATURES, LENGTHS)),
    "SequenceTagger": (
        lambda: SequenceTagger(20, 4, 6, hidden_size=5, num_layers=2, dropout=0.2, crf=True, char_vocab_size=9,
                               char_embedding_dim=3, char_hidden_size=4, num_intents=3, variant="cifg"),
        EncoderConfig("lstm", 5, 2, True, 0.2, {"variant": "cifg"}),
        lambda config: SequenceTagger(20, 4, 6, encoder=config, dropout=0.2, crf=True, char_vocab_size=9,
                                      char_embedding_dim=3, char_encoder=EncoderConfig("lstm", 4, bidirectional=True),
                                      num_intents=3),
        _tagger_inputs),
    "Seq2Seq": (
        lambda: Seq2Seq(10, 11, 6, 5, "lstm", 2, bidirectional_encoder=False, dropout=0.2, bos_index=1, eos_index=2,
                        variant="cifg"),
        EncoderConfig("lstm", 5, 2, False, 0.2, {"variant": "cifg"}),
        lambda config: Seq2Seq(10, 11, 6, encoder=config, dropout=0.2, bos_index=1, eos_index=2),
        lambda: (TOKENS, LENGTHS, TOKENS)),
    "LanguageModel": (
        lambda: LanguageModel(20, 6, 5, "gru", 3, dropout=0.2),
        EncoderConfig("gru", 5, 3, dropout=0.2),
        lambda config: LanguageModel(20, 6, encoder=config, dropout=0.2),
        lambda: (TOKENS,)),
    "CharacterWordEncoder": (
        lambda: CharacterWordEncoder(9, 3, 4, "gru"),
        EncoderConfig("gru", 4, bidirectional=True),
        lambda config: CharacterWordEncoder(9, 3, encoder=config),
        lambda: (_tagger_inputs()[2], torch.tensor([[3, 1, 2, 0], [2, 2, 0, 0], [1, 1, 1, 0]]))),
    "RecurrentEncoder": (
        lambda: RecurrentEncoder(4, 6, "gru", 2, True, 0.3),
        EncoderConfig("gru", 6, 2, True, 0.3),
        lambda config: config.build(4),
        lambda: (FEATURES.repeat(1, 1, 2), LENGTHS)),
}


@pytest.mark.parametrize("name", FORMS)
def test_the_flat_settings_build_the_same_model_with_a_warning_that_shows_the_config(name):
    old_form, config, new_form, inputs = FORMS[name]
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match=rf"^{name}\((char_)?hidden_size=\.\.\..*\) is deprecated: ") as caught:
        old = old_form()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = new_form(config)
    assert list(old.state_dict()) == list(new.state_dict())
    for key, value in old.state_dict().items():
        assert torch.equal(value, new.state_dict()[key]), key
    old.train(), new.train()                                      # dropout and zoneout draw: the same draws
    torch.manual_seed(1)
    old_outputs = _tensors(old(*inputs()))
    torch.manual_seed(1)
    new_outputs = _tensors(new(*inputs()))
    assert len(old_outputs) == len(new_outputs) > 0
    for expected, got in zip(old_outputs, new_outputs):
        assert torch.equal(expected, got)
    shown = [re.search(r"(?:pass encoder=|use )(EncoderConfig\(.*\))", str(w.message)) for w in caught]
    shown = [found.group(1).removesuffix(".build(input_size)") for found in shown if found]
    assert [eval(text, {"EncoderConfig": EncoderConfig}) for text in shown] == [config]


def test_the_warning_points_at_the_caller():
    with pytest.warns(DeprecationWarning) as caught:
        SequenceRegressor(2, 1, hidden_size=3)
    assert caught[0].filename == __file__


# ----- forward(..., targets) -> (output, loss) ---------------------------------------------------------
def test_classifier_loss_is_the_mean_cross_entropy_over_examples():
    torch.manual_seed(0)
    model = SequenceClassifier(20, 3, 6, encoder=EncoderConfig("gru", 5, bidirectional=True)).double()
    labels = torch.tensor([2, 0, 1])
    logits, loss = model(TOKENS, LENGTHS, labels=labels)
    torch.testing.assert_close(logits, model(TOKENS, LENGTHS), rtol=0, atol=0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match=r"labels must be class ids of shape \(3,\).*torch.float32 of shape \(3,\)"):
        model(TOKENS, LENGTHS, labels=labels.float())


@pytest.mark.parametrize("crf,intents", [(False, None), (True, torch.tensor([1, 0, 2]))])
def test_tagger_loss_is_its_loss_method(crf, intents):
    torch.manual_seed(0)
    model = SequenceTagger(20, 4, 6, encoder=EncoderConfig("lstm", 5, bidirectional=True), crf=crf,
                           num_intents=3).double()
    tags = torch.randint(0, 4, (3, 4), generator=torch.Generator().manual_seed(2))
    output, loss = model(TOKENS, LENGTHS, tags=tags, intents=intents)
    torch.testing.assert_close(output.emissions, model(TOKENS, LENGTHS).emissions, rtol=0, atol=0)
    torch.testing.assert_close(loss, model.loss(TOKENS, LENGTHS, tags, intents), rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="loss_from_output is deprecated"):
        torch.testing.assert_close(model.loss_from_output(output, LENGTHS, tags, intents), loss, rtol=0, atol=0)
    if not crf:                                                   # the mean over the 9 real words
        emissions = torch.cat([output.emissions[b, :n] for b, n in enumerate(LENGTHS.tolist())])
        tag_list = torch.cat([tags[b, :n] for b, n in enumerate(LENGTHS.tolist())])
        torch.testing.assert_close(loss, F.cross_entropy(emissions, tag_list))
    with pytest.raises(ValueError, match="intents were given without tags"):
        model(TOKENS, LENGTHS, intents=torch.tensor([1, 0, 2]))


def test_seq2seq_loss_is_its_loss_method():
    torch.manual_seed(0)
    model = Seq2Seq(10, 11, 6, encoder=EncoderConfig("gru", 5, bidirectional=True), bos_index=1,
                    eos_index=2).double()
    (logits, weights), loss = model(TOKENS, LENGTHS, TOKENS, targets=TOKENS)
    torch.testing.assert_close(logits, model(TOKENS, LENGTHS, TOKENS)[0], rtol=0, atol=0)
    assert weights.shape == (3, 4, 4)
    torch.testing.assert_close(loss, model.loss(logits, TOKENS), rtol=0, atol=0)


@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_language_model_loss_is_the_mean_of_its_loss_method(lengths):
    torch.manual_seed(0)
    model = LanguageModel(20, encoder=EncoderConfig("lstm", 6)).double()
    targets = torch.roll(TOKENS, -1, dims=1)
    (logits, state), loss = model(TOKENS, lengths=lengths, targets=targets)
    result = model.loss(TOKENS, targets, lengths=lengths)
    torch.testing.assert_close(loss, result.mean, rtol=0, atol=0)
    torch.testing.assert_close(state, result.state, rtol=0, atol=0)
    if lengths is None:                                           # what the lm recipe's task computed
        torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(12, 20), targets.reshape(12)))


@pytest.mark.parametrize("many_to_many", [False, True])
def test_regressor_loss_is_the_mean_squared_error_inside_each_sequence(many_to_many):
    torch.manual_seed(0)
    model = SequenceRegressor(2, 3, encoder=EncoderConfig("gru", 4), many_to_many=many_to_many).double()
    x = FEATURES.double()
    shape = (3, 4, 3) if many_to_many else (3, 3)
    targets = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    predictions, loss = model(x, LENGTHS, targets=targets)
    torch.testing.assert_close(predictions, model(x, LENGTHS), rtol=0, atol=0)
    if not many_to_many:
        torch.testing.assert_close(loss, F.mse_loss(predictions, targets))
    else:                                                         # targets past each end are not read
        errors = torch.cat([(predictions[b, :n] - targets[b, :n]).flatten() for b, n in enumerate(LENGTHS.tolist())])
        torch.testing.assert_close(loss, errors.square().mean())
        torch.testing.assert_close(model(x, targets=targets)[1], F.mse_loss(model(x), targets))
    with pytest.raises(ValueError, match=r"targets must have the predictions' shape"):
        model(x, LENGTHS, targets=targets[:2])


# ----- the recipes' tasks train through DistributedDataParallel ---------------------------------------
RECIPE_DATA = {"classify": cli_data.classify_tsv, "tag": cli_data.tag_conllu, "translate": cli_data.translate_tsv,
               "lm": cli_data.lm_text, "regress": cli_data.series_txt, "tree": cli_data.sst_trees}
SIZES = {"regress": 60}   # values of the series: windows of 8 and the next value
OLD_LOSSES = {    # the loss each task computed before the models returned it, from the plain model
    "classify": lambda model, b, _: F.cross_entropy(model(b.inputs, b.lengths), b.labels),
    "tag": lambda model, b, _: model.loss(b.words, b.lengths, b.tags, b.intents, chars=b.chars,
                                          char_lengths=b.char_lengths),
    "translate": lambda model, b, _: model.loss(model(b.source, b.source_lengths, b.target_in)[0], b.target_out),
    "lm": lambda model, b, _: F.cross_entropy(model(b.inputs)[0].flatten(0, 1), b.targets.flatten()),
    "regress": lambda model, b, _: F.mse_loss(model(b.inputs), b.targets),
    "tree": lambda model, b, task: F.cross_entropy(model(b.words, b.left, b.right, b.level_sizes), b.labels,
                                                   ignore_index=task.ignore_index),
}


@pytest.fixture(scope="module")
def one_process_group(tmp_path_factory):
    """A process group of one (gloo), so that a model can be wrapped in DistributedDataParallel."""
    store = tmp_path_factory.mktemp("ddp") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("name", RECIPE_DATA)
def test_each_task_trains_through_a_ddp_wrapper_with_the_loss_it_had(name, tmp_path, one_process_group):
    recipe = get_recipe(name)
    path = tmp_path / "train.txt"
    RECIPE_DATA[name](path, n=SIZES.get(name, 20))
    model_options = model_options_for(recipe, {"hidden": 6, "embedding": 6,
                                               **({"char_features": True} if name == "tag" else {})})
    data_options = data_options_for(recipe, {"window": 8} if name == "regress" else {})
    records = recipe.read(str(path), data_options)
    state = recipe.prepare(records, model_options, data_options)
    torch.manual_seed(0)
    model = recipe.build_model(state)
    batch = recipe.batches(records, state, 8, shuffle=False, seed=0)[0]
    task = recipe.task(state)
    with _no_warning():
        loss, counts = task.training_loss(nn.parallel.DistributedDataParallel(model), batch)
    torch.testing.assert_close(loss, OLD_LOSSES[name](model, batch, task))
    assert counts[task.loss_unit] > 0
    loss.backward()                                               # the wrapper's hooks reduce the gradients
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_no_recipe_unwraps_and_only_the_trainer_unwraps():
    for path in sorted((ROOT / "rnnkit").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.parent.name == "recipes":                        # `grep -rn unwrap rnnkit/recipes` is empty
            assert "unwrap" not in text and "loss_from_output" not in text, path
        if path.parent.name != "train":
            assert "unwrap(" not in text and "distributed import" not in text, path


# ----- helpers ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _no_warning():
    """Fail on any warning inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _tensors(output) -> list[torch.Tensor]:
    """Every tensor of a model's output (nested tuples, NamedTuples, None left out), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for part in output for t in _tensors(part)]
    return []
