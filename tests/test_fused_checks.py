"""The compiled loops check every argument before touching memory (rnnkit/csrc/checks.h): a call with a
tensor of another shape, dtype, device or layout raises a RuntimeError naming it, never reads or writes
out of bounds. Both directly (rnnkit._fused) and through a layer whose parameter was replaced."""
import pytest
import torch

import rnnkit

kernels = pytest.importorskip("rnnkit._fused", reason="rnnkit's C++ extension is not built in this installation")

T, B, H = 5, 2, 8
EMPTY = torch.empty(0)


def lstm_call(u=None, h0=None, c0=None, weight=None, peephole_i=None, running=None):
    u = torch.randn(T, B, 4 * H) if u is None else u
    return kernels.lstm_family_forward(
        u, torch.zeros(B, H) if h0 is None else h0, torch.zeros(B, H) if c0 is None else c0,
        torch.randn(H, 4 * H) if weight is None else weight, EMPTY,
        torch.randn(H) if peephole_i is None else peephole_i, torch.randn(H), torch.randn(H), EMPTY, EMPTY,
        EMPTY, EMPTY, EMPTY, EMPTY, 0.0, [0, 1, 2, 3], False, False, False, [B] * T if running is None else running)


def gru_call(u=None, h0=None, weight=None, bias=EMPTY, running=None):
    return kernels.gru_forward(torch.randn(T, B, 3 * H) if u is None else u, torch.zeros(B, H) if h0 is None else h0,
                               torch.randn(H, 3 * H) if weight is None else weight, bias, EMPTY, EMPTY, 0.0, False,
                               [B] * T if running is None else running)


def scan_call(u=None, h0=None, lengths=EMPTY):
    return kernels.minimal_scan_forward(torch.randn(T, B, 2 * H) if u is None else u,
                                        torch.zeros(B, H) if h0 is None else h0, lengths, False)


BAD_CALLS = {
    "lstm short peephole": (lambda: lstm_call(peephole_i=torch.randn(3)), "p_i must have shape"),
    "lstm weight shape": (lambda: lstm_call(weight=torch.randn(3, 4)), "weight_hh_t must have shape"),
    "lstm state batch": (lambda: lstm_call(h0=torch.zeros(B + 3, H)), "h0 must have shape"),
    "lstm state dtype": (lambda: lstm_call(c0=torch.zeros(B, H, dtype=torch.float64)), "c0 must have dtype"),
    "lstm state layout": (lambda: lstm_call(h0=torch.zeros(H, B).t()), "h0 must be contiguous"),
    "lstm counts too large": (lambda: lstm_call(running=[B + 7] * T), r"running\[0\] must be in"),
    "lstm counts increasing": (lambda: lstm_call(running=[1] + [B] * (T - 1)), "must not increase"),
    "lstm counts too few": (lambda: lstm_call(running=[B]), "one count per step"),
    "lstm 2-D input": (lambda: lstm_call(u=torch.randn(T, 4 * H)), "u must be a 3-D tensor"),
    "lstm integer input": (lambda: lstm_call(u=torch.zeros(T, B, 4 * H, dtype=torch.long)), "float32 or float64"),
    "lstm gate blocks": (lambda: lstm_call(u=torch.randn(T, B, 4 * H + 1)), "multiple of the hidden size"),
    "gru weight shape": (lambda: gru_call(weight=torch.randn(3, 4)), "weight_hh_t must have shape"),
    "gru bias shape": (lambda: gru_call(bias=torch.randn(3)), "bias_hh must have shape"),
    "gru input width": (lambda: gru_call(u=torch.randn(T, B, 5)), "u must have shape"),
    "gru state batch": (lambda: gru_call(h0=torch.zeros(B + 1, H)), "h0 must have shape"),
    "scan input width": (lambda: scan_call(u=torch.randn(T, B, 5)), "u must have shape"),
    "scan lengths count": (lambda: scan_call(lengths=torch.tensor([1])), "lengths must have shape"),
    "scan lengths dtype": (lambda: scan_call(lengths=torch.tensor([1, 2], dtype=torch.int32)), "int64"),
}


def test_well_formed_calls_run():
    assert lstm_call()[0].shape == (T, B, H)
    assert gru_call()[0].shape == (T, B, H)
    assert scan_call().shape == (T, B, H)


@pytest.mark.parametrize("case", BAD_CALLS, ids=list(BAD_CALLS))
def test_a_malformed_call_raises_naming_the_argument(case):
    call, message = BAD_CALLS[case]
    with pytest.raises(RuntimeError, match=message):
        call()


@pytest.mark.parametrize("cell, options, parameter, shape", [
    ("lstm", {"variant": "vanilla"}, "peephole_i", (3,)),      # used to read past the end and return
    ("lstm", {"variant": "vanilla"}, "weight_hh", (32, 3)),
    ("gru", {}, "weight_hh", (3, 4)),
    ("gru", {}, "bias_hh", (3,)),
    ("mingru", {}, "weight_ih", (3, 4)),
])
def test_a_parameter_replaced_by_one_of_another_shape_is_an_error_not_a_crash(cell, options, parameter, shape):
    layer = rnnkit.Recurrent(cell, 4, H, backend="fused", **options)
    getattr(layer.cells[0], parameter).data = torch.randn(*shape)
    with pytest.raises(RuntimeError):
        layer(torch.randn(T, B, 4))


def test_the_drop_in_gru_with_a_replaced_input_weight_raises():
    """The case found by a user: torch.nn.GRU runs its own code normally; rnnkit's used to crash."""
    layer = rnnkit.GRU(4, 256)
    layer.weight_ih_l0.data = torch.randn(3, 4)
    with pytest.raises(RuntimeError):
        layer(torch.randn(5, 2, 4))
