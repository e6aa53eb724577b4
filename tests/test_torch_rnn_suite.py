"""PyTorch's own tests of torch.nn.RNN / LSTM / GRU, run on torch.nn and on rnnkit's drop-ins.

Derived from PyTorch's test/test_nn.py (commit 74f2fa66feec00335f72813782f4802e80bff4cb; the
per-sequence test_variable_sequence from an earlier revision of that file) and test/test_modules.py
(commit 33263640046f558d38b8e4bc306b1ca6abbf0b1f) with the RNN/GRU/LSTM entries of
torch/testing/_internal/common_modules.py as installed with torch 2.13.0 (git
cf30153c4c131c8164ee7798e5022d810682e2cb), re-expressed as pytest tests. Copyright (c) 2016-
Facebook, Inc (Adam Paszke) and contributors. BSD-3-Clause licence
(https://github.com/pytorch/pytorch/blob/main/LICENSE): redistributions must retain the copyright
notice, the list of conditions and the disclaimer; binary redistributions reproduce them in the
documentation; the contributors' names may not be used to endorse derived products without
permission.

Every test takes a SOURCE of the modules: torch.nn itself, or rnnkit's drop-ins; the tests of
numbers run rnnkit on three paths (``backend="auto"``, the dispatcher's choice; ``"reference"``,
rnnkit's Python loop; ``"fused"``, its C++ loops, which compute the LSTM without projection and
the GRU). A test passes on a source when that source behaves as torch.nn does: the same exception
types, outputs and gradients equal to the no-batch reference or to torch.nn with the same weights.
Where rnnkit words a message differently (docs/cells.md, "Drop-in differences from torch.nn"), the
message checked is each family's own (MESSAGES).

common_modules.py's sample generators are re-expressed here (``module_samples``,
``ERROR_CASES``) rather than imported: importing it needs the ``expecttest`` package, which is not
a dependency of rnnkit.

Left out: the cells (test_RNN_cell*, test_LSTM_cell*, test_RNN_cell_no_broadcasting,
test_lstmcell_backward_only_one_output_grad; rnnkit.RNNCell & co have tests/test_dropin_cells.py);
what needs CUDA, cuDNN or two GPUs: test_cudnn_weight_format, test_RNN_cpu_vs_cudnn_*,
test_cudnn_rnn_dropout_states_device, test_pack_sequence_batch_sizes_throw and test_modules'
test_multiple_device_transfer and test_cpu_gpu_parity. Kept as their CPU part: test_rnn_fused and
test_RNN_cpu_vs_cudnn (each source against torch.nn with the same weights), test_RNN_cudnn_weight_norm,
test_partial_flat_weights and test_cudnn_weight_tying (on the CPU), test_rnn_check_device and
test_projections_lstm_check_device (one tensor on the meta device instead of a second GPU).
"""
from __future__ import annotations

import copy
import io
import itertools
import re
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.utils.parametrize as parametrize
import torch.nn.utils.prune as prune
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN"),
    pytest.mark.filterwarnings("ignore:dropout acts between stacked layers"),           # rnnkit's
    pytest.mark.filterwarnings("ignore:dropout option adds dropout after all but last"),  # torch's
    pytest.mark.filterwarnings("ignore:.*torch.nn.utils.weight_norm is deprecated"),
]

KINDS = ("RNN", "GRU", "LSTM")


@dataclass(frozen=True)
class Source:
    """Where RNN / LSTM / GRU come from: torch.nn, or rnnkit's drop-ins on one backend."""
    name: str
    backend: str | None                 # None: torch.nn itself

    @property
    def is_torch(self) -> bool:
        return self.backend is None

    @property
    def family(self) -> str:
        return "torch.nn" if self.is_torch else "rnnkit"

    def runs(self, kind: str, proj_size: int = 0) -> bool:
        """rnnkit's compiled loops compute the LSTM without projection and the GRU only."""
        return self.backend != "fused" or (kind != "RNN" and not proj_size)

    def make(self, kind: str, *args, **kwargs) -> nn.Module:
        if self.is_torch:
            return getattr(nn, kind)(*args, **kwargs)
        return getattr(rnnkit, kind)(*args, backend=self.backend, **kwargs)


TORCH = Source("torch.nn", None)
RNNKIT = Source("rnnkit", "auto")
SOURCES = (TORCH, RNNKIT)                                                      # every test
NUMERIC_SOURCES = SOURCES + (Source("rnnkit-reference", "reference"), Source("rnnkit-fused", "fused"))


def cases(sources, kinds=KINDS):
    """pytest params (source, kind) for the sources that build the kind."""
    return [pytest.param(s, k, id=f"{s.name}-{k}") for s in sources for k in kinds if s.runs(k)]


def variant_cases(sources, variants):
    """pytest params (source, kind, options) for the sources that compute the variant."""
    return [pytest.param(s, k, o, id=f"{s.name}-{k}{''.join(f'-{n}={v}' for n, v in o.items())}")
            for s in sources for k, o in variants if s.runs(k, o.get("proj_size", 0))]


def paired(kind: str, h: torch.Tensor):
    """The hx argument: the tensor, or (h, h) for the LSTM."""
    return (h, h) if kind == "LSTM" else h


# Where rnnkit words a message differently from torch.nn (docs/cells.md)
MESSAGES = {
    "torch.nn": {"hidden": r"Expected hidden.*size.*got", "input_size": re.escape("input.size(-1) must be equal to input_size"),
                 "empty": "Expected sequence length to be larger than 0 in RNN", "device": "device",
                 "nonlinearity": "Unknown nonlinearity 'garbage'", "proj_size": "proj_size .*only supported for LSTM"},
    "rnnkit": {"hidden": r"state '[hc]' must have shape .* got", "input_size": r"input must have input_size=\d+ features",
               "empty": "input must have at least one time step", "device": "device",
               "nonlinearity": "nonlinearity must be 'tanh' or 'relu'.*got 'garbage'",
               "proj_size": "proj_size is an option of LSTM only"},
}


def raises(source: Source, error, message: str):
    """pytest.raises with torch.nn's exception type and the source family's message."""
    return pytest.raises(error, match=MESSAGES[source.family][message])


# ================================================================================================
# test_nn.py: TestNN and TestNNDeviceType
# ================================================================================================
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_RNN_nonlinearity(source):
    assert source.make("RNN", 1, 10).nonlinearity == "tanh"
    assert source.make("RNN", 1, 10, nonlinearity="relu").nonlinearity == "relu"
    assert source.make("RNN", 2, 3, 1, "relu").nonlinearity == "relu"            # passed as an argument
    with raises(source, ValueError, "nonlinearity"):
        source.make("RNN", 1, 10, nonlinearity="garbage")


# ----- test_rnn_args_check, test_projections_lstm_args_check --------------------------------------
I, H, P, L, B, T, BAD = 3, 5, 2, 2, 4, 6, 7          # BAD: a prime that no size divides


def _with(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return tuple(shape)


def _args_check_cases(kind: str, proj: bool):
    """(input shape, hidden shapes) pairs torch refuses with a RuntimeError."""
    good_x, good_h, good_c = (T, B, I), (L, B, P if proj else H), (L, B, H)
    mistakes = [(_with(good_x, 1, BAD), None)]                                          # input batch
    mistakes += [(good_x, (1, BAD)), (good_x, (2, BAD)), (good_x, (0, BAD))]           # hidden batch, size, layers
    mistakes += [(_with(good_x, 2, BAD), None)]                                         # input size
    if proj:
        mistakes += [(good_x, (0, H))]                                                  # layers = hidden size
    for x_shape, change in mistakes:
        hs = [good_h, good_c] if kind == "LSTM" else [good_h]
        if change is None:
            yield x_shape, tuple(hs)
            continue
        for index in range(len(hs)):                      # the mistake in h, then in c (LSTM)
            changed = list(hs)
            changed[index] = _with(hs[index], *change)
            yield x_shape, tuple(changed)


@pytest.mark.parametrize("source,kind,options", variant_cases(SOURCES, [(k, {}) for k in KINDS]
                                                             + [("LSTM", {"proj_size": P})]))
def test_rnn_args_check(source, kind, options):
    """test_rnn_args_check and test_projections_lstm_args_check: every wrong size of the input or
    the hidden state is torch's RuntimeError."""
    proj = bool(options)
    model = source.make(kind, I, H, L, **options)
    checked = 0
    for x_shape, h_shapes in _args_check_cases(kind, proj):
        hidden = tuple(torch.randn(s) for s in h_shapes)
        with pytest.raises(RuntimeError) as error:
            model(torch.randn(x_shape), hidden if kind == "LSTM" else hidden[0])
        assert source.is_torch or isinstance(error.value, ValueError), "rnnkit keeps its ValueError"
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
@pytest.mark.parametrize("kind,options", [("LSTM", {}), ("LSTM", {"proj_size": 10}), ("GRU", {}), ("RNN", {})],
                         ids=["LSTM", "LSTM-proj", "GRU", "RNN"])
def test_cudnn_forward_exception(source, kind, options):
    """The wrong hidden size and the wrong input size, with torch's types (test_cudnn_forward_exception
    runs on the CPU too)."""
    rnn = source.make(kind, 10, 20, batch_first=True, **options)
    with raises(source, RuntimeError, "hidden"):
        rnn(torch.randn(2, 3, 10), paired(kind, torch.zeros(1, 2, 19)))
    with raises(source, RuntimeError, "input_size"):
        rnn(torch.randn(2, 3, 3))


@pytest.mark.parametrize("source,kind", cases(SOURCES))
def test_rnn_check_device(source, kind):
    """Input, hidden state and weights on different devices (the meta device standing in for a
    second GPU)."""
    model = source.make(kind, I, H, L)
    x, h = torch.randn(T, B, I), torch.randn(L, B, H)
    with raises(source, RuntimeError, "device"):
        model(x.to("meta"))
    with raises(source, RuntimeError, "device"):
        model(x, paired(kind, h.to("meta")))
    if kind == "LSTM":
        with raises(source, RuntimeError, "device"):
            model(x, (h, h.to("meta")))


@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_rnn_initial_hidden_state(source, kind):
    torch.manual_seed(0)
    rnn = source.make(kind, 7, 5, 2)
    x = torch.randn(4, 3, 7)
    out1, hidden1 = rnn(x, paired(kind, torch.zeros(2, 3, 5)))
    out2, hidden2 = rnn(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(hidden1, hidden2)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("source", [s for s in NUMERIC_SOURCES if s.runs("LSTM", 1)], ids=lambda s: s.name)
def test_projections_lstm_initial_hidden_state(source, bidirectional):
    torch.manual_seed(0)
    rnn = source.make("LSTM", 7, 5, 2, bidirectional=bidirectional, proj_size=3)
    D = 2 if bidirectional else 1
    x = torch.randn(4, 3, 7)
    out1, hidden1 = rnn(x, (torch.zeros(2 * D, 3, 3), torch.zeros(2 * D, 3, 5)))
    out2, hidden2 = rnn(x)
    torch.testing.assert_close(out1, out2)
    torch.testing.assert_close(hidden1, hidden2)


@pytest.mark.parametrize("source,kind", cases(SOURCES, ("RNN", "GRU")))
def test_projections_errors_on_gru_and_rnn(source, kind):
    with raises(source, ValueError, "proj_size") as error:
        source.make(kind, 30, 20, 2, proj_size=10)
    assert source.is_torch or isinstance(error.value, TypeError), "rnnkit keeps Python's TypeError"


# ----- dropout between layers: test_RNN_dropout, test_RNN_dropout_state, test_RNN_change_dropout ---
@pytest.mark.parametrize("source", [s for s in NUMERIC_SOURCES if s.runs("RNN")], ids=lambda s: s.name)
def test_RNN_dropout(source):
    """With all weights 1, layer 1 gives 10 per unit, layer 2 the sum of layer 1's kept units
    scaled by 1 / (1 − p): a multiple of 10 / (1 − p), 10000 without dropout, 0 for p = 1."""
    for p, train in itertools.product((0, 0.276, 0.731, 1), (True, False)):
        rnn = source.make("RNN", 10, 1000, 2, bias=False, dropout=p, nonlinearity="relu", dtype=torch.float64)
        rnn.train(train)
        with torch.no_grad():
            for w in rnn.parameters():
                w.fill_(1)
        output, hy = rnn(torch.ones(1, 1, 10, dtype=torch.float64), torch.zeros(2, 1, 1000, dtype=torch.float64))
        assert output.min() == output.max()
        value = output[0, 0, 0].item()
        if p == 0 or not train:
            assert value == 10000
        elif p == 1:
            assert value == 0
        else:
            assert 8000 < value < 12000
            kept = value * (1 - p) / 10
            assert abs(kept - round(kept)) < 1e-3, (p, value)
        assert hy[0].min() == hy[0].max() and hy[1].min() == hy[1].max()
        assert hy[0, 0, 0].item() == 10 and hy[1, 0, 0].item() == value


@pytest.mark.parametrize("source", [s for s in NUMERIC_SOURCES if s.runs("RNN")], ids=lambda s: s.name)
def test_RNN_dropout_state(source):
    for p, train in itertools.product((0, 0.1234), (True, False)):
        torch.manual_seed(0)
        rnn = source.make("RNN", 40, 40, 2, bias=False, dropout=p, nonlinearity="relu").train(train)
        x, hx = torch.rand(1, 1, 40), torch.rand(2, 1, 40)
        output1, hy1 = rnn(x, hx)
        output2, hy2 = rnn(x, hx)
        buffer = io.BytesIO()
        torch.save(rnn, buffer)
        buffer.seek(0)
        rnn2 = torch.load(buffer, weights_only=False)
        rnn2.flatten_parameters()
        output3, hy3 = rnn2(x, hx)
        same = p == 0 or not train
        for a, b in ((output1, output2), (output1, output3), (hy1, hy2), (hy1, hy3)):
            assert torch.equal(a, b) == same, (p, train)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("source", [s for s in NUMERIC_SOURCES if s.runs("RNN")], ids=lambda s: s.name)
def test_RNN_change_dropout(source, train):
    torch.manual_seed(0)
    rnn = source.make("RNN", 40, 40, 2, dropout=0, nonlinearity="relu", dtype=torch.float64).train(train)
    x = torch.rand(3, 2, 40, dtype=torch.float64)
    previous = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        rnn.dropout = p
        output1, hy1 = rnn(x)
        output2, hy2 = rnn(x)
        same = p == 0 or p == 1 or not train
        assert torch.equal(output1, output2) == same and torch.equal(hy1, hy2) == same, p
        if previous is not None:
            assert torch.equal(output1, previous) == (not train), p
            assert torch.equal(output2, previous) == (not train), p
        previous = output1


# ----- shapes at the edges ------------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("source,kind", cases(SOURCES))
def test_error_RNN_seq_len_zero(source, kind, bidirectional):
    rnn = source.make(kind, 5, 6, bidirectional=bidirectional)
    with raises(source, RuntimeError, "empty"):
        rnn(torch.ones(0, 10, 5))


@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_RNN_input_size_zero(source, kind):
    """An empty batch (5, 0, 3) gives an empty output, and backward works."""
    rnn = source.make(kind, input_size=3, hidden_size=4)
    outputs = rnn(torch.zeros(5, 0, 3))
    assert outputs[0].shape == (5, 0, 4)
    outputs[0].sum().backward()


@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_rnn_retain_variables(source, kind):
    """Backward through the same graph five times gives the same gradients."""
    torch.manual_seed(0)
    rnn = source.make(kind, 10, 20, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 6, 10, dtype=torch.float64, requires_grad=True)
    output = rnn(x)
    output[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    for _ in range(4):
        rnn.zero_grad()
        x.grad.zero_()
        output[0].sum().backward(retain_graph=True)
        for before, now in zip(grads, [x.grad] + [p.grad for p in rnn.parameters()]):
            torch.testing.assert_close(now, before, rtol=0, atol=0)


@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_variable_sequence(source, kind):
    """A packed batch gives what each sequence gives alone: outputs, final states and gradients."""
    torch.manual_seed(0)
    lengths = [6, 6, 4, 2, 2, 1, 1]
    x_leaf = torch.randn(max(lengths), len(lengths), 3, dtype=torch.float64, requires_grad=True)
    rnn = source.make(kind, 3, 4, bidirectional=True, num_layers=2, dtype=torch.float64)
    rnn2 = copy.deepcopy(rnn)
    outs, hiddens = [], []
    for i, length in enumerate(lengths):
        out, hidden = rnn2(x_leaf[:length, i:i + 1])
        outs.append(torch.cat([out, out.new_zeros(max(lengths) - length, 1, out.shape[2])]))
        hiddens.append(hidden if isinstance(hidden, tuple) else (hidden,))
    seq_out = torch.cat(outs, 1)
    seq_hidden = tuple(torch.cat(h, 1) for h in zip(*hiddens))
    packed_out, packed_hidden = rnn(pack_padded_sequence(x_leaf, lengths))
    unpacked, unpacked_lengths = pad_packed_sequence(packed_out)
    torch.testing.assert_close(packed_hidden if kind == "LSTM" else (packed_hidden,), seq_hidden)
    torch.testing.assert_close(unpacked, seq_out)
    assert unpacked_lengths.tolist() == lengths
    seq_out.sum().backward()
    grad_x = x_leaf.grad.clone()
    x_leaf.grad.zero_()
    unpacked.sum().backward()
    torch.testing.assert_close(x_leaf.grad, grad_x)
    for p1, p2 in zip(rnn.parameters(), rnn2.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad)


# ----- the same weights give torch.nn's results: test_rnn_fused, test_RNN_cpu_vs_cudnn ------------
# (bias, bidirectional, batch_first, contiguous, packed, lengths as a tensor): each flag both ways
FLAG_SETS = [(True, False, False, True, False, False), (False, True, True, False, True, True),
             (True, True, False, False, True, False), (False, False, True, True, False, False),
             (True, False, True, False, True, True), (False, True, False, True, True, False)]
VARIANTS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("GRU", {}), ("LSTM", {}), ("LSTM", {"proj_size": 3})]


def _non_contiguous(t: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.zeros_like(t), t], t.dim()).select(t.dim(), 1)


def _forward_backward(rnn, kind, weights, x_val, hx_val, cx_val, grad_output, grad_hy, grad_cy, packed_lengths,
                      batch_first):
    """Copy ``weights`` into rnn through all_weights, run, backward; everything a test compares."""
    with torch.no_grad():
        for mine, theirs in zip(rnn.all_weights, weights):
            for w, v in zip(mine, theirs):
                w.copy_(v)
    data = x_val.clone().requires_grad_(True)
    x = data if packed_lengths is None else pack_padded_sequence(data, packed_lengths, batch_first=batch_first)
    hx = hx_val.clone().requires_grad_(True)
    cx = cx_val.clone().requires_grad_(True)
    output, hy = rnn(x, (hx, cx) if kind == "LSTM" else hx)
    output = output.data if isinstance(output, PackedSequence) else output
    if kind == "LSTM":
        torch.autograd.backward([output, hy[0], hy[1]], [grad_output, grad_hy, grad_cy])
    else:
        torch.autograd.backward([output, hy], [grad_output, grad_hy])
    result = {"output": output, "hy": hy[0] if kind == "LSTM" else hy, "grad_input": data.grad, "grad_hx": hx.grad}
    if kind == "LSTM":
        result.update(cy=hy[1], grad_cx=cx.grad)
    result.update({f"grad {name}": p.grad for name, p in rnn.named_parameters()})
    return result


@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: "".join("TF"[not b] for b in f))
@pytest.mark.parametrize("source,kind,options", variant_cases(NUMERIC_SOURCES, VARIANTS))
def test_same_weights_as_torch(source, kind, options, flags):
    """test_RNN_cpu_vs_cudnn's comparison with the CPU as the reference: the source's module with
    torch.nn's weights (copied through ``all_weights``) gives torch.nn's outputs and gradients.
    flags: bias, bidirectional, batch_first, contiguous, packed, lengths as a tensor."""
    bias, bidirectional, batch_first, contiguous, packed, lengths_as_tensor = flags
    torch.manual_seed(0)
    D, out_size = 2 if bidirectional else 1, options.get("proj_size") or 6
    shape = (6, 7, 10) if batch_first else (7, 6, 10)
    lengths = [7, 5, 5, 2, 1, 1]
    x_val = torch.randn(*shape, dtype=torch.float64)
    grad_output = torch.randn(*shape[:2], out_size * D, dtype=torch.float64)
    hx_val, grad_hy = (torch.randn(2 * D, 6, out_size, dtype=torch.float64) for _ in range(2))
    cx_val, grad_cy = (torch.randn(2 * D, 6, 6, dtype=torch.float64) for _ in range(2))
    if not contiguous:
        x_val, grad_output, hx_val, grad_hy, cx_val, grad_cy = map(
            _non_contiguous, (x_val, grad_output, hx_val, grad_hy, cx_val, grad_cy))
    packed_lengths = None
    if packed:
        packed_lengths = torch.tensor(lengths) if lengths_as_tensor else lengths
        grad_output = pack_padded_sequence(grad_output, packed_lengths, batch_first=batch_first).data
    arguments = dict(num_layers=2, bias=bias, bidirectional=bidirectional, batch_first=batch_first,
                     dtype=torch.float64, **options)
    reference = getattr(nn, kind)(10, 6, **arguments)
    rnn = source.make(kind, 10, 6, **arguments)
    run = (x_val, hx_val, cx_val, grad_output, grad_hy, grad_cy, packed_lengths, batch_first)
    want = _forward_backward(reference, kind, reference.all_weights, *run)
    got = _forward_backward(rnn, kind, reference.all_weights, *run)
    assert list(got) == list(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=lambda m, key=key: f"{key}: {m}")


# ----- torch.nn's internals: _flat_weights and reparametrised weights ----------------------------
@pytest.mark.parametrize("source,kind,options", variant_cases(SOURCES, [
    ("LSTM", {}), ("LSTM", {"proj_size": 2}), ("LSTM", {"bias": False, "bidirectional": True}),
    ("GRU", {"bidirectional": True}), ("RNN", {"nonlinearity": "relu", "bias": False})]))
def test_flat_weights_follow_torch(source, kind, options):
    """_flat_weights_names, _all_weights, all_weights and _flat_weights name and hold what torch.nn's
    do; so do the attributes mode and proj_size."""
    rnn = source.make(kind, 3, 4, 2, **options)
    reference = getattr(nn, kind)(3, 4, 2, **options)
    assert (rnn.mode, rnn.proj_size) == (reference.mode, reference.proj_size)
    assert rnn._flat_weights_names == reference._flat_weights_names
    assert rnn._all_weights == reference._all_weights
    assert [w is getattr(rnn, n) for w, n in zip(rnn._flat_weights, rnn._flat_weights_names)] == \
        [True] * len(reference._flat_weights_names)
    assert [[w.shape for w in ws] for ws in rnn.all_weights] == [[w.shape for w in ws] for ws in reference.all_weights]
    rnn.flatten_parameters()


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_rnn_weight_norm(source):
    def check_weight_norm(layer, name, num_params):
        layer = torch.nn.utils.weight_norm(layer, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in layer._flat_weights) == num_params - 1
        layer = torch.nn.utils.remove_weight_norm(layer, name=name)
        assert sum(isinstance(p, nn.Parameter) for p in layer._flat_weights) == num_params
        assert layer._parameters.get(name) is not None
        assert name + "_v" not in layer._parameters and name + "_g" not in layer._parameters
        named = dict(layer.named_parameters())
        assert named.get(name) is not None and name + "_v" not in named and name + "_g" not in named

    check_weight_norm(source.make("LSTM", 8, 8), "weight_ih_l0", 4)
    check_weight_norm(source.make("LSTM", 8, 8, proj_size=4), "weight_hr_l0", 5)


@pytest.mark.parametrize("source,kind,options", variant_cases(NUMERIC_SOURCES, [("LSTM", {}), ("LSTM", {"proj_size": 3})]))
def test_RNN_cudnn_weight_norm(source, kind, options):
    """The CPU part: weight normalisation leaves the outputs as they were, and so does removing it."""
    name = "weight_hr_l0" if options else "weight_hh_l0"
    torch.manual_seed(0)
    m = source.make("LSTM", 5, 6, 2, **options)
    x = torch.randn(7, 4, 5)
    expected = m(x)
    m = torch.nn.utils.weight_norm(m, name=name)
    torch.testing.assert_close(m(x), expected)
    m = torch.nn.utils.remove_weight_norm(m, name=name)
    torch.testing.assert_close(m(x), expected)


class _Scaled(nn.Module):
    def forward(self, w):
        return 0.5 * w


REPARAMETRISATIONS = {
    "weight_norm": lambda m, name: torch.nn.utils.weight_norm(m, name=name),
    "spectral_norm": lambda m, name: torch.nn.utils.spectral_norm(m, name=name),
    "parametrize": lambda m, name: parametrize.register_parametrization(m, name, _Scaled()),
    "prune": lambda m, name: prune.l1_unstructured(m, name, amount=0.5),
}


@pytest.mark.parametrize("how", list(REPARAMETRISATIONS))
@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_reparametrised_weight_is_what_the_layer_computes_with(source, kind, how):
    """After a torch.nn.utils helper replaces weight_hh_l0 by a computed tensor, the layer computes
    with that tensor (torch.nn with the same value as a plain weight agrees), _flat_weights holds
    it, and the gradient reaches the helper's own parameters."""
    torch.manual_seed(0)
    rnn = source.make(kind, 3, 4, 2, dtype=torch.float64).eval()
    REPARAMETRISATIONS[how](rnn, "weight_hh_l0")
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    output = rnn(x)[0]
    effective = rnn.weight_hh_l0
    assert not isinstance(effective, nn.Parameter)
    assert torch.equal(rnn._flat_weights[rnn._flat_weights_names.index("weight_hh_l0")], effective)
    reference = getattr(nn, kind)(3, 4, 2, dtype=torch.float64).eval()
    ours = rnn.state_dict()
    reference.load_state_dict({name: effective.detach() if name == "weight_hh_l0" else ours[name]
                               for name in reference.state_dict()})
    torch.testing.assert_close(output, reference(x)[0])
    output.sum().backward()
    reparametrised = [p for n, p in rnn.named_parameters() if "weight_hh_l0" in n]
    assert reparametrised and all(p.grad is not None and p.grad.abs().sum() > 0 for p in reparametrised)


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_partial_flat_weights(source):
    """A layer with a weight deleted moves (here to float64) without error, its _flat_weights holds
    None there, and with the weight put back it computes as before."""
    torch.manual_seed(0)
    m = source.make("LSTM", 10, 6, 2)
    x = torch.randn(3, 2, 10)
    expected = m(x)[0]
    weight = m.weight_hh_l0
    del m.weight_hh_l0
    assert not hasattr(m, "weight_hh_l0")
    m.to(torch.float64)
    assert m._flat_weights[m._flat_weights_names.index("weight_hh_l0")] is None
    m.weight_hh_l0 = weight.detach().double()
    torch.testing.assert_close(m(x.double())[0], expected.double(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("source,kind,options", variant_cases(
    NUMERIC_SOURCES, [("LSTM", {}), ("LSTM", {"proj_size": 5}), ("GRU", {}), ("RNN", {})]))
def test_cudnn_weight_tying(source, kind, options):
    """A tied parameter (bias_ih_l0_reverse = bias_ih_l0) is one parameter, used in both places,
    through a training step: the same as torch.nn with the same weights and tying."""
    torch.manual_seed(0)
    rnns = [source.make(kind, 10, 20, batch_first=True, bidirectional=True, **options),
            getattr(nn, kind)(10, 20, batch_first=True, bidirectional=True, **options)]
    rnns[1].load_state_dict(rnns[0].state_dict())
    x = torch.randn(5, 4, 10)
    hx = torch.randn(2, 5, options.get("proj_size") or 20)
    hidden = (hx, torch.randn(2, 5, 20)) if kind == "LSTM" else hx
    outputs = []
    for rnn in rnns:
        rnn.bias_ih_l0_reverse = rnn.bias_ih_l0
        assert len(list(rnn.parameters())) == len(rnn._flat_weights_names) - 1
        optimiser = torch.optim.SGD(rnn.parameters(), lr=0.1)
        rnn(x, hidden)[0].sum().backward()
        optimiser.step()
        assert rnn.bias_ih_l0_reverse is rnn.bias_ih_l0
        outputs.append(rnn(x, hidden))
    torch.testing.assert_close(outputs[0], outputs[1])


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_save_lstm_compatibility(source):
    """An LSTM saved before proj_size existed (PyTorch 1.7) loads and computes."""
    model = source.make("LSTM", 2, 3)
    x = torch.randn(32, 5, 2)
    expected = model(x)
    state = model.__dict__
    del state["proj_size"]
    loaded = source.make("LSTM", 2, 3)
    loaded.__setstate__(state)
    torch.testing.assert_close(loaded(x), expected)


# ----- gradients: test_LSTM_grad_and_gradgrad, test_GRU_grad_and_gradgrad, oneDNN ---------------
def _flatten_out(mod, x):
    return tuple(t for part in mod(x) for t in (part if isinstance(part, tuple) else (part,)))


@pytest.mark.parametrize("check", [gradcheck, gradgradcheck], ids=["grad", "gradgrad"])
@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES, ("LSTM", "GRU")))
def test_LSTM_GRU_grad_and_gradgrad(source, kind, check):
    """Gradients and second derivatives with respect to the input (test_nn's _test_rnn_mod)."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 4, dtype=torch.float64, requires_grad=True)
    for bias in (True, False):
        mod = source.make(kind, 4, 4, bias=bias, dtype=torch.float64)
        assert check(lambda x: _flatten_out(mod, x), (x,), check_batched_grad=False)


@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES, ("LSTM",)))
def test_LSTM_differentiable_backward_using_oneDNN(source, kind):
    """A gradient taken with create_graph=True is differentiable again, with oneDNN on and off."""
    torch.manual_seed(0)
    net = source.make(kind, 3, 3, 4, batch_first=True)
    x = torch.rand(4, 5, 3)
    results = []
    for enabled in (False, True):
        with torch.backends.mkldnn.flags(enabled=enabled):
            xi = x.clone().requires_grad_(True)
            out, _ = net(xi)
            d_out, = torch.autograd.grad(out, xi, torch.ones_like(out), retain_graph=True, create_graph=True)
            d_out.sum().backward(retain_graph=True)
            results.append((d_out.detach(), xi.grad))
    torch.testing.assert_close(results[0], results[1])
    assert results[1][1].abs().sum() > 0


# ================================================================================================
# test_modules.py over common_modules' RNN / GRU / LSTM samples
# ================================================================================================
@dataclass
class Sample:
    """One of common_modules' no-batch-dimension samples: constructor options, input (T, 2) and an
    optional unbatched state."""
    kind: str
    options: dict
    T: int
    state_shapes: tuple = ()
    name: str = field(default="")

    def inputs(self, dtype, requires_grad: bool = False) -> tuple:
        make = lambda *shape: torch.randn(*shape, dtype=dtype, requires_grad=requires_grad)  # noqa: E731
        x = make(self.T, 2)
        if not self.state_shapes:
            return (x,)
        state = tuple(make(*s) for s in self.state_shapes)
        return (x, state if self.kind == "LSTM" else state[0])


def module_samples(kind: str) -> list[Sample]:
    """module_inputs_torch_nn_RNN_GRU (is_rnn for RNN) and module_inputs_torch_nn_LSTM: two layers,
    every combination of bias, batch_first, bidirectional (and nonlinearity / proj_size), called
    without and with a state."""
    own = {"RNN": [{"nonlinearity": n} for n in ("relu", "tanh")], "GRU": [{}],
           "LSTM": [{"proj_size": p} for p in (0, 2)]}[kind]
    samples = []
    for extra, (bias, batch_first, bidirectional) in itertools.product(own, itertools.product((False, True), repeat=3)):
        D = 2 if bidirectional else 1
        options = dict(input_size=2, num_layers=2, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
                       **extra)
        name = ",".join(f"{k}={v}" for k, v in options.items() if k not in ("input_size", "num_layers"))
        if kind == "LSTM":
            h_out = extra["proj_size"] or 3
            samples.append(Sample(kind, dict(options, hidden_size=3), 2, name=name))
            samples.append(Sample(kind, dict(options, hidden_size=3), 3, ((2 * D, h_out), (2 * D, 3)), name + ",hx"))
        else:
            samples.append(Sample(kind, dict(options, hidden_size=2), 3, name=name))
            samples.append(Sample(kind, dict(options, hidden_size=3), 3, ((2 * D, 3),), name + ",hx"))
    return samples


SAMPLES = {kind: module_samples(kind) for kind in KINDS}


def samples_for(source: Source, kind: str, every: int = 1, training: bool = True) -> list[Sample]:
    """The kind's samples the source computes; with ``every`` > 1, for the costly checks, every so
    many of them from a different start in training and in evaluation mode (samples alternate calls
    without and with a state, so both modes together see both)."""
    runnable = [s for s in SAMPLES[kind] if source.runs(kind, s.options.get("proj_size", 0))]
    return runnable[(0 if training or every == 1 else 1)::every]


def no_batch_reference(m: nn.Module, sample: Sample, args: tuple):
    """common_modules' no_batch_dim_reference_*: the same call with a batch of one, squeezed."""
    batch_dim = 0 if sample.options["batch_first"] else 1
    x, state = args[0].unsqueeze(batch_dim), None
    if len(args) > 1:
        state = tuple(s.unsqueeze(1) for s in args[1]) if sample.kind == "LSTM" else args[1].unsqueeze(1)
    output, hidden = m(x, state)
    hidden = tuple(h.squeeze(1) for h in hidden) if sample.kind == "LSTM" else hidden.squeeze(1)
    return output.squeeze(batch_dim), hidden


def build(source: Source, sample: Sample, dtype, training: bool) -> nn.Module:
    return source.make(sample.kind, **sample.options).to(dtype).train(training)


TRAINING = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


@TRAINING
@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_module_forward(source, kind, training):
    """test_forward: outputs equal the no-batch reference; .float() / .double() convert every
    parameter, and the module still runs."""
    for dtype, sample in itertools.product((torch.float32, torch.float64), samples_for(source, kind)):
        torch.manual_seed(0)
        m = build(source, sample, dtype, training)
        args = sample.inputs(dtype)
        torch.testing.assert_close(m(*args), no_batch_reference(m, sample, args), msg=lambda e: f"{sample.name}: {e}")
        (m.double() if dtype == torch.float64 else m.float())(*args)
        assert all(p.dtype == dtype and p.device.type == "cpu" for p in m.parameters()), sample.name


@pytest.mark.parametrize("source,kind", cases(SOURCES))
def test_module_factory_kwargs_and_device_ctx_init(source, kind):
    """test_factory_kwargs: device and dtype reach every parameter; test_device_ctx_init: built under
    torch.device('meta'), the parameters are meta tensors with the CPU ones' metadata."""
    for sample in samples_for(source, kind):
        m = source.make(kind, **sample.options, device="cpu", dtype=torch.float64)
        assert all(t.dtype == torch.float64 and t.device.type == "cpu"
                   for t in itertools.chain(m.parameters(), m.buffers())), sample.name
        on_cpu = source.make(kind, **sample.options)
        with torch.device("meta"):
            on_meta = source.make(kind, **sample.options)
        for p_meta, p_cpu in zip(on_meta.parameters(), on_cpu.parameters(), strict=True):
            assert p_meta.is_meta and (p_meta.shape, p_meta.dtype, p_meta.stride()) == \
                (p_cpu.shape, p_cpu.dtype, p_cpu.stride()), sample.name


@pytest.mark.parametrize("source,kind", cases(SOURCES))
def test_module_repr_and_pickle(source, kind):
    """test_repr and test_pickle: repr and str work; a saved and loaded module gives the same output."""
    for sample in samples_for(source, kind):
        torch.manual_seed(0)
        m = build(source, sample, torch.float32, training=True)
        assert repr(m) and str(m)
        args = sample.inputs(torch.float32)
        output = m(*args)
        buffer = io.BytesIO()
        torch.save(m, buffer)
        buffer.seek(0)
        torch.testing.assert_close(torch.load(buffer, weights_only=False)(*args), output, rtol=0, atol=0)


def _non_contiguous_copy(obj):
    """test_non_contiguous_tensors' trick: every second element of an interleaved copy."""
    if isinstance(obj, tuple):
        return tuple(_non_contiguous_copy(o) for o in obj)
    out = torch.repeat_interleave(obj, 2, dim=-1)[..., ::2].detach()
    return out.requires_grad_(obj.requires_grad)


def _leaves(obj) -> list[torch.Tensor]:
    return [t for o in obj for t in (_leaves(o) if isinstance(o, tuple) else [o])]


@TRAINING
@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_module_non_contiguous_tensors(source, kind, training):
    """Non-contiguous inputs and output gradients give the contiguous ones' outputs and gradients."""
    for sample in samples_for(source, kind, every=3, training=training):
        torch.manual_seed(0)
        m = build(source, sample, torch.float64, training)
        args = sample.inputs(torch.float64, requires_grad=True)
        default = _leaves(m(*args))
        grad_outputs = tuple(torch.randn_like(o) for o in default)
        runs = []
        for in_args, g_out in itertools.product((args, _non_contiguous_copy(args)),
                                                (grad_outputs, _non_contiguous_copy(grad_outputs))):
            m.zero_grad()
            outputs = _leaves(m(*in_args))
            grads = torch.autograd.grad(outputs, _leaves(in_args) + list(m.parameters()), g_out)
            runs.append((outputs, grads))
        for outputs, grads in runs[1:]:
            torch.testing.assert_close(outputs, runs[0][0], msg=lambda e: f"{sample.name}: {e}")
            torch.testing.assert_close(grads, runs[0][1], atol=1e-4, rtol=0, msg=lambda e: f"{sample.name}: {e}")


def _gradient_check(check, source: Source, kind: str, training: bool, *, every: int, partial_for: int):
    """test_modules' _test_gradients_helper: the total derivative with respect to the inputs and all
    parameters, then (for the first ``partial_for`` samples) each parameter's alone."""
    for index, sample in enumerate(samples_for(source, kind, every, training)):
        torch.manual_seed(index)
        m = build(source, sample, torch.float64, training)
        args = sample.inputs(torch.float64, requires_grad=True)
        leaves, params = _leaves(args), tuple(m.parameters())

        def run(*tensors):
            rebuilt = list(tensors[:len(leaves)])
            call = (rebuilt[0],) if len(args) == 1 else \
                (rebuilt[0], tuple(rebuilt[1:]) if kind == "LSTM" else rebuilt[1])
            return tuple(_leaves(m(*call)))

        assert check(run, leaves + list(params), check_batched_grad=False, fast_mode=True), sample.name
        if index < partial_for:
            for p in params:
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
                assert check(run, leaves + list(params), check_batched_grad=False, fast_mode=True), \
                    f"{sample.name}: partial derivative"
                p.requires_grad_(False)


@TRAINING
@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_module_grad(source, kind, training):
    _gradient_check(gradcheck, source, kind, training, every=3, partial_for=1)


@TRAINING
@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_module_gradgrad(source, kind, training):
    _gradient_check(gradgradcheck, source, kind, training, every=8, partial_for=0)


@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_module_memory_format(source, kind):
    """test_memory_format for 2-D inputs: contiguous_format and preserve_format change nothing,
    outputs and input gradients are contiguous."""
    for sample in samples_for(source, kind):
        torch.manual_seed(0)
        m = build(source, sample, torch.float32, training=True)
        args = sample.inputs(torch.float32, requires_grad=True)
        desired = _leaves(m(*args))
        for memory_format in (torch.preserve_format, torch.contiguous_format):
            m.to(memory_format=memory_format)
            outputs = _leaves(m(*args))
            torch.testing.assert_close(outputs, desired, msg=lambda e: f"{sample.name}: {e}")
            grads = torch.autograd.grad(outputs, _leaves(args), [torch.ones_like(o) for o in outputs])
            assert all(t.is_contiguous() for t in outputs + list(grads)), sample.name


@pytest.mark.parametrize("source,kind", cases(SOURCES))
def test_module_if_train_and_eval_modes_differ(source, kind):
    """ModuleInfo says train_and_eval_differ=True: the forward reads ``training``."""
    sample = SAMPLES[kind][0]
    m = build(source, sample, torch.float32, training=True)
    delattr(m, "training")
    with pytest.raises(AttributeError, match="'training'"):
        m(*sample.inputs(torch.float32))


# ----- test_errors over module_error_inputs_torch_nn_RNN_GRU (+ the arguments it leaves out) --------
@dataclass(frozen=True)
class ErrorCase:
    args: tuple
    kwargs: dict
    error: type
    torch_message: str                    # torch.nn's regex; rnnkit's message must name the argument
    forward_dtype: torch.dtype | None = None


ERROR_CASES = [
    ErrorCase((10, 0, 1), {}, ValueError, "hidden_size must be greater than zero"),
    ErrorCase((10, 10, 0), {}, ValueError, "num_layers must be greater than zero"),
    ErrorCase((3, 5), {"dtype": torch.float32}, ValueError,
              r"RNN input dtype .* does not match weight dtype .* Convert input: input\.to\(.*\), or convert model: "
              r"model\.to\(.*\)", forward_dtype=torch.float64),
    ErrorCase((3, 5), {"dtype": torch.float64}, ValueError,
              r"RNN input dtype .* does not match weight dtype .* Convert input: input\.to\(.*\)", forward_dtype=torch.float32),
    *[ErrorCase((3, 5), {flag: value}, TypeError, f"{flag} should be of type bool, got: {type(value).__name__}")
      for flag in ("bias", "batch_first") for value in (0, 1, "True")],
    ErrorCase((3.0, 5), {}, TypeError, "input_size should be of type int, got: float"),
    ErrorCase(("10", 5), {}, TypeError, "input_size should be of type int, got: str"),
    ErrorCase((0, 5), {}, ValueError, "input_size must be greater than zero"),
    ErrorCase((-1, 5), {}, ValueError, "input_size must be greater than zero"),
    ErrorCase((3, 5.0), {}, TypeError, "hidden_size should be of type int, got: float"),
    # RNNBase's other checks
    ErrorCase((3, 5, 1.5), {}, TypeError, "num_layers|'float' object cannot be interpreted as an integer"),
    ErrorCase((3, 5, 2), {"dropout": 1.5}, ValueError, "dropout should be a number in range"),
    ErrorCase((3, 5, 2), {"dropout": -0.1}, ValueError, "dropout should be a number in range"),
    ErrorCase((3, 5, 2), {"dropout": True}, ValueError, "dropout should be a number in range"),
]
PROJ_ERROR_CASES = [
    ErrorCase((3, 5), {"proj_size": -1}, ValueError, "proj_size should be a positive integer or zero"),
    ErrorCase((3, 5), {"proj_size": 5}, ValueError, "proj_size has to be smaller than hidden_size"),
    ErrorCase((3, 5), {"proj_size": 7}, ValueError, "proj_size has to be smaller than hidden_size"),
    ErrorCase((3, 5), {"proj_size": 1.5}, TypeError, "proj_size|empty"),
]


def _argument_named(case: ErrorCase) -> str:
    """The argument torch's message is about: the first word of its regex (RNN: the input's dtype)."""
    word = re.match(r"\w+", case.torch_message).group()
    return "dtype" if word == "RNN" else word


@pytest.mark.parametrize("source,kind", cases(SOURCES))
def test_module_errors(source, kind):
    checked = 0
    for case in ERROR_CASES + (PROJ_ERROR_CASES if kind == "LSTM" else []):
        message = case.torch_message if source.is_torch else rf"\b{_argument_named(case)}\b"
        if case.forward_dtype is None:
            with pytest.raises(case.error, match=message):
                source.make(kind, *case.args, **case.kwargs)
        else:
            m = source.make(kind, *case.args, **case.kwargs)
            with pytest.raises(case.error, match=message):
                m(torch.randn(2, 4, 3, dtype=case.forward_dtype))
        checked += 1
    assert checked >= len(ERROR_CASES)


@pytest.mark.parametrize("source,kind", cases(NUMERIC_SOURCES))
def test_dropout_one_is_accepted(source, kind):
    """dropout=1 (torch.nn accepts it): in training every output of layer 1 is dropped."""
    torch.manual_seed(0)
    rnn = source.make(kind, 3, 4, 2, dropout=1, bias=False).train()
    assert rnn.dropout == 1.0
    output, hidden = rnn(torch.randn(5, 2, 3))
    torch.testing.assert_close(output, torch.zeros_like(output))     # no bias: zero input, zero state
    rnn.eval()
    assert rnn(torch.randn(5, 2, 3))[0].abs().sum() > 0
