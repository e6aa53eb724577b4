"""The hand-derived BPTT of every cell equals autograd through the step loop (float64)."""
import random

import pytest
import torch

import rnnkit
from rnnkit.cells import LSTM_VARIANTS

CONFIGS = (
    [("elman", dict(nonlinearity=n)) for n in ("tanh", "relu", "sigmoid")]
    + [("residual", {}), ("jordan", dict(output_size=3, output_nonlinearity="sigmoid")),
       ("indrnn", {}), ("indrnn", dict(recurrent_max=0.5)),
       ("mingru", {}), ("minlstm", {})]
    + [("lstm", dict(variant=v)) for v in LSTM_VARIANTS]
    + [("lstm", dict(variant="vanilla", proj_size=2)), ("lstm", dict(variant="fgr", proj_size=3)),
       ("lstm", dict(variant="cifg", bias=False)),
       ("gru", {}), ("gru", dict(variant="original")), ("gru", dict(variant="original", bias=False))]
)
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CONFIGS]


def _gradients(layer, x, state, lengths, weights):
    output, final = layer(x, state, lengths)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (output * weights[0]).sum() + sum((f * w).sum() for f, w in zip(finals, weights[1:]))
    inputs = [x, *state, *layer.parameters()]
    return output, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)
def test_hand_bptt_matches_autograd_with_lengths_stacking_and_directions(name, options):
    rng = random.Random(hash((name, tuple(options.items()))) % 1000)
    torch.manual_seed(rng.randrange(10_000))
    T, B, I, H = rng.randint(3, 7), rng.randint(1, 4), rng.randint(1, 4), 4
    L, bidirectional = rng.choice([1, 2]), rng.random() < 0.6
    layers = {}
    for bptt in ("autograd", "hand"):
        torch.manual_seed(0)
        layers[bptt] = rnnkit.Recurrent(name, I, H, L, bidirectional, backend="reference", bptt=bptt,
                                        dtype=torch.float64, **options)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([T] + [rng.randint(1, T) for _ in range(B - 1)])
    ref = layers["autograd"]
    state = tuple(torch.randn(L * ref.num_directions, B, s, dtype=torch.float64, requires_grad=True)
                  for s in ref.state_sizes)
    weights = [torch.randn(T, B, ref.output_size, dtype=torch.float64)] + \
              [torch.randn(L * ref.num_directions, B, s, dtype=torch.float64) for s in ref.state_sizes]
    out_a, grads_a = _gradients(layers["autograd"], x, state, lengths, weights)
    out_h, grads_h = _gradients(layers["hand"], x, state, lengths, weights)
    torch.testing.assert_close(out_h, out_a, atol=1e-12, rtol=0)
    assert len(grads_a) == len(grads_h)
    for g_h, g_a in zip(grads_h, grads_a):
        torch.testing.assert_close(g_h, g_a, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name,options", [("lstm", dict(variant="vanilla")), ("gru", dict(variant="original")),
                                          ("jordan", {}), ("indrnn", {})])
def test_hand_bptt_passes_gradcheck(name, options):
    torch.manual_seed(1)
    layer = rnnkit.Recurrent(name, 2, 3, bidirectional=True, backend="reference", bptt="hand",
                             dtype=torch.float64, **options)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    params = dict(layer.named_parameters())

    def f(x, *values):
        out, _ = torch.func.functional_call(layer, dict(zip(params, values)), (x,), {"lengths": [4, 2]})
        return out

    assert torch.autograd.gradcheck(f, (x, *params.values()))


def test_an_unknown_bptt_is_refused():
    with pytest.raises(ValueError, match="bptt"):
        rnnkit.Recurrent("lstm", 3, 4, bptt="manual")
