"""Mixed precision in the engine: under CPU autocast (bfloat16) every path returns the autocast dtype,
computes the recurrence in float32, and stays within bfloat16's rounding of the float32 result.

bfloat16 keeps 8 bits of mantissa (a relative step of 2⁻⁸ ≈ 0.004): each stacked layer rounds its
input and its input projection to it, about 1 % per layer, and the outputs of these two-layer
networks move by a few thousandths of their scale over 40 steps, the worst of some 700 elements (a
minGRU's) by 5 %; the tolerance below is 6·10⁻² of the scale.
(A layer-normalised recurrence is the exception: LN(U h) rescales h_{t−1} to unit variance whatever
its size, so a small relative change early on is not damped; the LN-LSTM moved by up to 0.25 at
I = 6, H = 8 under autocast, on every path alike, the reference loop included.)
"""
import pytest
import torch

import rnnkit
from rnnkit.engine import explain

pytestmark = pytest.mark.usefixtures("generated_path_without_inductor")

TOLERANCE = dict(atol=6e-2, rtol=6e-2)
CASES = [  # (cell, options, the path the dispatcher takes, as asserted); lengths send torch's cells to "fused"
    ("lstm", dict(lengths=None), "native"),
    ("elman", dict(lengths=None), "native"),
    ("lstm", dict(variant="vanilla"), "fused"),
    ("gru", {}, "fused"),
    ("mingru", {}, "fused"),
    ("minlstm", dict(backend="parallel_scan"), "parallel_scan"),
    ("jordan", {}, "reference"),
    ("indrnn", {}, "reference"),
    ("lstm", dict(variant="vanilla", zoneout=0.3), "fused"),                 # evaluation: deterministic
    ("jordan", dict(zoneout=0.3), "generated"),
]


def _run(layer, x, lengths, state):
    out, final = layer(x, state, lengths)
    final = final if isinstance(final, tuple) else (final,)
    loss = out.float().pow(2).sum() + sum(f.float().sum() for f in final)
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return out, final, grads


@pytest.mark.parametrize("name,options,path", CASES, ids=[f"{n}-{p}" for n, _, p in CASES])
def test_bf16_autocast_returns_bf16_close_to_float32(name, options, path):
    torch.manual_seed(0)
    options = dict(options)
    lengths = options.pop("lengths", torch.tensor([40, 17, 3]))
    layer = rnnkit.Recurrent(name, 6, 8, num_layers=2, bidirectional=True, **options).eval()
    T, B = 40, 3
    x = torch.randn(T, B, 6, requires_grad=True)
    sizes = layer.state_sizes
    state = tuple(0.5 * torch.randn(4, B, s) for s in sizes)
    expected_out, expected_final, expected_grads = _run(layer, x, lengths, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert [c.path for c in explain(layer, x, lengths=lengths).layers] == [path, path]
        out, final, grads = _run(layer, x, lengths, state)
    assert out.dtype == torch.bfloat16 and all(f.dtype == torch.bfloat16 for f in final)
    assert all(g.dtype == torch.float32 for g in grads)                   # weights stay float32
    for got, want in zip((out, *final, *grads), (expected_out, *expected_final, *expected_grads)):
        scale = want.abs().max().clamp(min=1.0)
        torch.testing.assert_close(got.float() / scale, want / scale, **TOLERANCE)
    if lengths is not None:
        assert (out[17:, 1] == 0).all()                                    # padding stays zero


def test_explain_reports_autocast_and_the_float32_recurrence():
    layer = rnnkit.Recurrent("lstm", 6, 8, variant="vanilla")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        text = str(explain(layer, torch.randn(5, 2, 6)))
    assert text.startswith("cpu, torch.bfloat16 autocast (recurrence in torch.float32)")
