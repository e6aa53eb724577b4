"""The compiled loops (rnnkit/csrc, rnnkit.engine.fused) against the reference implementation."""
import warnings

import pytest
import torch

import rnnkit
from rnnkit.engine import fused

COVERED = [("lstm", v) for v in ("vanilla", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr",
                                   "standard")] \
    + [("gru", "standard"), ("gru", "original")]
IDS = [f"{name}-{variant}" for name, variant in COVERED]
TOLERANCE = {torch.float64: dict(atol=1e-10, rtol=1e-9), torch.float32: dict(atol=1e-4, rtol=1e-4)}


def test_the_compiled_loops_were_built_by_the_install():
    assert fused.available(), ("rnnkit._fused did not load: the install did not build rnnkit/csrc "
                               "(see the pip log), so every LSTM variant runs the slower Python loop")


def _pair(variant, dtype, num_layers=2, bidirectional=False, seed=0, name="lstm", **options):
    torch.manual_seed(seed)
    fast = rnnkit.Recurrent(name, 3, 9, num_layers=num_layers, bidirectional=bidirectional,
                            variant=variant, dtype=dtype, **options)
    with torch.no_grad():                                     # away from the initial values
        for p in fast.parameters():
            p.normal_(0, 0.5)
    reference = rnnkit.Recurrent(name, 3, 9, num_layers=num_layers, bidirectional=bidirectional,
                                 variant=variant, dtype=dtype, backend="reference", bptt="autograd",
                                 **options)
    reference.load_state_dict(fast.state_dict())
    return fast, reference


def _run(layer, x, state, lengths, weights):
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in state)
    out, final = layer(x, state if len(state) > 1 else state[0], lengths)
    final = final if isinstance(final, tuple) else (final,)
    loss = (out * weights[0]).sum() + sum((f * w).sum() for f, w in zip(final, weights[1:]))
    return (out, *final), torch.autograd.grad(loss, [x, *state, *layer.parameters()])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("name,variant", COVERED, ids=IDS)
def test_compiled_loop_equals_the_reference(name, variant, with_lengths, bidirectional, dtype):
    fast, reference = _pair(variant, dtype, bidirectional=bidirectional, seed=len(variant), name=name)
    g = torch.Generator().manual_seed(7)
    T, B = 11, 6
    x = torch.randn(T, B, 3, dtype=dtype, generator=g)
    D = 2 * (2 if bidirectional else 1)
    sizes = fast.cells[0].state_sizes()                       # (9, 9), and 27 for fgr's [i, f, o]
    state = tuple(torch.randn(D, B, size, dtype=dtype, generator=g) for size in sizes)
    lengths = torch.tensor([11, 4, 1, 11, 7, 2]) if with_lengths else None
    out_shape = (T, B, 9 * (2 if bidirectional else 1))
    weights = [torch.randn(out_shape, dtype=dtype, generator=g),
               *(torch.randn(D, B, size, dtype=dtype, generator=g) for size in sizes)]
    ours, our_grads = _run(fast, x, state, lengths, weights)
    theirs, their_grads = _run(reference, x, state, lengths, weights)
    for a, b in zip(ours + our_grads, theirs + their_grads):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])


@pytest.mark.parametrize("name,variant", [("lstm", "vanilla"), ("lstm", "cifg"), ("lstm", "noaf"), ("lstm", "fgr"),
                                          ("gru", "standard"), ("gru", "original")])
def test_compiled_loop_passes_gradcheck(name, variant):
    fast, _ = _pair(variant, torch.float64, num_layers=1, name=name)
    names = [n for n, _ in fast.named_parameters()]
    lengths = torch.tensor([5, 2, 4])
    n_state = len(fast.state_names)

    def outputs(x, *rest):
        state, params = rest[:n_state], rest[n_state:]
        out, final = torch.func.functional_call(fast, dict(zip(names, params)),
                                                (x, state if n_state > 1 else state[0]), {"lengths": lengths})
        return (out, *final) if isinstance(final, tuple) else (out, final)

    g = torch.Generator().manual_seed(3)
    inputs = [torch.randn(5, 3, 3, dtype=torch.float64, generator=g),
              *(torch.randn(1, 3, size, dtype=torch.float64, generator=g) for size in fast.cells[0].state_sizes()),
              *(p.detach().clone() for p in fast.parameters())]
    assert torch.autograd.gradcheck(outputs, [t.requires_grad_() for t in inputs])


def test_without_the_extension_auto_warns_once_and_gives_the_same_result(monkeypatch):
    fast, reference = _pair("vanilla", torch.float64, num_layers=1)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    expected, _ = fast(x)
    monkeypatch.setattr(fused, "_kernels", None)
    monkeypatch.setattr(fused, "_warned", False)
    with pytest.warns(RuntimeWarning, match="compiled loops are not built"):
        out, _ = fast(x)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast(x)                                               # once is enough


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_compiled_minimal_scan_equals_the_python_scan_and_the_step(name, dtype, monkeypatch):
    g = torch.Generator().manual_seed(11)
    T, B, H = 9, 5, 11                                        # H not a multiple of the vector width
    torch.manual_seed(0)
    layers = {path: rnnkit.Recurrent(name, 3, H, num_layers=2, bidirectional=True, backend=path, dtype=dtype)
              for path in ("fused", "scan", "reference")}
    layers["scan"].load_state_dict(layers["fused"].state_dict())
    layers["reference"].load_state_dict(layers["fused"].state_dict())
    x = torch.randn(T, B, 3, dtype=dtype, generator=g)
    h0 = 2 * torch.randn(4, B, H, dtype=dtype, generator=g)   # negative initial values included
    lengths = torch.tensor([9, 1, 5, 9, 3])
    w = torch.randn(T, B, 2 * H, dtype=dtype, generator=g)

    def run(layer):
        xx, hh = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out, final = layer(xx, hh, lengths)
        loss = (out * w).sum() + (final ** 2).sum()
        return (out, final, *torch.autograd.grad(loss, [xx, hh, *layer.parameters()]))

    calls = []
    real = fused.minimal_scan
    monkeypatch.setattr(fused, "minimal_scan", lambda *a: calls.append(1) or real(*a))
    compiled = run(layers["fused"])
    assert len(calls) == 4, "the compiled scan did not run for every layer and direction"
    python_scan, step = run(layers["scan"]), run(layers["reference"])
    for a, b, c in zip(compiled, python_scan, step):
        torch.testing.assert_close(a, b, **TOLERANCE[dtype])
        torch.testing.assert_close(a, c, **TOLERANCE[dtype])


@pytest.mark.parametrize("name,variant", [("lstm", "vanilla"), ("lstm", "fgr"), ("gru", "standard"),
                                          ("gru", "original")])
def test_streaming_one_step_per_call_equals_the_whole_sequence(name, variant):
    """Short calls take the per-step products on the weight's transposed view, long ones on a copy."""
    fast, _ = _pair(variant, torch.float64, name=name)
    x = torch.randn(12, 2, 3, dtype=torch.float64)
    whole, _ = fast(x)
    state, steps = None, []
    for x_t in x.split(1):
        y_t, state = fast(x_t, state)
        steps.append(y_t)
    torch.testing.assert_close(torch.cat(steps), whole, atol=1e-12, rtol=0)
    with torch.no_grad():                                     # the forward alone, without autograd
        state, steps = None, []
        for x_t in x.split(1):
            y_t, state = fast(x_t, state)
            steps.append(y_t)
    torch.testing.assert_close(torch.cat(steps), whole.detach(), atol=1e-12, rtol=0)


SATURATING = COVERED + [("mingru", None), ("minlstm", None)]


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 60.0), (torch.float64, 400.0)], ids=["float32", "float64"])
@pytest.mark.parametrize("name,variant", SATURATING, ids=[f"{n}-{v}" if v else n for n, v in SATURATING])
def test_saturated_gates_stay_finite_and_equal_the_reference(name, variant, dtype, scale):
    """Pre-activations far past the range of exp (about ±88 in float32, ±709 in float64): every gate is
    0 or 1 to the last bit, and the compiled loops must say so, not NaN (their sigmoid once took the
    exp of −x uncapped, and Vectorized's exp past its range is NaN, not inf)."""
    options = {"variant": variant} if variant else {}
    torch.manual_seed(3)
    fast = rnnkit.Recurrent(name, 3, 9, dtype=dtype, **options)
    with torch.no_grad():
        for p in fast.parameters():
            p.normal_(0, 1.0)
    reference_options = {"variant": variant, "backend": "reference"} if variant else {"backend": "reference"}
    reference = rnnkit.Recurrent(name, 3, 9, dtype=dtype, bptt="autograd", **reference_options)
    reference.load_state_dict(fast.state_dict())
    g = torch.Generator().manual_seed(5)
    x = scale * torch.randn(7, 4, 3, dtype=dtype, generator=g)              # pre-activations ~ ±scale·2
    sizes = fast.cells[0].state_sizes()
    state = tuple(torch.randn(1, 4, size, dtype=dtype, generator=g) for size in sizes)
    weights = [torch.randn(7, 4, 9, dtype=dtype, generator=g),
               *(torch.randn(1, 4, size, dtype=dtype, generator=g) for size in sizes)]
    ours, our_grads = _run(fast, x, state, None, weights)
    theirs, their_grads = _run(reference, x, state, None, weights)
    for a, b in zip(ours + our_grads, theirs + their_grads):
        assert torch.isfinite(a).all(), "the compiled loop gave a non-finite value on saturated gates"
        scale_of_b = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a / scale_of_b, b / scale_of_b, **TOLERANCE[dtype])
