"""Truncated BPTT (rnnkit.learning.tbptt) against full BPTT and naive re-computations in float64."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.learning import TBPTT, GradientClipper

I, H, O = 3, 5, 2
DTYPE = torch.float64


def sum_squared_error(output, target):
    return ((output - target) ** 2).sum()


def make_model(cell: str, num_layers: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    layer = Recurrent(cell, I, H, num_layers=num_layers, dtype=DTYPE)
    head = nn.Linear(H, O, dtype=DTYPE)
    return layer, head


def make_stream(T: int, B: int = 2, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=generator, dtype=DTYPE)
    y = torch.randn(T, B, O, generator=generator, dtype=DTYPE)
    return x, y


def parameters(layer, head):
    return [*layer.parameters(), *head.parameters()]


def tbptt_gradient(layer, head, k1, k2, x, y, starts=None):
    """The gradient TBPTT accumulates over the stream, as a list of tensors."""
    params = parameters(layer, head)
    for p in params:
        p.grad = None
    TBPTT(layer, k1, k2, head=head).accumulate_gradients(x, y, sum_squared_error, starts=starts)
    return [p.grad.clone() for p in params]


def assert_close_lists(actual, expected, tol=1e-10):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=tol, atol=tol)


def zero_streams(state, mask):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(zero_streams(s, mask) for s in state)
    return state * (~mask).to(state.dtype).view(1, -1, 1)


def detached(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def naive_truncated_gradient(layer, head, k1, k2, x, y, starts=None):
    """Independent TBPTT(k1, k2), one step per call: for each chunk [b, e), the state at
    w = max(0, b − (k2 − k1)) is recomputed from the start of the stream without a gradient,
    then steps w … e − 1 are run with autograd and the chunk's loss is differentiated."""
    T, B = x.shape[:2]
    params = parameters(layer, head)
    total = [torch.zeros_like(p) for p in params]

    def run(state, begin, end):
        outputs = []
        for s in range(begin, end):
            if starts is not None:
                state = zero_streams(state, starts[s])
            output, state = layer(x[s:s + 1], state)
            outputs.append(output)
        return outputs, state

    for b in range(0, T, k1):
        e = min(b + k1, T)
        w = max(0, b - (k2 - k1))
        with torch.no_grad():
            _, state = run(None, 0, w)
        outputs, _ = run(state, w, e)
        loss = sum_squared_error(head(torch.cat(outputs[b - w:])), y[b:e])
        for t, g in zip(total, torch.autograd.grad(loss, params)):
            t += g
    return total


# ----- (a) no truncation: full BPTT -------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("T, k1, k2", [(12, 12, 12),     # one chunk
                                       (12, 4, 12),      # k2 = T: every window reaches step 0
                                       (13, 4, 16)])     # a short last chunk, still covered
def test_gradient_equals_full_bptt_when_k2_covers_the_stream(cell, T, k1, k2):
    layer, head = make_model(cell, num_layers=2)
    x, y = make_stream(T)
    output, _ = layer(x)
    # full BPTT of the same objective: the sum of every step's loss
    expected = torch.autograd.grad(sum_squared_error(head(output), y), parameters(layer, head))
    assert_close_lists(tbptt_gradient(layer, head, k1, k2, x, y), expected)


def test_truncation_changes_the_gradient():
    layer, head = make_model("lstm")
    x, y = make_stream(12)
    full = tbptt_gradient(layer, head, 12, 12, x, y)
    truncated = tbptt_gradient(layer, head, 4, 4, x, y)
    assert (full[1] - truncated[1]).abs().max() > 1e-3      # weight_hh: the recurrent path was cut


# ----- (b) k1 = k2: independent chunks from detached states --------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_equal_k1_k2_gradient_is_sum_of_chunk_gradients_from_detached_states(cell):
    layer, head = make_model(cell)
    x, y = make_stream(14)
    k = 4
    params = parameters(layer, head)
    expected = [torch.zeros_like(p) for p in params]
    state = None
    for b in range(0, 14, k):
        output, state = layer(x[b:b + k], state)
        loss = sum_squared_error(head(output), y[b:b + k])
        for e, g in zip(expected, torch.autograd.grad(loss, params)):
            e += g
        state = detached(state)
    assert_close_lists(tbptt_gradient(layer, head, k, k, x, y), expected)


# ----- (c) truncation leaves the forward values alone -----------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("k1, k2", [(4, 4), (3, 7), (5, 5)])
def test_chunked_outputs_and_state_equal_full_sequence_forward(cell, k1, k2):
    layer, head = make_model(cell, num_layers=2)
    x, y = make_stream(17)
    with torch.no_grad():
        output, state = layer(x)
        expected = head(output)
    tbptt = TBPTT(layer, k1, k2, head=head)
    result = tbptt.accumulate_gradients(x, y, sum_squared_error, keep_outputs=True)
    torch.testing.assert_close(result.outputs, expected, rtol=1e-12, atol=1e-12)
    assert_close_lists(list(tbptt.state), list(state), tol=1e-12)
    assert len(result.losses) == -(-17 // k1)


# ----- (d) no graph spans chunks; saved memory depends on k2, not on T ---------------------------
class _SavedTensorCounter:
    """Counts the bytes autograd saves for backward, and how many saved tensors are still alive."""

    def __init__(self):
        self.bytes, self.alive = 0, 0

    def pack(self, tensor):
        self.bytes += tensor.numel() * tensor.element_size()
        return _Holder(self, tensor)

    @staticmethod
    def unpack(holder):
        return holder.tensor


class _Holder:
    def __init__(self, counter, tensor):
        self.counter, self.tensor = counter, tensor
        counter.alive += 1

    def __del__(self):
        self.counter.alive -= 1


def saved_bytes_per_chunk(T: int, k1: int, k2: int) -> list[int]:
    layer, head = make_model("lstm")
    x, y = make_stream(T, B=4)
    tbptt = TBPTT(layer, k1, k2, head=head)
    counter, per_chunk = _SavedTensorCounter(), []
    for b in range(0, T, k1):
        counter.bytes = 0
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
            tbptt.step(x[b:b + k1], y[b:b + k1], sum_squared_error)
        per_chunk.append(counter.bytes)
        assert counter.alive == 0, "a chunk's graph outlived its backward pass"
        for s in tbptt.state:
            assert s.grad_fn is None and not s.requires_grad, "the carried state is attached to a graph"
    return per_chunk


@pytest.mark.parametrize("k1, k2", [(10, 10), (10, 30)])
def test_memory_per_chunk_depends_on_k2_not_on_stream_length(k1, k2):
    short, long = saved_bytes_per_chunk(200, k1, k2), saved_bytes_per_chunk(2000, k1, k2)
    steady = k2 // k1                      # from then on every window has its full k2 steps
    assert len(set(short[steady:] + long[steady:])) == 1
    assert max(long) == max(short)


def test_saved_memory_grows_with_k2():
    assert max(saved_bytes_per_chunk(100, 10, 30)) > 2 * max(saved_bytes_per_chunk(100, 10, 10))


# ----- (e) document boundaries --------------------------------------------------------------------
def test_reset_mask_zeroes_exactly_the_flagged_streams():
    layer, _ = make_model("lstm")
    x, y = make_stream(8, B=3)
    seen = []

    def model(x_chunk, state):
        seen.append(state)
        return layer(x_chunk, state)

    tbptt = TBPTT(model, 4)
    loss = lambda output, target: output.sum()  # noqa: E731
    tbptt.step(x[:4], y[:4], loss)
    carried = tbptt.state
    tbptt.reset(torch.tensor([True, False, True]))
    tbptt.step(x[4:], y[4:], loss)
    for received, before in zip(seen[1], carried):                  # each (1, B, H)
        assert torch.equal(received[:, [0, 2]], torch.zeros_like(received[:, [0, 2]]))
        assert torch.equal(received[:, 1], before[:, 1])
        assert before[:, [0, 2]].abs().min() > 0                    # there was something to zero


@pytest.mark.parametrize("k1, k2", [(4, 4), (3, 8)])
def test_stream_starting_a_document_runs_as_if_fresh(k1, k2):
    layer, head = make_model("gru")
    x, y = make_stream(12, B=3)
    starts = torch.zeros(12, 3, dtype=torch.bool)
    starts[5, 1] = True                                             # inside a chunk
    starts[6, 2] = True                                             # at a chunk boundary for k1 = 3
    result = TBPTT(layer, k1, k2, head=head).accumulate_gradients(x, y, sum_squared_error,
                                                                  starts=starts, keep_outputs=True)
    with torch.no_grad():
        whole = head(layer(x)[0])
        fresh_1 = head(layer(x[5:, 1:2])[0])
        fresh_2 = head(layer(x[6:, 2:3])[0])
    torch.testing.assert_close(result.outputs[:, 0], whole[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.outputs[:5, 1], whole[:5, 1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.outputs[5:, 1:2], fresh_1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(result.outputs[6:, 2:3], fresh_2, rtol=1e-12, atol=1e-12)


def test_gradient_does_not_cross_a_document_boundary():
    layer, head = make_model("lstm")
    x, y = make_stream(12, B=2)
    starts = torch.zeros(12, 2, dtype=torch.bool)
    starts[6, :] = True
    # with every stream restarting at step 6, the two halves are independent sequences
    halves = [tbptt_gradient(layer, head, 12, 12, x[a:b], y[a:b]) for a, b in ((0, 6), (6, 12))]
    expected = [g1 + g2 for g1, g2 in zip(*halves)]
    assert_close_lists(tbptt_gradient(layer, head, 12, 12, x, y, starts), expected)


# ----- (f) k2 > k1 against a naive implementation ---------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("T, k1, k2", [(12, 3, 5), (13, 4, 6), (14, 2, 9), (11, 4, 4)])
def test_gradient_matches_naive_truncation(cell, T, k1, k2):
    layer, head = make_model(cell)
    x, y = make_stream(T)
    expected = naive_truncated_gradient(layer, head, k1, k2, x, y)
    assert_close_lists(tbptt_gradient(layer, head, k1, k2, x, y), expected)


def test_gradient_with_document_boundaries_matches_naive_truncation():
    layer, head = make_model("lstm")
    x, y = make_stream(13, B=3)
    starts = torch.zeros(13, 3, dtype=torch.bool)
    starts[2, 0] = starts[5, 1] = starts[8, 2] = starts[9, 0] = True
    expected = naive_truncated_gradient(layer, head, 3, 7, x, y, starts)
    assert_close_lists(tbptt_gradient(layer, head, 3, 7, x, y, starts), expected)


def test_streaming_over_calls_equals_one_call():
    layer, head = make_model("lstm")
    x, y = make_stream(15)
    expected = tbptt_gradient(layer, head, 3, 7, x, y)
    for p in parameters(layer, head):
        p.grad = None
    tbptt = TBPTT(layer, 3, 7, head=head)
    for a, b in ((0, 6), (6, 9), (9, 15)):                          # the object keeps the state and past
        tbptt.accumulate_gradients(x[a:b], y[a:b], sum_squared_error)
    assert_close_lists([p.grad for p in parameters(layer, head)], expected)


# ----- training ---------------------------------------------------------------------------------------
def test_train_steps_the_optimiser_once_per_chunk_on_that_chunk_gradient():
    layer, head = make_model("gru")
    x, y = make_stream(8)
    params, lr = parameters(layer, head), 0.1
    # the reference: plain SGD by hand on two chunks of 4, the state carried detached
    start = [p.detach().clone() for p in params]
    output, state = layer(x[:4])
    g1 = torch.autograd.grad(sum_squared_error(head(output), y[:4]), params)
    with torch.no_grad():
        for p, g in zip(params, g1):
            p -= lr * g
    output, _ = layer(x[4:], detached(state))
    g2 = torch.autograd.grad(sum_squared_error(head(output), y[4:]), params)
    expected = [p.detach() - lr * g for p, g in zip(params, g2)]
    with torch.no_grad():
        for p, s in zip(params, start):
            p.copy_(s)

    clipper = GradientClipper()                                     # records norms, clips nothing
    result = TBPTT(layer, 4, head=head).train(x, y, sum_squared_error,
                                              torch.optim.SGD(params, lr=lr), clip=clipper)
    assert_close_lists([p.detach() for p in params], expected)
    assert len(result.losses) == len(clipper.history) == 2


# ----- arguments ------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    layer, _ = make_model("lstm")
    x, y = make_stream(6)
    with pytest.raises(ValueError, match="k1 must be a positive int"):
        TBPTT(layer, 0)
    with pytest.raises(ValueError, match="k2 must be >= k1"):
        TBPTT(layer, 4, 2)
    with pytest.raises(ValueError, match="batch_first"):
        TBPTT(Recurrent("gru", I, H, batch_first=True), 4)
    tbptt = TBPTT(layer, 4)
    with pytest.raises(ValueError, match="at most k1=4 steps, got 6"):
        tbptt.step(x, y, sum_squared_error)
    with pytest.raises(ValueError, match=r"starts must be a bool tensor of shape \(T, B\)"):
        tbptt.accumulate_gradients(x, y, sum_squared_error, starts=torch.zeros(6, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="targets must be a tensor with T=6 steps"):
        tbptt.accumulate_gradients(x, y[:5], sum_squared_error)
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        tbptt.reset(torch.zeros(2))
