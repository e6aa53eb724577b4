"""Conformance suite: every registered cell, in every variant, keeps the contract of a layer.

The configurations are built from the registry (``rnnkit.cells.available()`` and
``rnnkit.cells.LSTM_VARIANTS``): a registered cell without an entry in ``_family_options`` below is
still tested, with its default options. Every test runs ``rnnkit.Recurrent(...,
backend="reference")`` in float64 and checks a property against an independent computation (runs of
single sequences, finite differences, formulas written out here, or the other of two algorithms),
never the code against itself.
"""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import rnnkit
from rnnkit import cells

DTYPE = torch.float64


# ----- the configurations -----------------------------------------------------------------------
def _family_options(name: str) -> list[dict]:
    """The option sets a cell family is tested with; unknown (new) cells get their defaults."""
    if name == "lstm":
        return ([dict(variant=v) for v in cells.LSTM_VARIANTS]
                + [dict(variant="standard", proj_size=2), dict(variant="vanilla", proj_size=2),
                   dict(variant="fgr", proj_size=2),
                   dict(variant="standard", layer_norm=True), dict(variant="vanilla", layer_norm=True)])
    if name == "gru":
        return [dict(variant="standard"), dict(variant="original"),
                dict(variant="standard", layer_norm=True)]
    if name == "elman":
        return [dict(nonlinearity=n) for n in ("tanh", "relu", "sigmoid")] + \
               [dict(nonlinearity="relu", init="identity")]
    if name == "jordan":
        return [dict(output_size=2), dict(output_size=4, output_nonlinearity="sigmoid")]
    if name in ("mingru", "minlstm"):
        return [dict(backend="parallel_scan"), dict(backend="scan"), dict(backend="reference")]
    if name == "indrnn":
        return [dict(), dict(recurrent_max=0.5)]
    if name == "esn":
        return [dict(seed=3), dict(seed=5, leak_rate=0.6, bias_scaling=0.5)]
    return [dict()]


CONFIGS = [(name, options) for name in cells.available() for options in _family_options(name)]
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in CONFIGS]
each_config = pytest.mark.parametrize("name,options", CONFIGS, ids=IDS)

I, H = 3, 3          # input and hidden sizes used throughout (proj_size / output_size differ)


def make_layer(name, options, num_layers=2, bidirectional=False, batch_first=False, seed=0,
               **layer_options):
    """A float64 reference layer whose parameters are perturbed away from their initial values
    (so that layer-norm gains, identity recurrences, zero biases are not special)."""
    torch.manual_seed(seed)
    options = {"backend": "reference", **options}          # minGRU/minLSTM: their scans too
    layer = rnnkit.Recurrent(name, I, H, num_layers, bidirectional, batch_first,
                             dtype=DTYPE, **layer_options, **options)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return layer


def twin(layer, cell_options=None, **changes):
    """The same layer (same weights) with some constructor arguments changed."""
    kwargs = dict(num_layers=layer.num_layers, bidirectional=layer.bidirectional,
                  batch_first=layer.batch_first)
    layer_options = {}
    layer_options["backend"] = changes.pop("backend", layer.backend)
    for key in ("dropout", "input_dropout", "recurrent_dropout", "zoneout", "learn_initial_state",
                "bptt"):
        if key in changes:
            layer_options[key] = changes.pop(key)
    kwargs.update(changes)
    options = {**layer.cell_options, **(cell_options or {})}
    other = rnnkit.Recurrent(layer.cell_name, layer.input_size, layer.hidden_size,
                             kwargs["num_layers"], kwargs["bidirectional"], kwargs["batch_first"],
                             dtype=DTYPE, **layer_options, **options)
    missing, unexpected = other.load_state_dict(layer.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("initial_") for k in missing)
    return other


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def random_state(layer, batch, generator=None, scale=1.0):
    n = layer.num_layers * layer.num_directions
    return tuple(scale * torch.randn(n, batch, s, dtype=DTYPE, generator=generator)
                 for s in layer.state_sizes)


def random_lengths(T, B, generator):
    """Random lengths in 1..T with one full-length and one length-1 sequence, at random places."""
    lengths = torch.randint(1, T + 1, (B,), generator=generator)
    perm = torch.randperm(B, generator=generator)
    lengths[perm[0]] = T
    lengths[perm[1]] = 1
    return lengths


def padded_input(T, B, lengths, generator):
    """x (T, B, I) with large garbage past each sequence's end (it must never leak in)."""
    x = torch.randn(T, B, I, dtype=DTYPE, generator=generator)
    garbage = 50 * torch.randn(T, B, I, dtype=DTYPE, generator=generator)
    past_end = torch.arange(T).unsqueeze(1) >= lengths.unsqueeze(0)            # (T, B)
    return torch.where(past_end.unsqueeze(-1), garbage, x)


TIGHT = dict(atol=1e-12, rtol=1e-12)


# ----- 1. a padded batch with lengths is the same as each sequence run alone ---------------------
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@each_config
def test_masked_batch_matches_unpadded_runs(name, options, bidirectional):
    g = torch.Generator().manual_seed(11)
    T, B = 6, 4
    layer = make_layer(name, options, num_layers=2, bidirectional=bidirectional)
    lengths = random_lengths(T, B, g)
    x = padded_input(T, B, lengths, g).requires_grad_()
    state = tuple(s.requires_grad_() for s in random_state(layer, B, g))
    out, final = layer(x, state, lengths)
    final = as_tuple(final)
    assert out.shape == (T, B, layer.output_size)
    # gradients of a random weighting of everything, to check the backward pass as well
    w_out = torch.randn(out.shape, dtype=DTYPE, generator=g)
    w_fin = [torch.randn(f.shape, dtype=DTYPE, generator=g) for f in final]
    loss = (out * w_out).sum() + sum((f * w).sum() for f, w in zip(final, w_fin))
    grads = torch.autograd.grad(loss, (x, *state))
    # without autograd the reference loop runs (with it, the hand-derived BPTT where a cell has one)
    with torch.no_grad():
        out_loop, final_loop = layer(x, state, lengths)
    final_loop = as_tuple(final_loop)

    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[n:, b] == 0), "outputs past a sequence's end must be exactly zero"
        assert torch.all(out_loop[n:, b] == 0), "outputs past a sequence's end must be exactly zero"
        assert torch.all(grads[0][n:, b] == 0), "padding must not receive a gradient"
        x_b = x.detach()[:n, b:b + 1].clone().requires_grad_()
        state_b = tuple(s.detach()[:, b:b + 1].clone().requires_grad_() for s in state)
        out_b, final_b = layer(x_b, state_b)
        final_b = as_tuple(final_b)
        torch.testing.assert_close(out[:n, b:b + 1], out_b, **TIGHT)
        torch.testing.assert_close(out_loop[:n, b:b + 1], out_b, **TIGHT)
        for f, f_loop, f_b in zip(final, final_loop, final_b):
            torch.testing.assert_close(f[:, b:b + 1], f_b, **TIGHT)
            torch.testing.assert_close(f_loop[:, b:b + 1], f_b, **TIGHT)
        loss_b = (out_b * w_out[:n, b:b + 1]).sum() + \
            sum((f_b * w[:, b:b + 1]).sum() for f_b, w in zip(final_b, w_fin))
        grads_b = torch.autograd.grad(loss_b, (x_b, *state_b))
        torch.testing.assert_close(grads[0][:n, b:b + 1], grads_b[0], atol=1e-11, rtol=1e-11)
        for g_s, g_sb in zip(grads[1:], grads_b[1:]):
            torch.testing.assert_close(g_s[:, b:b + 1], g_sb, atol=1e-11, rtol=1e-11)


# ----- 2. streaming: a sequence in two chunks, state carried, is the sequence in one -------------
@each_config
def test_streaming_in_chunks_matches_one_run(name, options):
    g = torch.Generator().manual_seed(12)
    T, B, k = 7, 3, 3
    layer = make_layer(name, options, num_layers=2)
    x = torch.randn(T, B, I, dtype=DTYPE, generator=g)
    state = random_state(layer, B, g)
    out, final = layer(x, state)
    out1, mid = layer(x[:k], state)
    out2, final2 = layer(x[k:], mid)
    torch.testing.assert_close(torch.cat([out1, out2]), out, **TIGHT)
    for f, f2 in zip(as_tuple(final), as_tuple(final2)):
        torch.testing.assert_close(f2, f, **TIGHT)


# ----- 3. batch_first and unbatched input give the time-major batched numbers -------------------
@each_config
def test_batch_first_and_unbatched_match_time_major(name, options):
    g = torch.Generator().manual_seed(13)
    T, B = 5, 3
    layer = make_layer(name, options, num_layers=2, bidirectional=True)
    lengths = random_lengths(T, B, g)
    x = padded_input(T, B, lengths, g)
    state = random_state(layer, B, g)
    out, final = layer(x, state, lengths)
    final = as_tuple(final)

    layer_bf = twin(layer, batch_first=True)
    out_bf, final_bf = layer_bf(x.transpose(0, 1).contiguous(), state, lengths)
    assert out_bf.shape == (B, T, layer.output_size)
    torch.testing.assert_close(out_bf.transpose(0, 1), out, **TIGHT)
    for f, f_bf in zip(final, as_tuple(final_bf)):
        assert f_bf.shape == f.shape                   # states stay (L·D, B, S) with batch_first
        torch.testing.assert_close(f_bf, f, **TIGHT)

    full = layer(x, state)                           # unbatched calls run every sequence to T
    for b in range(B):
        out_u, final_u = layer(x[:, b], tuple(s[:, b] for s in state))
        assert out_u.shape == (T, layer.output_size)
        torch.testing.assert_close(out_u, full[0][:, b], **TIGHT)
        for f, f_u in zip(as_tuple(full[1]), as_tuple(final_u)):
            assert f_u.shape == (f.shape[0], f.shape[2])
            torch.testing.assert_close(f_u, f[:, b], **TIGHT)


# ----- 4. return_all_states ----------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@each_config
def test_return_all_states_is_consistent_with_outputs_and_final_state(name, options, bidirectional):
    g = torch.Generator().manual_seed(14)
    T, B, L = 5, 3, 2
    layer = make_layer(name, options, num_layers=L, bidirectional=bidirectional)
    D, O = layer.num_directions, layer.output_size // layer.num_directions
    lengths = random_lengths(T, B, g)
    x = padded_input(T, B, lengths, g)
    state = random_state(layer, B, g)
    out, final, all_states = layer(x, state, lengths, return_all_states=True)
    final = as_tuple(final)
    out_plain, final_plain = layer(x, state, lengths)
    torch.testing.assert_close(out, out_plain, **TIGHT)
    for f, f_p in zip(final, as_tuple(final_plain)):
        torch.testing.assert_close(f, f_p, **TIGHT)

    assert isinstance(all_states, tuple) and len(all_states) == len(layer.state_sizes)
    for s_all, f, size in zip(all_states, final, layer.state_sizes):
        assert s_all.shape == (T, L * D, B, size)
        for b, n in enumerate(lengths.tolist()):
            assert torch.all(s_all[n:, :, b] == 0)
            for layer_index in range(L):
                fwd = layer_index * D
                torch.testing.assert_close(s_all[n - 1, fwd, b], f[fwd, b], **TIGHT)
                if D == 2:   # the backward direction ends at the sequence's first step
                    torch.testing.assert_close(s_all[0, fwd + 1, b], f[fwd + 1, b], **TIGHT)
    # the last layer's first state tensor is its output (per direction)
    h_all = all_states[0]
    for d in range(D):
        assert h_all.shape[-1] == O
        torch.testing.assert_close(h_all[:, (L - 1) * D + d], out[..., d * O:(d + 1) * O], **TIGHT)

    if not bidirectional:
        # the state after step t is the final state of a run over the first t + 1 steps
        x_full = torch.randn(T, B, I, dtype=DTYPE, generator=g)
        _, _, all_full = layer(x_full, state, return_all_states=True)
        for t in range(T):
            _, final_t = layer(x_full[:t + 1], state)
            for s_all, f_t in zip(all_full, as_tuple(final_t)):
                torch.testing.assert_close(s_all[t], f_t, **TIGHT)

    # batch_first: (B, T, L·D, S), the same numbers
    _, _, all_bf = twin(layer, batch_first=True)(x.transpose(0, 1), state, lengths,
                                                 return_all_states=True)
    for s_all, s_bf in zip(all_states, all_bf):
        assert s_bf.shape == (B, T, L * D, s_all.shape[-1])
        torch.testing.assert_close(s_bf.permute(1, 2, 0, 3), s_all, **TIGHT)


# ----- 5. gradcheck through the whole layer -------------------------------------------------------
@pytest.mark.parametrize("num_layers,bidirectional,fast_mode",
                         [(1, True, False), (2, False, True), (2, True, True)],
                         ids=["1-layer-bi-full", "2-layers-uni-fast", "2-layers-bi-fast"])
@each_config
def test_gradcheck_whole_layer_with_lengths(name, options, num_layers, bidirectional, fast_mode):
    """Lengths, random initial state; every trainable parameter is an input. The full Jacobian is
    checked for one bidirectional layer (both directions, every entry); the two-layer stacks, one
    and two directions, use gradcheck's fast mode (the Jacobian against finite differences along
    a random direction: a wrong entry anywhere shows, with probability one), which keeps the file
    within its time budget (the full Jacobian of two unidirectional layers took 15 of its seconds)."""
    g = torch.Generator().manual_seed(15)
    T, B = 4, 2
    layer = make_layer(name, options, num_layers=num_layers, bidirectional=bidirectional)
    lengths = torch.tensor([T, 2])
    x = torch.randn(T, B, I, dtype=DTYPE, generator=g, requires_grad=True)
    state = tuple(s.requires_grad_() for s in random_state(layer, B, g, scale=0.5))
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in layer.named_parameters()]
    if name == "esn":
        assert not names, "the echo state network's reservoir is fixed: no trainable parameters"
        assert {"cells.0.weight_hh", "cells.0.weight_ih"} <= set(dict(layer.named_buffers()))
    else:
        assert names
    n_state = len(state)

    def run(x, *tensors):
        s, p = tensors[:n_state], dict(zip(names, tensors[n_state:]))
        out, final = functional_call(layer, p, (x, s, lengths))
        return (out, *as_tuple(final))

    assert torch.autograd.gradcheck(run, (x, *state, *params), eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=fast_mode)

    # every trainable parameter, the input and the initial state actually influence the result
    outputs = run(x, *state, *params)
    w = [torch.randn(o.shape, dtype=DTYPE, generator=g) for o in outputs]
    loss = sum((o * wi).sum() for o, wi in zip(outputs, w))
    grads = torch.autograd.grad(loss, (x, *state, *params))
    for label, grad in zip(["x"] + [f"state{i}" for i in range(n_state)] + names, grads):
        assert grad.abs().sum() > 0, f"{label} has no influence on the outputs"


# ----- 6. learnable initial state -----------------------------------------------------------------
@each_config
def test_learnable_initial_state_is_used_and_trained(name, options):
    g = torch.Generator().manual_seed(16)
    T, B = 4, 3
    layer = make_layer(name, options, num_layers=2, bidirectional=True)
    learned = twin(layer, learn_initial_state=True)
    n = layer.num_layers * layer.num_directions
    initial = []
    for state_name, size in zip(layer.state_names, layer.state_sizes):
        param = getattr(learned, f"initial_{state_name}")
        assert isinstance(param, torch.nn.Parameter) and param.shape == (n, 1, size)
        with torch.no_grad():
            param.copy_(torch.randn(n, 1, size, dtype=DTYPE, generator=g))
        initial.append(param)
    lengths = random_lengths(T, B, g)
    x = padded_input(T, B, lengths, g)

    out, final = learned(x, lengths=lengths)
    explicit = tuple(p.detach().expand(-1, B, -1).clone().requires_grad_() for p in initial)
    out_ref, final_ref = layer(x, explicit, lengths)
    torch.testing.assert_close(out, out_ref, **TIGHT)
    for f, f_r in zip(as_tuple(final), as_tuple(final_ref)):
        torch.testing.assert_close(f, f_r, **TIGHT)

    w = torch.randn(out.shape, dtype=DTYPE, generator=g)
    (out * w).sum().backward()
    grads_ref = torch.autograd.grad((out_ref * w).sum(), explicit)
    for p, g_ref in zip(initial, grads_ref):
        assert p.grad is not None and p.grad.abs().sum() > 0
        torch.testing.assert_close(p.grad, g_ref.sum(1, keepdim=True), atol=1e-11, rtol=1e-11)
    # a given state overrides the learned one
    other = random_state(layer, B, g)
    torch.testing.assert_close(learned(x, other, lengths)[0], layer(x, other, lengths)[0], **TIGHT)


# ----- 7. regularisation options ------------------------------------------------------------------
def _elman_reference_step(p, x_t, h):
    return torch.tanh(x_t @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])


def test_zoneout_at_eval_is_the_expected_mixture_elman():
    g = torch.Generator().manual_seed(17)
    rate, T, B = 0.3, 6, 3
    layer = make_layer("elman", {}, num_layers=1, zoneout=rate).eval()
    x = torch.randn(T, B, I, dtype=DTYPE, generator=g)
    h0 = torch.randn(1, B, H, dtype=DTYPE, generator=g)
    out, final = layer(x, h0)
    p = layer.cells[0].params()
    h, expected = h0[0], []
    for t in range(T):
        h = rate * h + (1 - rate) * _elman_reference_step(p, x[t], h)
        expected.append(h)
    torch.testing.assert_close(out, torch.stack(expected), **TIGHT)
    torch.testing.assert_close(final[0], h, **TIGHT)
    # and the same with the cell's own step, for a padded batch (held state past each end)
    lengths = torch.tensor([T, 2, 4])
    out, final = layer(x, h0, lengths)
    cell = layer.cells[0]
    u = cell.project_input(p, x)
    h = h0[0]
    for t in range(T):
        new = rate * h + (1 - rate) * cell.step(p, u[t], (h,))[0]
        keep = (t < lengths).unsqueeze(-1)
        h = torch.where(keep, new, h)
        torch.testing.assert_close(out[t], h * keep, **TIGHT)
    torch.testing.assert_close(final[0], h, **TIGHT)


@each_config
def test_zoneout_at_eval_mixes_every_state_tensor(name, options):
    """Bidirectional with lengths, recomputed sequence by sequence with the cell's own step:
    s_t = p·s_{t−1} + (1 − p)·step(s_{t−1}) for every state tensor."""
    g = torch.Generator().manual_seed(18)
    rate, T, B = 0.4, 5, 3
    layer = make_layer(name, options, num_layers=1, bidirectional=True, zoneout=rate).eval()
    lengths = random_lengths(T, B, g)
    x = padded_input(T, B, lengths, g)
    state = random_state(layer, B, g)
    if layer.backend in ("scan", "parallel_scan"):             # a scan cannot hold units back
        with pytest.raises(ValueError, match="zoneout breaks the linear recurrence"):
            layer(x, state, lengths)
        return
    out, final = layer(x, state, lengths)
    final = as_tuple(final)
    O = layer.output_size // 2
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[n:, b] == 0)
        for d in range(2):
            cell = layer.cells[d]
            p = cell.params()
            seq = x[:n, b:b + 1] if d == 0 else x[:n, b:b + 1].flip(0)
            u = cell.project_input(p, seq)
            s = tuple(t[d, b:b + 1] for t in state)
            outs = []
            for t in range(n):
                _, new = cell.step(p, u[t], s)
                s = tuple(rate * old + (1 - rate) * v for old, v in zip(s, new))
                outs.append(s[0])
            outs = torch.cat(outs) if d == 0 else torch.cat(outs).flip(0)
            torch.testing.assert_close(out[:n, b, d * O:(d + 1) * O], outs, **TIGHT)
            for f, s_t in zip(final, s):
                torch.testing.assert_close(f[d, b:b + 1], s_t, **TIGHT)


def test_zoneout_in_training_keeps_some_units_and_updates_the_others():
    torch.manual_seed(19)
    T, B = 8, 4
    layer = make_layer("elman", {}, num_layers=1, zoneout=0.5).train()
    x = torch.randn(T, B, I, dtype=DTYPE)
    h0 = torch.randn(1, B, H, dtype=DTYPE)
    out, _ = layer(x, h0)
    p = layer.cells[0].params()
    kept = updated = 0
    h_prev = h0[0]
    for t in range(T):
        new = _elman_reference_step(p, x[t], h_prev)
        is_old = torch.isclose(out[t], h_prev, atol=1e-14, rtol=0)
        is_new = torch.isclose(out[t], new, atol=1e-14, rtol=0)
        assert torch.all(is_old | is_new), "each unit either keeps its old value or takes the new one"
        kept += int((is_old & ~is_new).sum())
        updated += int((is_new & ~is_old).sum())
        h_prev = out[t]
    assert kept > 0.25 * T * B * H and updated > 0.25 * T * B * H


def _linear_relu_elman(rate_kwargs, weight_hh):
    """A relu Elman layer that is linear on positive inputs: W = I, U given, zero biases."""
    layer = rnnkit.Recurrent("elman", H, H, backend="reference", dtype=DTYPE, nonlinearity="relu",
                             **rate_kwargs)
    with torch.no_grad():
        p = layer.cells[0]
        p.weight_ih.copy_(torch.eye(H, dtype=DTYPE))
        p.weight_hh.copy_(weight_hh)
        p.bias_ih.zero_()
        p.bias_hh.zero_()
    return layer


def _assert_variational_mask(masks, rate):
    """masks (T, B, F): the same at every step, each entry 0 or 1/(1 − rate), both present."""
    torch.testing.assert_close(masks, masks[:1].expand_as(masks), atol=1e-10, rtol=0)
    m = masks[0]
    is_zero = torch.isclose(m, torch.zeros_like(m), atol=1e-10, rtol=0)
    is_scaled = torch.isclose(m, torch.full_like(m, 1 / (1 - rate)), atol=1e-10, rtol=0)
    assert torch.all(is_zero | is_scaled)
    assert is_zero.any() and is_scaled.any()


def test_input_dropout_mask_is_the_same_at_every_step_and_off_in_eval():
    torch.manual_seed(20)
    rate, T, B = 0.5, 7, 6
    layer = _linear_relu_elman(dict(input_dropout=rate), torch.zeros(H, H, dtype=DTYPE)).train()
    x = torch.rand(T, B, H, dtype=DTYPE) + 0.5                 # positive: relu is the identity
    out, _ = layer(x)                                          # h_t = m ⊙ x_t
    _assert_variational_mask(out / x, rate)
    out_eval, _ = layer.eval()(x)
    torch.testing.assert_close(out_eval, x, **TIGHT)


def test_recurrent_dropout_mask_is_the_same_at_every_step_and_off_in_eval():
    torch.manual_seed(21)
    rate, T, B = 0.5, 7, 6
    layer = _linear_relu_elman(dict(recurrent_dropout=rate), torch.eye(H, dtype=DTYPE)).train()
    x = torch.rand(T, B, H, dtype=DTYPE) + 0.5
    h0 = torch.rand(1, B, H, dtype=DTYPE) + 0.5
    out, _ = layer(x, h0)                                      # h_t = x_t + m ⊙ h_{t−1}
    h_prev = torch.cat([h0, out[:-1]])
    _assert_variational_mask((out - x) / h_prev, rate)
    out_eval, _ = layer.eval()(x, h0)
    torch.testing.assert_close(out_eval, x.cumsum(0) + h0, **TIGHT)


@each_config
def test_dropout_options_do_nothing_in_eval(name, options):
    g = torch.Generator().manual_seed(22)
    T, B = 5, 3
    layer = make_layer(name, options, num_layers=2, bidirectional=True)
    rates = dict(dropout=0.5, input_dropout=0.5)
    if cells.cell_class(name).takes_recurrent_dropout:
        rates["recurrent_dropout"] = 0.5
    regularised = twin(layer, **rates)
    lengths = random_lengths(T, B, g)
    x = padded_input(T, B, lengths, g)
    state = random_state(layer, B, g)
    out, final = layer(x, state, lengths)
    out_eval, final_eval = regularised.eval()(x, state, lengths)
    torch.testing.assert_close(out_eval, out, **TIGHT)
    for f, f_e in zip(as_tuple(final), as_tuple(final_eval)):
        torch.testing.assert_close(f_e, f, **TIGHT)
    # while training the options do act (each alone), and padding stays zero
    for key, rate in rates.items():
        torch.manual_seed(0)
        out_train, _ = twin(layer, **{key: rate}).train()(x, state, lengths)
        assert not torch.allclose(out_train, out), f"{key} did nothing while training"
        for b, n in enumerate(lengths.tolist()):
            assert torch.all(out_train[n:, b] == 0)


def test_dropout_between_layers_is_dropout_on_the_first_layers_output():
    torch.manual_seed(23)
    T, B = 5, 4
    deep = make_layer("gru", {}, num_layers=2, dropout=0.5).train()
    x = torch.randn(T, B, I, dtype=DTYPE)
    torch.manual_seed(7)
    out, _ = deep(x)
    # recompute: layer 0, dropout (same random draw), layer 1
    first = rnnkit.Recurrent("gru", I, H, backend="reference", dtype=DTYPE)
    second = rnnkit.Recurrent("gru", H, H, backend="reference", dtype=DTYPE)
    first.cells[0].load_state_dict(deep.cells[0].state_dict())
    second.cells[0].load_state_dict(deep.cells[1].state_dict())
    h1, _ = first(x)
    torch.manual_seed(7)
    dropped = torch.nn.functional.dropout(h1, 0.5, True)
    torch.testing.assert_close(out, second(dropped)[0], **TIGHT)


@pytest.mark.parametrize("name", cells.available())
def test_recurrent_dropout_rejected_where_there_is_no_recurrent_matrix(name):
    if cells.cell_class(name).takes_recurrent_dropout:
        rnnkit.Recurrent(name, I, H, recurrent_dropout=0.3, dtype=DTYPE)
    else:
        with pytest.raises(ValueError, match="recurrent_dropout"):
            rnnkit.Recurrent(name, I, H, recurrent_dropout=0.3, dtype=DTYPE)


def test_cells_without_recurrent_matrix_reject_recurrent_dropout():
    for name in ("mingru", "minlstm", "esn"):
        assert not cells.cell_class(name).takes_recurrent_dropout
        with pytest.raises(ValueError, match="recurrent_dropout"):
            rnnkit.Recurrent(name, I, H, recurrent_dropout=0.3)


@pytest.mark.parametrize("option,value", [("dropout", 1.5), ("dropout", -0.1), ("input_dropout", 1.0),
                                          ("recurrent_dropout", 1.5), ("zoneout", 1.0),
                                          ("zoneout", -0.5), ("zoneout", True)])
def test_out_of_range_rates_raise_value_error(option, value):
    with pytest.raises(ValueError, match=option):
        rnnkit.Recurrent("elman", I, H, **{option: value})


# ----- 8. the scans of minGRU / minLSTM (parallel, time-ordered) equal their sequential step -------
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("backend", ["parallel_scan", "scan", "fused"])
@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_parallel_scan_matches_sequential_mode(name, backend, bidirectional):
    g = torch.Generator().manual_seed(24)
    T, B = 7, 4
    parallel = make_layer(name, dict(backend=backend), num_layers=2, bidirectional=bidirectional)
    results = {}
    lengths = random_lengths(T, B, g)
    x0 = padded_input(T, B, lengths, g)
    state0 = random_state(parallel, B, g, scale=2.0)            # negative initial values included
    assert (state0[0] < 0).any()
    w = torch.randn(T, B, parallel.output_size, dtype=DTYPE, generator=g)
    w_final = torch.randn(state0[0].shape, dtype=DTYPE, generator=g)
    sequential = {bptt: twin(parallel, backend="reference", bptt=bptt) for bptt in ("autograd", "hand")}
    for key, layer in [("parallel", parallel), *sequential.items()]:
        x = x0.clone().requires_grad_()
        state = state0[0].clone().requires_grad_()
        out, final = layer(x, state, lengths)
        loss = (out * w).sum() + (final * w_final).sum()
        grads = torch.autograd.grad(loss, [x, state, *layer.parameters()])
        results[key] = (out, final, grads)
    out_p, final_p, grads_p = results["parallel"]
    for key in ("autograd", "hand"):
        out_s, final_s, grads_s = results[key]
        torch.testing.assert_close(out_p, out_s, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(final_p, final_s, atol=1e-10, rtol=1e-10)
        assert len(grads_p) == len(grads_s)
        for a, b in zip(grads_p, grads_s):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("backend", ["parallel_scan", "scan", "fused"])
@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_parallel_scan_matches_sequential_on_a_long_float32_sequence(name, backend):
    g = torch.Generator().manual_seed(25)
    T, B, hidden = 500, 3, 8
    torch.manual_seed(0)
    parallel = rnnkit.Recurrent(name, I, hidden, backend=backend)
    sequential = rnnkit.Recurrent(name, I, hidden, backend="reference")
    sequential.load_state_dict(parallel.state_dict())
    x = torch.randn(T, B, I, generator=g)
    h0 = torch.randn(1, B, hidden, generator=g)
    lengths = torch.tensor([T, 321, 17])
    with torch.no_grad():
        out_p, final_p = parallel(x, h0, lengths)
        out_s, final_s = sequential(x, h0, lengths)
        out_ref, _ = sequential.double()(x.double(), h0.double(), lengths)
    assert torch.isfinite(out_p).all()
    torch.testing.assert_close(out_p, out_s, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(final_p, final_s, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out_p.double(), out_ref, atol=1e-4, rtol=1e-4)


def test_esn_reservoir_is_fixed_by_its_seed():
    torch.manual_seed(1)
    a = rnnkit.Recurrent("esn", I, 6, 2, True, dtype=DTYPE, seed=4)
    torch.manual_seed(2)
    b = rnnkit.Recurrent("esn", I, 6, 2, True, dtype=DTYPE, seed=4)
    c = rnnkit.Recurrent("esn", I, 6, 2, True, dtype=DTYPE, seed=5)
    assert not list(a.parameters())
    for (key, t_a), t_b, t_c in zip(a.state_dict().items(), b.state_dict().values(),
                                    c.state_dict().values()):
        assert torch.equal(t_a, t_b), key
        if key.endswith("weight_hh"):
            assert not torch.equal(t_a, t_c)
            radius = torch.linalg.eigvals(t_a).abs().max()
            torch.testing.assert_close(radius, torch.tensor(0.9, dtype=DTYPE))


def test_every_registered_cell_is_in_the_suite():
    assert {name for name, _ in CONFIGS} == set(cells.available())
    assert {o["variant"] for n, o in CONFIGS if n == "lstm"} == set(cells.LSTM_VARIANTS)
