"""Every bad input raises ValueError or TypeError with a message that names the argument, what was
expected and what was given; where torch.nn raises another type for the same mistake, the exception
is that type too (rnnkit.errors)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit import cells, errors

R = rnnkit.Recurrent
I, H, T, B = 3, 4, 5, 2
ALL_CELLS = "elman, esn, gru, indrnn, jordan, lstm, mingru, minlstm, residual"
LSTM_VARIANTS = "'standard', 'vanilla', 'nig', 'nfg', 'nog', 'niaf', 'noaf', 'np', 'cifg', 'fgr'"


def x(*shape, dtype=torch.float32):
    return torch.randn(*(shape or (T, B, I))).to(dtype)


def esc(text):
    return re.escape(text)


# ----- the input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(I,), (2, T, B, I)], ids=["1-D", "4-D"])
def test_wrong_input_rank(shape):
    with pytest.raises(ValueError, match=esc(f"input must be 3-D (T, B, input_size) or 2-D unbatched "
                                             f"(T, input_size), got {len(shape)}-D with shape {shape}")):
        R("elman", I, H)(torch.randn(*shape))


def test_wrong_input_rank_names_batch_first_layout():
    with pytest.raises(ValueError, match=esc("3-D (B, T, input_size)")):
        R("elman", I, H, batch_first=True)(torch.randn(I))


@pytest.mark.parametrize("cell", ["elman", "lstm", "mingru"])
def test_wrong_feature_size(cell):
    with pytest.raises(ValueError, match=esc("input must have input_size=3 features in its last dimension, "
                                             "got 5 (input shape (5, 2, 5))")):
        R(cell, I, H)(torch.randn(T, B, 5))


def test_wrong_feature_size_of_packed_input():
    packed = pack_padded_sequence(torch.randn(T, B, 5), [T, 3])
    with pytest.raises(ValueError, match="input_size=3 features.*got 5"):
        R("gru", I, H)(packed)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_non_float_input(dtype):
    with pytest.raises(TypeError, match=f"input must be a floating-point tensor, got dtype {dtype}"):
        R("elman", I, H)(torch.zeros(T, B, I, dtype=dtype))


@pytest.mark.parametrize("value,kind", [([[1.0, 2.0, 3.0]], "list"), (None, "NoneType"),
                                        (torch.randn(T, B, I).numpy(), "ndarray")])
def test_non_tensor_input(value, kind):
    with pytest.raises(TypeError, match=f"input must be a Tensor or a PackedSequence, got {kind}"):
        R("elman", I, H)(value)


def test_empty_sequence():
    with pytest.raises(ValueError, match=esc("input must have at least one time step, got shape (0, 2, 3)")):
        R("elman", I, H)(torch.randn(0, B, I))


# ----- the state ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, B, H), (1, B + 1, H), (1, B, H + 1), (B, H)],
                         ids=["layers*dirs", "batch", "size", "rank"])
def test_state_of_the_wrong_shape(shape):
    with pytest.raises(ValueError, match=esc(f"state 'h' must have shape (1, {B}, {H}) (num_layers * "
                                             f"num_directions, batch, h size), got {shape}")):
        R("elman", I, H)(x(), torch.zeros(*shape))


def test_state_shape_counts_layers_and_directions():
    layer = R("gru", I, H, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=esc(f"must have shape (4, {B}, {H})") + ".*" + esc(f"got (2, {B}, {H})")):
        layer(x(), torch.zeros(2, B, H))


def test_unbatched_state_shape():
    with pytest.raises(ValueError, match=esc(f"state 'h' must have shape (1, {H})") + ".*" + esc(f"got (1, 1, {H})")):
        R("elman", I, H)(torch.randn(T, I), torch.zeros(1, 1, H))


def test_lstm_cell_state_of_the_wrong_size():
    with pytest.raises(ValueError, match=esc(f"state 'c' must have shape (1, {B}, {H})") + ".*" + esc("got (1, 2, 3)")):
        R("lstm", I, H)(x(), (torch.zeros(1, B, H), torch.zeros(1, B, 3)))


def test_lstm_projected_hidden_state_size():
    with pytest.raises(ValueError, match=esc(f"state 'h' must have shape (1, {B}, 2)") + ".*" + esc(f"got (1, {B}, {H})")):
        R("lstm", I, H, proj_size=2)(x(), (torch.zeros(1, B, H), torch.zeros(1, B, H)))


@pytest.mark.parametrize("n", [1, 3])
def test_state_tuple_with_the_wrong_number_of_tensors(n):
    state = torch.zeros(1, B, H) if n == 1 else (torch.zeros(1, B, H),) * n
    with pytest.raises(ValueError, match=esc(f"state must hold 2 tensor(s) ('h', 'c'), got {n}")):
        R("lstm", I, H)(x(), state)


def test_fgr_lstm_needs_three_state_tensors():
    with pytest.raises(ValueError, match=esc("state must hold 3 tensor(s) ('h', 'c', 'ifo'), got 2")):
        R("lstm", I, H, variant="fgr")(x(), (torch.zeros(1, B, H), torch.zeros(1, B, H)))


def test_state_that_is_not_tensors():
    with pytest.raises(TypeError, match=esc("state must be a Tensor or a tuple of Tensors ('h',), got float")):
        R("elman", I, H)(x(), 0.0)
    with pytest.raises(TypeError, match=esc("state must be a Tensor or a tuple of Tensors ('h', 'c'), "
                                            "got a tuple of (Tensor, int)")):
        R("lstm", I, H)(x(), (torch.zeros(1, B, H), 0))


# ----- lengths ------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths,message", [
    ([0, 3], "lengths must be at least 1, got [0, 3] (smallest 0)"),
    ([-1, 3], "lengths must be at least 1, got [-1, 3] (smallest -1)"),
    (torch.tensor([3, 0]), "lengths must be at least 1, got [3, 0] (smallest 0)"),
    ([T + 1, 3], f"lengths must not exceed the sequence length {T}, got [{T + 1}, 3] (largest {T + 1})"),
    ([2, 3, 4], f"lengths must have shape ({B},) (one length per sequence in the batch), got shape (3,)"),
    ([2], f"lengths must have shape ({B},) (one length per sequence in the batch), got shape (1,)"),
    (torch.tensor([[2, 3]]), f"lengths must have shape ({B},) (one length per sequence in the batch), "
                             "got shape (1, 2)"),
], ids=["zero", "negative", "zero-tensor", "too-long", "too-many", "too-few", "2-D"])
def test_bad_lengths_values(lengths, message):
    with pytest.raises(ValueError, match=esc(message)):
        R("elman", I, H)(x(), lengths=lengths)


@pytest.mark.parametrize("lengths,message", [
    (torch.tensor([2.0, 3.0]), "lengths must hold integers, got a tensor of dtype torch.float32"),
    (torch.tensor([True, True]), "lengths must hold integers, got a tensor of dtype torch.bool"),
    ([2.5, 3.0], "lengths must be a 1-D tensor or a list of ints, got [2.5, 3.0]"),
    ([2.0, 3.0], "lengths must be a 1-D tensor or a list of ints, got [2.0, 3.0]"),
    ([True, 2], "lengths must be a 1-D tensor or a list of ints, got [True, 2]"),
    (3, "lengths must be a 1-D tensor or a list of ints, got 3"),
    ("ab", "lengths must be a 1-D tensor or a list of ints, got 'ab'"),
], ids=["float-tensor", "bool-tensor", "float-list", "integral-float-list", "bool-list", "int", "str"])
def test_lengths_of_the_wrong_type(lengths, message):
    with pytest.raises(TypeError, match=esc(message)):
        R("elman", I, H)(x(), lengths=lengths)


def test_integer_lengths_in_every_form_are_accepted():
    layer, inputs = R("elman", I, H, backend="reference"), x()
    want = layer(inputs, lengths=torch.tensor([3, 5]))[1]
    for lengths in ([3, 5], (3, 5), np.array([3, 5]), torch.tensor([3, 5], dtype=torch.int32)):
        torch.testing.assert_close(layer(inputs, lengths=lengths)[1], want, atol=0, rtol=0)
    assert not torch.equal(layer(inputs, lengths=[5, 5])[1], want)


def test_lengths_together_with_a_packed_sequence():
    packed = pack_padded_sequence(x(), [T, 3])
    with pytest.raises(ValueError, match=esc("lengths must be None when the input is a PackedSequence")):
        R("lstm", I, H)(packed, lengths=[T, 3])


# ----- cell names, variants and options -----------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: R("transformer", I, H), lambda: cells.create("transformer", I, H),
                                  lambda: R("transformer", I, H, recurrent_dropout=0.1)],
                         ids=["Recurrent", "create", "with-recurrent-dropout"])
def test_unknown_cell_lists_the_available_ones(make):
    with pytest.raises(ValueError, match=esc(f"unknown cell 'transformer'; available cells: {ALL_CELLS}")):
        make()


def test_cell_name_of_the_wrong_type():
    with pytest.raises(TypeError, match="cell must be a cell name \\(str\\), got int"):
        R(5, I, H)


@pytest.mark.parametrize("cell,allowed", [("lstm", LSTM_VARIANTS), ("gru", "'standard', 'original'")])
def test_unknown_variant_lists_the_allowed_ones(cell, allowed):
    with pytest.raises(ValueError, match=esc(f"variant must be one of {allowed}; got 'peephole'")):
        R(cell, I, H, variant="peephole")


@pytest.mark.parametrize("cell,options,message", [
    ("gru", dict(peephole=True), "cell 'gru' does not take option(s) 'peephole'; it takes: variant, bias, layer_norm"),
    ("elman", dict(variant="x"), "cell 'elman' does not take option(s) 'variant'; it takes: nonlinearity, bias, init"),
    ("gru", dict(proj_size=2), "cell 'gru' does not take option(s) 'proj_size'"),
    ("mingru", dict(layer_norm=True, nonlinearity="relu"),
     "cell 'mingru' does not take option(s) 'layer_norm', 'nonlinearity'; it takes: bias"),
])
def test_option_a_cell_does_not_take(cell, options, message):
    with pytest.raises(TypeError, match=esc(message)):
        R(cell, I, H, **options)


@pytest.mark.parametrize("cell", ["elman", "residual", "indrnn", "jordan", "esn"])
def test_bad_nonlinearity(cell):
    with pytest.raises(ValueError, match=esc("nonlinearity must be one of 'tanh', 'relu', 'sigmoid'; "
                                             "got 'softsign'")):
        R(cell, I, H, nonlinearity="softsign")


def test_bad_jordan_output_nonlinearity_and_size():
    with pytest.raises(ValueError, match=esc("output_nonlinearity must be one of 'tanh', 'relu', 'sigmoid', "
                                             "'identity'; got 'softmax'")):
        R("jordan", I, H, output_nonlinearity="softmax")
    with pytest.raises(ValueError, match="output_size must be a positive int, got 0"):
        R("jordan", I, H, output_size=0)


def test_bad_choices_of_other_options():
    with pytest.raises(ValueError, match=esc("init must be one of 'default', 'identity'; got 'orthogonal'")):
        R("elman", I, H, init="orthogonal")
    with pytest.raises(TypeError, match=esc("cell 'minlstm' does not take option(s) 'mode'")):
        R("minlstm", I, H, mode="scan")
    with pytest.raises(ValueError, match=esc("backend must be one of 'auto', 'native', 'fused', 'generated', "
                                             "'scan', 'parallel_scan', 'reference'; got 'cuda'")):
        R("elman", I, H, backend="cuda")
    with pytest.raises(ValueError, match=esc("backend='native' cannot run this layer: no torch kernel "
                                             "computes LSTMCell(3, 4, variant='vanilla')")):
        R("lstm", I, H, variant="vanilla", backend="native")
    with pytest.raises(ValueError, match=esc("backend='scan' cannot run this layer: only minGRU and minLSTM")):
        R("gru", I, H, backend="scan")
    with pytest.raises(ValueError, match=esc("bptt must be one of 'auto', 'hand', 'autograd'; got 'rtrl'")):
        R("elman", I, H, bptt="rtrl")


def test_torch_compatible_rnn_takes_only_tanh_and_relu():
    with pytest.raises(ValueError, match=esc("nonlinearity must be 'tanh' or 'relu' (as torch.nn.RNN), "
                                             "got 'sigmoid'")):
        rnnkit.RNN(I, H, nonlinearity="sigmoid")
    # rnnkit's own Elman network does take sigmoid
    assert R("elman", I, H, nonlinearity="sigmoid").cells[0].nonlinearity == "sigmoid"


# ----- sizes and rates ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, 1.5, True], ids=["zero", "negative", "float", "bool"])
def test_bad_num_layers(value):
    with pytest.raises(ValueError, match=esc(f"num_layers must be a positive int, got {value!r}")):
        R("elman", I, H, num_layers=value)


@pytest.mark.parametrize("argument", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value,error,message", [
    (0, ValueError, "{} must be a positive int, got 0"),
    (-3, ValueError, "{} must be a positive int, got -3"),
    (2.0, TypeError, "{} must be an int, got float (2.0)"),
    ("4", TypeError, "{} must be an int, got str ('4')"),
])
@pytest.mark.parametrize("make", [
    lambda size: R("lstm", **size), lambda size: rnnkit.LSTM(**size), lambda size: rnnkit.GRU(**size),
    lambda size: cells.create("mingru", **size)], ids=["Recurrent", "LSTM", "GRU", "create"])
def test_bad_sizes(argument, value, error, message, make):
    sizes = dict(input_size=I, hidden_size=H)
    sizes[argument] = value
    with pytest.raises(error, match=esc(message.format(argument))):
        make(sizes)


@pytest.mark.parametrize("option", ["input_dropout", "recurrent_dropout", "zoneout"])
@pytest.mark.parametrize("value", [1.0, -0.1, 2, "0.1", True])
def test_rates_outside_zero_one(option, value):
    with pytest.raises(ValueError, match=esc(f"{option} must be a number in [0, 1), got {value!r}")):
        R("elman", I, H, num_layers=2, **{option: value})


@pytest.mark.parametrize("value", [1.5, -0.1, 2, "0.1", True])
def test_dropout_between_layers_outside_zero_one(value):
    """dropout between layers may be 1 (every output dropped), as torch.nn allows."""
    with pytest.raises(ValueError, match=esc(f"dropout must be a number in [0, 1], got {value!r}")):
        R("elman", I, H, num_layers=2, dropout=value)
    assert R("elman", I, H, num_layers=2, dropout=1).dropout == 1.0


def test_torch_compatible_dropout_out_of_range():
    with pytest.raises(ValueError, match=esc("dropout must be a number in [0, 1], got 1.5")):
        rnnkit.LSTM(I, H, num_layers=2, dropout=1.5)


@pytest.mark.parametrize("value", [H, H + 1, -1, 1.5])
@pytest.mark.parametrize("make", [lambda p: R("lstm", I, H, proj_size=p), lambda p: rnnkit.LSTM(I, H, proj_size=p)],
                         ids=["Recurrent", "LSTM"])
def test_proj_size_at_least_hidden_size(value, make):
    with pytest.raises(ValueError, match=esc(f"proj_size must be an int in [0, hidden_size={H}), got {value!r}")):
        make(value)


# ----- options that contradict the cell -------------------------------------------------------------
def test_forget_bias_without_a_forget_gate():
    with pytest.raises(ValueError, match=esc("forget_bias must be None for variant 'nfg', which has no forget "
                                             "gate (f = 1); got forget_bias=1.0")):
        R("lstm", I, H, variant="nfg", forget_bias=1.0)
    with pytest.raises(ValueError, match=esc("forget_bias needs bias=True") + ".*" + esc("bias=False")):
        R("lstm", I, H, forget_bias=1.0, bias=False)
    for variant in ("standard", "vanilla", "cifg", "nig", "nog"):   # these have one (cifg: f = 1 - i)
        R("lstm", I, H, variant=variant, forget_bias=1.0)


@pytest.mark.parametrize("cell", ["mingru", "minlstm", "esn"])
def test_recurrent_dropout_without_a_recurrent_matrix(cell):
    with pytest.raises(ValueError, match=esc(f"recurrent_dropout must be 0 for cell '{cell}', which has no "
                                             "recurrent matrix to apply it to; got 0.2")):
        R(cell, I, H, recurrent_dropout=0.2)


def test_layer_norm_with_the_original_gru():
    with pytest.raises(ValueError, match=esc("layer_norm=True is implemented for variant='standard' only "
                                             "(got variant='original')")):
        R("gru", I, H, variant="original", layer_norm=True)


@pytest.mark.parametrize("option,value,error,message", [
    ("spectral_radius", 0.0, ValueError, "spectral_radius must be positive, got 0.0"),
    ("spectral_radius", -0.5, ValueError, "spectral_radius must be positive, got -0.5"),
    ("spectral_radius", float("nan"), ValueError, "spectral_radius must be positive, got nan"),
    ("spectral_radius", "0.9", TypeError, "spectral_radius must be a number, got str ('0.9')"),
    ("spectral_radius", None, TypeError, "spectral_radius must be a number, got NoneType (None)"),
    ("leak_rate", 0.0, ValueError, "leak_rate must be in (0, 1], got 0.0"),
    ("leak_rate", 1.5, ValueError, "leak_rate must be in (0, 1], got 1.5"),
    ("leak_rate", None, TypeError, "leak_rate must be a number, got NoneType (None)"),
    ("sparsity", 1.0, ValueError, "sparsity must be in [0, 1), got 1.0"),
    ("sparsity", -0.1, ValueError, "sparsity must be in [0, 1), got -0.1"),
    ("sparsity", "dense", TypeError, "sparsity must be a number, got str ('dense')"),
])
def test_bad_echo_state_options(option, value, error, message):
    with pytest.raises(error, match=esc(message)):
        R("esn", I, H, **{option: value})
    with pytest.raises(error, match=esc(message)):
        rnnkit.EchoStateNetwork(I, H, 1, **{option: value})


def test_bad_indrnn_recurrent_max():
    with pytest.raises(ValueError, match="recurrent_max must be positive or None, got -1"):
        R("indrnn", I, H, recurrent_max=-1)
    with pytest.raises(TypeError, match=esc("recurrent_max must be a positive number or None, got str ('2')")):
        R("indrnn", I, H, recurrent_max="2")


def test_fit_ridge_bad_arguments():
    with pytest.raises(ValueError, match=esc("fit_ridge expects features (N, H) and targets (N, O) with the "
                                             "same N; got (10, 3) and (9, 1)")):
        cells.fit_ridge(torch.randn(10, 3), torch.randn(9, 1))
    with pytest.raises(ValueError, match="ridge must be non-negative, got -1.0"):
        cells.fit_ridge(torch.randn(10, 3), torch.randn(10, 1), ridge=-1.0)


def test_valid_calls_still_work():
    """The checks above reject only what is wrong: the same calls with good arguments run."""
    out, (h, c) = R("lstm", I, H, proj_size=2)(x(), (torch.zeros(1, B, 2), torch.zeros(1, B, H)), lengths=[5, 3])
    assert out.shape == (T, B, 2) and h.shape == (1, B, 2) and c.shape == (1, B, H)
    out, h = R("elman", I, H)(torch.randn(T, I), torch.zeros(1, H))
    assert out.shape == (T, H) and h.shape == (1, H)


# ----- torch.nn's exception types as well (rnnkit.errors) ------------------------------------------
@pytest.mark.parametrize("call", [
    lambda: R("elman", I, H)(torch.randn(T, B, 5)),
    lambda: R("elman", I, H)(x(), torch.zeros(1, B + 1, H)),
    lambda: R("lstm", I, H)(x(), torch.zeros(1, B, H)),
    lambda: R("elman", I, H)(torch.randn(0, B, I)),
], ids=["features", "state-shape", "state-count", "empty"])
def test_shape_mistakes_are_runtime_errors_too(call):
    with pytest.raises(errors.ShapeError) as error:
        call()
    assert isinstance(error.value, ValueError) and isinstance(error.value, RuntimeError)


def test_input_dtype_other_than_the_weights():
    layer = R("gru", I, H)
    with pytest.raises(ValueError, match=esc("RNN input dtype (torch.float64) does not match weight dtype "
                                             "(torch.float32). Convert input: input.to(torch.float32), or "
                                             "convert model: model.to(torch.float64)")):
        layer(x(dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):                  # rnnkit's type stays
        layer(torch.zeros(T, B, I, dtype=torch.int64))
    with torch.autocast("cpu", dtype=torch.bfloat16):                       # autocast: allowed, as torch
        assert layer(x(dtype=torch.bfloat16))[0].shape == (T, B, H)


def test_tensors_on_different_devices():
    layer = R("lstm", I, H)
    with pytest.raises(errors.DeviceError, match=esc("input is on device meta but the layer's weights are on "
                                                     "device cpu")):
        layer(x().to("meta"))
    with pytest.raises(RuntimeError, match=esc("state is on device meta but the input is on device cpu")):
        layer(x(), (torch.zeros(1, B, H), torch.zeros(1, B, H, device="meta")))


@pytest.mark.parametrize("option", ["bidirectional", "batch_first", "bias"])
@pytest.mark.parametrize("value", [0, 1, "False", None])
def test_flags_must_be_bools(option, value):
    with pytest.raises(TypeError, match=esc(f"{option} must be a bool (True or False), got "
                                            f"{type(value).__name__} ({value!r})")):
        R("gru", I, H, **{option: value})


def test_num_layers_that_is_not_an_int_is_a_type_error_too():
    with pytest.raises(TypeError, match=esc("num_layers must be a positive int, got 1.5")):
        R("elman", I, H, num_layers=1.5)


def test_torch_compatible_argument_types():
    """The drop-ins refuse what torch.nn refuses, with its types, and accept what it accepts."""
    with pytest.raises(ValueError, match="proj_size is an option of LSTM only"):
        rnnkit.GRU(I, H, proj_size=0)
    with pytest.raises(TypeError, match="unexpected keyword argument.*'peephole'"):
        rnnkit.RNN(I, H, peephole=True)
    with pytest.raises(TypeError, match=esc("proj_size must be an int in [0, hidden_size=4), got 1.5")):
        rnnkit.LSTM(I, H, proj_size=1.5)
    with pytest.raises(TypeError, match=esc("batch_first must be a bool (True or False), got str ('False')")):
        rnnkit.LSTM(I, H, batch_first="False")
    assert rnnkit.GRU(I, H, bidirectional=1).bidirectional is True           # torch.nn checks no more
