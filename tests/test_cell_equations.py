"""Every cell against its paper's equations, written out again here with plain torch ops.

Each reference step below is an independent transcription of the published equations (Elman 1990,
Jordan 1986, residual RNN, Hochreiter & Schmidhuber 1997 / Gers et al. 2000 / Greff et al. 2017 and
its variants, Sak et al. 2014 (projection), Ba et al. 2016 (layer norm), Cho et al. 2014 and
cuDNN/torch's GRU, Li et al. 2018 (IndRNN), Feng et al. 2024 (minGRU, minLSTM), Jaeger 2001 /
Lukoševičius 2012 (leaky ESN)), computed from the cell's own parameter tensors with random values,
in float64 with atol 1e-12. The only thing the tests take from the implementation is the layout of
the parameters (which rows of ``weight_ih`` belong to which gate), as documented in the cells.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit import cells

DTYPE = torch.float64
EXACT = dict(atol=1e-12, rtol=0.0)
I, H, B, T = 3, 4, 5, 6


# ----- plain-torch building blocks (no rnnkit code) ----------------------------------------------
def sigma(a):
    return 1.0 / (1.0 + torch.exp(-a))


ACT = {
    "tanh": lambda a: (torch.exp(a) - torch.exp(-a)) / (torch.exp(a) + torch.exp(-a)),
    "relu": lambda a: torch.where(a > 0, a, torch.zeros_like(a)),
    "sigmoid": sigma,
    "identity": lambda a: a,
}
tanh = ACT["tanh"]


def lin(x, W, b=None):
    """x Wᵀ (+ b)."""
    out = x @ W.T
    return out if b is None else out + b


def LN(a, gain, shift, eps=1e-5):
    """Layer normalisation over the last dimension (Ba et al. 2016, biased variance)."""
    mu = a.mean(-1, keepdim=True)
    var = ((a - mu) ** 2).mean(-1, keepdim=True)
    return (a - mu) / torch.sqrt(var + eps) * gain + shift


def opt(P, name):
    """A bias that may be absent (bias=False): 0 then."""
    return P[name] if name in P else 0.0


def g_feng(a):
    """g(a) = a + 1/2 for a >= 0, σ(a) otherwise (Feng et al. 2024)."""
    return torch.where(a >= 0, a + 0.5, sigma(a))


# ----- reference steps: (P, x_t (B, I), state tuple) -> (y_t, new state tuple) ---------------------
def elman_ref(P, x, state, nonlinearity="tanh", **_):
    (h,) = state
    a = lin(x, P["weight_ih"]) + opt(P, "bias_ih") + lin(h, P["weight_hh"]) + opt(P, "bias_hh")
    h = ACT[nonlinearity](a)
    return h, (h,)


def jordan_ref(P, x, state, nonlinearity="tanh", output_nonlinearity="tanh", **_):
    (y_prev,) = state                                                # the fed-back OUTPUT y_{t-1}
    h = ACT[nonlinearity](lin(x, P["weight_ih"]) + opt(P, "bias_ih") + lin(y_prev, P["weight_hh"]))
    y = ACT[output_nonlinearity](lin(h, P["weight_ho"]) + opt(P, "bias_ho"))
    return y, (y,)


def residual_ref(P, x, state, nonlinearity="tanh", **_):
    (h,) = state
    update = ACT[nonlinearity](lin(x, P["weight_ih"]) + opt(P, "bias_ih")
                               + lin(h, P["weight_hh"]) + opt(P, "bias_hh"))
    h = h + update
    return h, (h,)


# Rows of weight_ih / weight_hh per gate (torch's i, f, g, o order, dropped gates left out).
LSTM_LAYOUT = {"nig": "fgo", "nfg": "igo", "nog": "ifg", "cifg": "igo"}
# Peephole connections of Greff et al.: p_i, p_f look at c_{t-1}, p_o at c_t.
LSTM_PEEPHOLES = {"standard": "", "np": "", "vanilla": "ifo", "nig": "fo", "nfg": "io", "nog": "if",
                  "niaf": "ifo", "noaf": "ifo", "cifg": "io", "fgr": "ifo"}


def lstm_ref(P, x, state, variant="standard", proj_size=0, layer_norm=False, return_gates=False, **_):
    h, c = state[0], state[1]
    Hc = c.shape[-1]
    wx, uh = lin(x, P["weight_ih"]), lin(h, P["weight_hh"])
    if layer_norm:                                 # LN(W x) + LN(U h) + b   (Ba et al. 2016)
        wx = LN(wx, P["ln_ih_weight"], P["ln_ih_bias"])
        uh = LN(uh, P["ln_hh_weight"], P["ln_hh_bias"])
    a = wx + opt(P, "bias_ih") + uh + opt(P, "bias_hh")
    layout = LSTM_LAYOUT.get(variant, "ifgo")
    pre = {gate: a[:, k * Hc:(k + 1) * Hc] for k, gate in enumerate(layout)}
    if variant == "fgr":                           # + R [i; f; o]_{t-1}
        rec = lin(state[2], P["weight_gg"])
        for k, gate in enumerate("ifo"):
            pre[gate] = pre[gate] + rec[:, k * Hc:(k + 1) * Hc]
    peep = LSTM_PEEPHOLES[variant]
    one = torch.ones_like(c)

    def peephole(gate, cell_state):
        return P[f"peephole_{gate}"] * cell_state if gate in peep else 0.0

    i = sigma(pre["i"] + peephole("i", c)) if "i" in pre else one
    if variant == "cifg":
        f = 1.0 - i
    elif "f" in pre:
        f = sigma(pre["f"] + peephole("f", c))
    else:
        f = one
    z = pre["g"] if variant == "niaf" else tanh(pre["g"])
    c_new = f * c + i * z
    o = sigma(pre["o"] + peephole("o", c_new)) if "o" in pre else one
    squashed_in = LN(c_new, P["ln_c_weight"], P["ln_c_bias"]) if layer_norm else c_new
    m = o * (squashed_in if variant == "noaf" else tanh(squashed_in))
    h_new = lin(m, P["weight_hr"]) if proj_size else m
    new_state = (h_new, c_new) + ((torch.cat([i, f, o], -1),) if variant == "fgr" else ())
    if return_gates:
        return h_new, new_state, {"i": i, "f": f, "o": o}
    return h_new, new_state


def gru_ref(P, x, state, variant="standard", layer_norm=False, **_):
    (h,) = state
    Hh = h.shape[-1]
    W_r, W_z, W_n = P["weight_ih"][:Hh], P["weight_ih"][Hh:2 * Hh], P["weight_ih"][2 * Hh:]
    U_r, U_z, U_n = P["weight_hh"][:Hh], P["weight_hh"][Hh:2 * Hh], P["weight_hh"][2 * Hh:]
    if "bias_ih" in P:
        b_ir, b_iz, b_in = P["bias_ih"][:Hh], P["bias_ih"][Hh:2 * Hh], P["bias_ih"][2 * Hh:]
        b_hr, b_hz, b_hn = P["bias_hh"][:Hh], P["bias_hh"][Hh:2 * Hh], P["bias_hh"][2 * Hh:]
    else:
        b_ir = b_iz = b_in = b_hr = b_hz = b_hn = 0.0
    if layer_norm:                                  # LN over all 3H input / recurrent terms
        wx = LN(lin(x, P["weight_ih"]), P["ln_ih_weight"], P["ln_ih_bias"])
        uh = LN(lin(h, P["weight_hh"]), P["ln_hh_weight"], P["ln_hh_bias"])
        wx_r, wx_z, wx_n = wx[:, :Hh], wx[:, Hh:2 * Hh], wx[:, 2 * Hh:]
        uh_r, uh_z, uh_n = uh[:, :Hh], uh[:, Hh:2 * Hh], uh[:, 2 * Hh:]
    else:
        wx_r, wx_z, wx_n = lin(x, W_r), lin(x, W_z), lin(x, W_n)
        uh_r, uh_z, uh_n = lin(h, U_r), lin(h, U_z), lin(h, U_n)
    r = sigma(wx_r + b_ir + uh_r + b_hr)
    z = sigma(wx_z + b_iz + uh_z + b_hz)
    if variant == "standard":                       # torch / cuDNN: reset after the product
        n = tanh(wx_n + b_in + r * (uh_n + b_hn))
    else:                                           # Cho et al. 2014: reset before the product
        n = tanh(wx_n + b_in + lin(r * h, U_n) + b_hn)
    h = (1 - z) * n + z * h
    return h, (h,)


def indrnn_ref(P, x, state, nonlinearity="relu", recurrent_max=None, **_):
    (h,) = state
    u = P["weight_hh"]
    if recurrent_max is not None:
        u = torch.minimum(torch.maximum(u, torch.full_like(u, -recurrent_max)),
                          torch.full_like(u, recurrent_max))
    h = ACT[nonlinearity](lin(x, P["weight_ih"]) + opt(P, "bias_ih") + u * h)
    return h, (h,)


def mingru_ref(P, x, state, **_):
    (h,) = state
    Hh = h.shape[-1]
    z = sigma(lin(x, P["weight_ih"][:Hh]) + (P["bias_ih"][:Hh] if "bias_ih" in P else 0.0))
    h_tilde = g_feng(lin(x, P["weight_ih"][Hh:]) + (P["bias_ih"][Hh:] if "bias_ih" in P else 0.0))
    h = (1 - z) * h + z * h_tilde
    return h, (h,)


def minlstm_ref(P, x, state, **_):
    (h,) = state
    Hh = h.shape[-1]
    a = lin(x, P["weight_ih"]) + opt(P, "bias_ih")
    f, i, h_tilde = sigma(a[:, :Hh]), sigma(a[:, Hh:2 * Hh]), g_feng(a[:, 2 * Hh:])
    f_norm, i_norm = f / (f + i), i / (f + i)
    h = f_norm * h + i_norm * h_tilde
    return h, (h,)


def esn_ref(P, x, state, leak_rate=1.0, nonlinearity="tanh", **_):
    (h,) = state
    h_tilde = ACT[nonlinearity](lin(x, P["weight_ih"]) + P["bias_ih"] + lin(h, P["weight_hh"]))
    h = (1 - leak_rate) * h + leak_rate * h_tilde
    return h, (h,)


REFS = {"elman": elman_ref, "jordan": jordan_ref, "residual": residual_ref, "lstm": lstm_ref,
        "gru": gru_ref, "indrnn": indrnn_ref, "mingru": mingru_ref, "minlstm": minlstm_ref,
        "esn": esn_ref}

CONFIGS = (
    [("elman", dict(nonlinearity=n)) for n in ("tanh", "relu", "sigmoid")]
    + [("elman", dict(nonlinearity="relu", init="identity")), ("elman", dict(bias=False))]
    + [("jordan", dict()), ("jordan", dict(output_size=2, output_nonlinearity="identity")),
       ("jordan", dict(output_size=6, nonlinearity="relu", output_nonlinearity="sigmoid"))]
    + [("residual", dict()), ("residual", dict(nonlinearity="relu"))]
    + [("lstm", dict(variant=v)) for v in cells.LSTM_VARIANTS]
    + [("lstm", dict(variant=v, proj_size=2)) for v in ("standard", "vanilla", "fgr")]
    + [("lstm", dict(variant=v, layer_norm=True)) for v in ("standard", "vanilla", "cifg")]
    + [("lstm", dict(variant="vanilla", bias=False)), ("lstm", dict(variant="cifg", forget_bias=1.0))]
    + [("gru", dict(variant="standard")), ("gru", dict(variant="original")),
       ("gru", dict(variant="standard", layer_norm=True)), ("gru", dict(variant="original", bias=False))]
    + [("indrnn", dict()), ("indrnn", dict(recurrent_max=0.5)), ("indrnn", dict(nonlinearity="tanh"))]
    + [("mingru", dict()), ("minlstm", dict())]      # their scans: tests/test_conformance.py
    + [("esn", dict(seed=0)),
       ("esn", dict(seed=1, leak_rate=0.3, bias_scaling=0.5, spectral_radius=0.8, sparsity=0.5))]
)
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in CONFIGS]
each_config = pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)


def randomize(cell, generator):
    """Random values for every trained tensor (fixed reservoirs are kept)."""
    with torch.no_grad():
        for pname, tensor in cell.params().items():
            if pname in cell.fixed_parameters:
                continue
            noise = torch.randn(tensor.shape, dtype=tensor.dtype, generator=generator)
            if pname.startswith("ln_") and pname.endswith("_weight"):
                tensor.copy_(1.0 + 0.3 * noise)
            elif cell.registry_name == "indrnn" and pname == "weight_hh":
                tensor.copy_(3.0 * torch.rand(tensor.shape, dtype=tensor.dtype, generator=generator) - 1.5)
            else:
                tensor.copy_(0.6 * noise)


def random_state(cell, batch, generator):
    return tuple(0.8 * torch.randn(batch, s, dtype=DTYPE, generator=generator) for s in cell.state_sizes())


@each_config
def test_one_step_matches_the_papers_equations(name, options):
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()) % 1000)
    cell = cells.create(name, I, H, dtype=DTYPE, **options)
    randomize(cell, gen)
    P = cell.params()
    x = torch.randn(B, I, dtype=DTYPE, generator=gen)
    state = random_state(cell, B, gen)
    with torch.no_grad():
        y, new_state = cell.step(P, cell.project_input(P, x.unsqueeze(0))[0], state)
        y_ref, state_ref = REFS[name](P, x, state, **options)
    assert len(new_state) == len(state_ref) == len(cell.state_names)
    torch.testing.assert_close(y, y_ref, **EXACT)
    for got, want in zip(new_state, state_ref):
        torch.testing.assert_close(got, want, **EXACT)
    # the step really moved (a reference that returned its input would not catch much)
    assert not torch.allclose(new_state[0], state[0])


@each_config
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_steps_through_recurrent_match_the_papers_equations(name, options, grad):
    """T steps of ``Recurrent(..., backend="reference")`` from a given state; with grad enabled the
    reference loop runs the cells' ``step_saving`` (hand BPTT) instead of ``step``."""
    gen = torch.Generator().manual_seed(1 + zlib.crc32(name.encode()) % 1000)
    layer = rnnkit.Recurrent(name, I, H, backend="reference", bptt="hand", dtype=DTYPE, **options)
    cell = layer.cells[0]
    randomize(cell, gen)
    P = {k: v.detach() for k, v in cell.params().items()}
    x = torch.randn(T, B, I, dtype=DTYPE, generator=gen)
    state0 = random_state(cell, B, gen)
    given = tuple(s.unsqueeze(0) for s in state0)
    with torch.set_grad_enabled(grad):
        out, final = layer(x, given[0] if len(given) == 1 else given)
    final = final if isinstance(final, tuple) else (final,)

    state, ys = state0, []
    for t in range(T):
        y, state = REFS[name](P, x[t], state, **options)
        ys.append(y)
    torch.testing.assert_close(out.detach(), torch.stack(ys), **EXACT)
    assert len(final) == len(state)
    for got, want in zip(final, state):
        torch.testing.assert_close(got.detach(), want.unsqueeze(0), **EXACT)


# ----- the references themselves agree with torch's own cells ------------------------------------
def test_lstm_and_gru_references_agree_with_torch_cells():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.randn(B, I, dtype=DTYPE, generator=gen)
    h, c = torch.randn(B, H, dtype=DTYPE, generator=gen), torch.randn(B, H, dtype=DTYPE, generator=gen)
    lstm = torch.nn.LSTMCell(I, H, dtype=DTYPE)
    P = dict(lstm.named_parameters())
    with torch.no_grad():
        want_h, want_c = lstm(x, (h, c))
        got_h, (_, got_c) = lstm_ref(P, x, (h, c), variant="standard")
    torch.testing.assert_close(got_h, want_h, **EXACT)
    torch.testing.assert_close(got_c, want_c, **EXACT)
    gru = torch.nn.GRUCell(I, H, dtype=DTYPE)
    P = dict(gru.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(gru_ref(P, x, (h,), variant="standard")[0], gru(x, h), **EXACT)
        # Cho et al.'s original form is a different function of the same parameters
        assert not torch.allclose(gru_ref(P, x, (h,), variant="original")[0], gru(x, h), atol=1e-6)


# ----- Elman ------------------------------------------------------------------------------------
def test_elman_identity_init_is_irnn():
    torch.manual_seed(0)
    cell = cells.create("elman", I, H, nonlinearity="relu", init="identity", dtype=DTYPE)
    assert torch.equal(cell.weight_hh, torch.eye(H, dtype=DTYPE))
    assert torch.equal(cell.bias_ih, torch.zeros(H, dtype=DTYPE))
    assert torch.equal(cell.bias_hh, torch.zeros(H, dtype=DTYPE))
    bound = 1 / H ** 0.5
    assert cell.weight_ih.abs().max() <= bound and cell.weight_ih.abs().max() > 0
    # relu with U = I and no bias: a positive state with zero input is carried unchanged
    h = torch.rand(B, H, dtype=DTYPE) + 0.1
    P = cell.params()
    y, _ = cell.step(P, cell.project_input(P, torch.zeros(1, B, I, dtype=DTYPE))[0], (h,))
    torch.testing.assert_close(y, h, **EXACT)
    default = cells.create("elman", I, H, dtype=DTYPE)
    assert not torch.equal(default.weight_hh, torch.eye(H, dtype=DTYPE))


# ----- Jordan -----------------------------------------------------------------------------------
def test_jordan_feeds_back_the_output_not_the_hidden_state():
    cell = cells.create("jordan", I, H, output_size=2, dtype=DTYPE)
    assert cell.state_names == ("y",) and cell.state_sizes() == (2,) and cell.output_size == 2
    shapes = cell.parameter_shapes()
    assert shapes["weight_hh"] == (H, 2) and shapes["weight_ho"] == (2, H) and shapes["bias_ho"] == (2,)


# ----- LSTM -------------------------------------------------------------------------------------
def _count(cell, prefix=""):
    return sum(t.numel() for n, t in cell.params().items() if n.startswith(prefix))


@pytest.mark.parametrize("variant", list(cells.LSTM_VARIANTS))
def test_lstm_variant_parameter_counts(variant):
    vanilla = cells.create("lstm", I, H, variant="vanilla")
    cell = cells.create("lstm", I, H, variant=variant)
    gates = 3 if variant in ("nig", "nfg", "nog", "cifg") else 4
    peepholes = {"standard": 0, "np": 0, "vanilla": 3, "niaf": 3, "noaf": 3, "fgr": 3}.get(variant, 2)
    assert cell.weight_ih.shape == (gates * H, I) and cell.weight_hh.shape == (gates * H, H)
    assert _count(cell, "weight_ih") * 4 == _count(vanilla, "weight_ih") * gates
    assert _count(cell, "weight_hh") * 4 == _count(vanilla, "weight_hh") * gates
    assert _count(cell, "bias") * 4 == _count(vanilla, "bias") * gates
    assert _count(cell, "peephole") == peepholes * H
    expected = gates * H * (I + H) + 2 * gates * H + peepholes * H + (9 * H * H if variant == "fgr" else 0)
    assert _count(cell) == sum(p.numel() for p in cell.parameters()) == expected
    if variant in ("np", "standard"):
        assert not any(n.startswith("peephole") for n in cell.params())
        assert _count(cell) == _count(vanilla) - 3 * H
    if variant == "fgr":
        assert cell.weight_gg.shape == (3 * H, 3 * H)


def test_lstm_variants_are_different_functions():
    """Same gate weights where they exist: each variant changes the step's result."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, I, dtype=DTYPE, generator=gen)
    state = (torch.randn(B, H, dtype=DTYPE, generator=gen), torch.randn(B, H, dtype=DTYPE, generator=gen))
    results = {}
    for variant in ("vanilla", "niaf", "noaf", "np"):
        cell = cells.create("lstm", I, H, variant=variant, dtype=DTYPE)
        torch.manual_seed(0)
        randomize(cell, torch.Generator().manual_seed(5))
        P = cell.params()
        with torch.no_grad():
            results[variant] = cell.step(P, cell.project_input(P, x[None])[0], state)[0]
    assert len({tuple(r.flatten().tolist()) for r in results.values()}) == len(results)


@pytest.mark.parametrize("variant", [v for v in cells.LSTM_VARIANTS if v != "nfg"])
def test_lstm_forget_bias_initialisation(variant):
    """With zero weights, zero input and zero state the forget gate is σ(forget_bias) for every
    variant that has one (CIFG's f = 1 − i = σ(−a_i) included)."""
    b = 1.5
    torch.manual_seed(0)
    cell = cells.create("lstm", I, H, variant=variant, forget_bias=b, dtype=DTYPE)
    P = cell.params()
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh"):
            P[n].zero_()
    state = tuple(torch.zeros(B, s, dtype=DTYPE) for s in cell.state_sizes())
    _, _, gates = cell.step_with_gates(P, cell.project_input(P, torch.zeros(1, B, I, dtype=DTYPE))[0], state)
    torch.testing.assert_close(gates["f"], torch.full((B, H), 1 / (1 + np.exp(-b)), dtype=DTYPE), **EXACT)
    layout = LSTM_LAYOUT.get(variant, "ifgo")
    k = layout.index("i" if variant == "cifg" else "f")
    assert torch.equal(P["bias_ih"][k * H:(k + 1) * H], torch.full((H,), -b if variant == "cifg" else b,
                                                                  dtype=DTYPE))
    assert torch.equal(P["bias_hh"][k * H:(k + 1) * H], torch.zeros(H, dtype=DTYPE))
    others = torch.cat([P["bias_ih"][:k * H], P["bias_ih"][(k + 1) * H:]])
    assert others.abs().max() <= 1 / H ** 0.5          # the other biases keep the default init


def test_lstm_gates_match_the_reference():
    gen = torch.Generator().manual_seed(11)
    for variant in cells.LSTM_VARIANTS:
        cell = cells.create("lstm", I, H, variant=variant, dtype=DTYPE)
        randomize(cell, gen)
        P = cell.params()
        x = torch.randn(B, I, dtype=DTYPE, generator=gen)
        state = random_state(cell, B, gen)
        with torch.no_grad():
            _, _, gates = cell.step_with_gates(P, cell.project_input(P, x[None])[0], state)
            _, _, want = lstm_ref(P, x, state, variant=variant, return_gates=True)
        dropped = {"nig": "i", "nfg": "f", "nog": "o"}.get(variant)
        assert set(gates) == set("ifo") - {dropped}, variant
        for k in gates:
            torch.testing.assert_close(gates[k], want[k], **EXACT)
        if variant == "cifg":
            torch.testing.assert_close(gates["f"], 1 - gates["i"], **EXACT)


def test_lstm_projection_and_layer_norm_shapes():
    cell = cells.create("lstm", I, H, proj_size=2)
    assert cell.weight_hr.shape == (2, H) and cell.weight_hh.shape == (4 * H, 2)
    assert cell.state_sizes() == (2, H) and cell.output_size == 2
    ln = cells.create("lstm", I, H, layer_norm=True)
    assert torch.equal(ln.ln_c_weight, torch.ones(H)) and torch.equal(ln.ln_ih_bias, torch.zeros(4 * H))
    assert ln.ln_ih_weight.shape == ln.ln_hh_weight.shape == (4 * H,) and ln.ln_c_bias.shape == (H,)


# ----- GRU --------------------------------------------------------------------------------------
def test_gru_original_and_standard_differ_with_the_same_parameters():
    gen = torch.Generator().manual_seed(2)
    standard = cells.create("gru", I, H, dtype=DTYPE)
    randomize(standard, gen)
    original = cells.create("gru", I, H, variant="original", dtype=DTYPE)
    original.load_state_dict(standard.state_dict())
    x, h = torch.randn(1, B, I, dtype=DTYPE, generator=gen), torch.randn(B, H, dtype=DTYPE, generator=gen)
    with torch.no_grad():
        a = standard.step(standard.params(), standard.project_input(standard.params(), x)[0], (h,))[0]
        b = original.step(original.params(), original.project_input(original.params(), x)[0], (h,))[0]
    assert (a - b).abs().max() > 1e-3


# ----- IndRNN -----------------------------------------------------------------------------------
def test_indrnn_recurrent_weight_is_a_vector_and_is_clipped():
    gen = torch.Generator().manual_seed(4)
    cell = cells.create("indrnn", I, H, recurrent_max=0.5, dtype=DTYPE)
    assert cell.weight_hh.shape == (H,)
    assert 0 <= cell.weight_hh.min() and cell.weight_hh.max() <= 0.5        # init in [0, recurrent_max]
    with torch.no_grad():
        cell.weight_hh.copy_(torch.tensor([2.0, -3.0, 0.25, -0.1], dtype=DTYPE))
    P = cell.params()
    x = torch.randn(B, I, dtype=DTYPE, generator=gen)
    h = torch.rand(B, H, dtype=DTYPE, generator=gen)
    with torch.no_grad():
        y = cell.step(P, cell.project_input(P, x[None])[0], (h,))[0]
        clipped = ACT["relu"](lin(x, P["weight_ih"]) + P["bias_ih"]
                              + torch.tensor([0.5, -0.5, 0.25, -0.1], dtype=DTYPE) * h)
        unclipped = indrnn_ref(P, x, (h,))[0]
    torch.testing.assert_close(y, clipped, **EXACT)
    assert not torch.allclose(y, unclipped)


# ----- minGRU / minLSTM ---------------------------------------------------------------------------
def test_minimal_cells_g_and_parameters():
    a = torch.tensor([-2.0, -1e-9, 0.0, 1.0, 3.0], dtype=DTYPE)
    torch.testing.assert_close(g_feng(a), torch.tensor([1 / (1 + np.exp(2)), 0.5, 0.5, 1.5, 3.5],
                                                       dtype=DTYPE), atol=1e-9, rtol=0)
    mingru, minlstm = cells.create("mingru", I, H), cells.create("minlstm", I, H)
    assert set(mingru.params()) == set(minlstm.params()) == {"weight_ih", "bias_ih"}
    assert mingru.weight_ih.shape == (2 * H, I) and minlstm.weight_ih.shape == (3 * H, I)
    gen = torch.Generator().manual_seed(6)
    cell = cells.create("minlstm", I, H, dtype=DTYPE)
    randomize(cell, gen)
    x = torch.randn(1, B, I, dtype=DTYPE, generator=gen)
    u = cell.project_input(cell.params(), x)[0].detach()
    _, _, gates = cell.step_with_gates(cell.params(), u, (torch.zeros(B, H, dtype=DTYPE),))
    f, i = sigma(u[:, :H]), sigma(u[:, H:2 * H])
    torch.testing.assert_close(gates["i'"].detach(), i / (f + i), **EXACT)


# ----- Echo state network -----------------------------------------------------------------------
def test_esn_reservoir_properties():
    n = 200
    cell = cells.create("esn", I, n, spectral_radius=0.7, sparsity=0.8, input_scaling=0.3,
                        bias_scaling=0.2, seed=3, dtype=DTYPE)
    radius = torch.linalg.eigvals(cell.weight_hh).abs().max().item()
    assert abs(radius - 0.7) < 1e-10
    zeros = (cell.weight_hh == 0).double().mean().item()
    assert abs(zeros - 0.8) < 0.02
    assert cell.weight_ih.abs().max() <= 0.3 and cell.weight_ih.abs().max() > 0.2
    assert cell.bias_ih.abs().max() <= 0.2 and cell.bias_ih.abs().max() > 0.1
    assert list(cell.parameters()) == []
    assert {name for name, _ in cell.named_buffers()} == {"weight_ih", "weight_hh", "bias_ih"}

    same = cells.create("esn", I, n, spectral_radius=0.7, sparsity=0.8, input_scaling=0.3,
                        bias_scaling=0.2, seed=3, dtype=DTYPE)
    other = cells.create("esn", I, n, spectral_radius=0.7, sparsity=0.8, input_scaling=0.3,
                         bias_scaling=0.2, seed=4, dtype=DTYPE)
    for name in ("weight_ih", "weight_hh", "bias_ih"):
        assert torch.equal(getattr(cell, name), getattr(same, name))
        assert not torch.equal(getattr(cell, name), getattr(other, name))

    dense = cells.create("esn", I, 50, spectral_radius=1.3, sparsity=0.0, seed=0, dtype=DTYPE)
    assert abs(torch.linalg.eigvals(dense.weight_hh).abs().max().item() - 1.3) < 1e-10
    assert (dense.weight_hh == 0).sum() == 0
    layer = rnnkit.Recurrent("esn", I, 10, num_layers=2, seed=0)
    assert list(layer.parameters()) == []


# ----- registry and readout ---------------------------------------------------------------------
def test_available_cells():
    assert cells.available() == ["elman", "esn", "gru", "indrnn", "jordan", "lstm", "mingru",
                                 "minlstm", "residual"]
    assert set(REFS) == set(cells.available())


def test_fit_ridge_recovers_a_linear_map():
    gen = torch.Generator().manual_seed(8)
    N, F, O = 300, 6, 2
    X = torch.randn(N, F, dtype=DTYPE, generator=gen)
    W = torch.randn(O, F, dtype=DTYPE, generator=gen)
    c = torch.randn(O, dtype=DTYPE, generator=gen)
    Y = X @ W.T + c
    W_fit, c_fit = cells.fit_ridge(X, Y, ridge=0.0)
    torch.testing.assert_close(W_fit, W, atol=1e-10, rtol=0)
    torch.testing.assert_close(c_fit, c, atol=1e-10, rtol=0)

    # with noise and ridge = 0: ordinary least squares on [X, 1] (numpy's lstsq)
    Yn = Y + 0.5 * torch.randn(N, O, dtype=DTYPE, generator=gen)
    W_fit, c_fit = cells.fit_ridge(X, Yn, ridge=0.0)
    Xa = np.concatenate([X.numpy(), np.ones((N, 1))], axis=1)
    sol, *_ = np.linalg.lstsq(Xa, Yn.numpy(), rcond=None)
    np.testing.assert_allclose(W_fit.numpy(), sol[:-1].T, atol=1e-10, rtol=0)
    np.testing.assert_allclose(c_fit.numpy(), sol[-1], atol=1e-10, rtol=0)

    # ridge > 0, bias not penalised: W = (Xcᵀ Xc + λI)⁻¹ Xcᵀ Yc on centred data, c = ȳ − W x̄
    lam = 25.0
    W_fit, c_fit = cells.fit_ridge(X, Yn, ridge=lam)
    Xc, Yc = X.numpy() - X.numpy().mean(0), Yn.numpy() - Yn.numpy().mean(0)
    W_ref = np.linalg.solve(Xc.T @ Xc + lam * np.eye(F), Xc.T @ Yc).T
    c_ref = Yn.numpy().mean(0) - W_ref @ X.numpy().mean(0)
    np.testing.assert_allclose(W_fit.numpy(), W_ref, atol=1e-10, rtol=0)
    np.testing.assert_allclose(c_fit.numpy(), c_ref, atol=1e-10, rtol=0)
    assert np.linalg.norm(W_ref) < np.linalg.norm(sol[:-1])      # the penalty shrinks W


@pytest.mark.parametrize("name", cells.available())
def test_calling_a_cell_takes_one_step_like_the_layer_does(name):
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(name, I, H, dtype=DTYPE, backend="reference")
    cell = layer.cells[0]
    x = torch.randn(T, B, I, dtype=DTYPE)
    expected, _ = layer(x)
    state, outputs = None, []
    for x_t in x:
        y_t, state = cell(x_t, state)
        outputs.append(y_t)
    torch.testing.assert_close(torch.stack(outputs), expected, **EXACT)
    with pytest.raises(ValueError, match=r"x_t must have shape \(batch, input_size=3\), got \(5, 4\)"):
        cell(torch.randn(B, I + 1, dtype=DTYPE))
