"""rnnkit's LSTM, GRU, RNN and Recurrent compute exactly what torch.nn.LSTM/GRU/RNN compute.

Every test builds a torch.nn module with random weights, copies those weights into the rnnkit
module, runs both on the same inputs and compares outputs, final states and the gradients of a
random-weighted sum of all outputs and final states with respect to the input, the initial states
and every parameter. torch.nn is the independent reference throughout: rnnkit is never compared
with itself only.

``backend="reference"`` (rnnkit's own time loop and hand-derived backward) is the real test of the
cells' equations; ``backend="auto"`` checks that the drop-ins hand torch's kernel the right
weights, states and lengths. Configurations are drawn from a generator seeded by the test's id:
layers, directions, batch_first, bias, proj_size, nonlinearity, dtype-specific tolerances, packed
input with unsorted lengths, unbatched input, given or default initial states, ``lengths=``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import rnnkit
import rnnkit.engine.native as native

# torch's own warning when it runs an LSTM with proj_size outside oneDNN
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

SEEDS = range(32)
DTYPES = [torch.float64, torch.float32]
TOLERANCES = {torch.float64: dict(atol=1e-7, rtol=1e-7), torch.float32: dict(atol=1e-4, rtol=1e-4)}
KINDS = ("lstm", "gru", "rnn")
TORCH_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
OUR_CLASSES = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}
CELL_NAMES = {"lstm": "lstm", "gru": "gru", "rnn": "elman"}
INPUT_MODES = ("padded", "packed", "unbatched", "lengths")


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Config:
    kind: str
    seed: int
    T: int
    B: int
    I: int
    H: int
    num_layers: int
    bidirectional: bool
    batch_first: bool
    bias: bool
    proj_size: int
    nonlinearity: str
    mode: str                 # one of INPUT_MODES
    given_state: bool
    dropout: float            # > 0 only with num_layers > 1; both modules then run in eval mode
    enforce_sorted: bool      # "packed" only: lengths sorted, packed with enforce_sorted=True

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    def torch_kwargs(self) -> dict:
        kwargs = dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                      dropout=self.dropout, bidirectional=self.bidirectional)
        if self.kind == "lstm":
            kwargs["proj_size"] = self.proj_size
        if self.kind == "rnn":
            kwargs["nonlinearity"] = self.nonlinearity
        return kwargs

    def cell_options(self) -> dict:
        options = dict(bias=self.bias)
        if self.kind == "lstm":
            options["proj_size"] = self.proj_size
        if self.kind == "rnn":
            options["nonlinearity"] = self.nonlinearity
        return options


def draw_config(kind: str, seed: int) -> Config:
    """A random configuration; the seed's residue fixes the input mode so that each mode is covered."""
    rng = random.Random(f"{kind}-{seed}")
    H = rng.randint(1, 6)
    num_layers = rng.randint(1, 3)
    return Config(
        kind=kind, seed=seed, T=rng.randint(1, 7), B=rng.randint(1, 4), I=rng.randint(1, 6), H=H,
        num_layers=num_layers, bidirectional=rng.random() < 0.5, batch_first=rng.random() < 0.5,
        bias=rng.random() < 0.7,
        proj_size=rng.randint(1, H - 1) if kind == "lstm" and H > 1 and rng.random() < 0.5 else 0,
        nonlinearity=rng.choice(["tanh", "relu"]) if kind == "rnn" else "tanh",
        mode=INPUT_MODES[seed % len(INPUT_MODES)], given_state=rng.random() < 0.6,
        dropout=0.3 if num_layers > 1 and rng.random() < 0.25 else 0.0,
        enforce_sorted=seed % len(INPUT_MODES) == 1 and rng.random() < 0.25)


def state_sizes(cfg: Config) -> list[int]:
    """Feature sizes of h (and c) in torch's layout."""
    if cfg.kind == "lstm":
        return [cfg.proj_size or cfg.H, cfg.H]
    return [cfg.H]


def make_torch_module(cfg: Config, dtype) -> nn.Module:
    """torch.nn.LSTM/GRU/RNN with weights drawn from N(0, 0.6²), wider than the default init so
    that gates and tanh/relu leave their linear regions."""
    module = TORCH_CLASSES[cfg.kind](cfg.I, cfg.H, dtype=dtype, **cfg.torch_kwargs())
    generator = torch.Generator().manual_seed(1000 + cfg.seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.6)
    return module


def torch_suffix(index: int, num_directions: int) -> str:
    layer, direction = divmod(index, num_directions)
    return f"_l{layer}" + ("_reverse" if direction else "")


def make_dropin(cfg: Config, dtype, backend: str, reference: nn.Module) -> nn.Module:
    ours = OUR_CLASSES[cfg.kind](cfg.I, cfg.H, dtype=dtype, backend=backend, **cfg.torch_kwargs())
    ours.load_state_dict(reference.state_dict())          # strict: the same keys and shapes
    return ours


def make_recurrent(cfg: Config, dtype, backend: str, bptt: str, reference: nn.Module) -> rnnkit.Recurrent:
    ours = rnnkit.Recurrent(CELL_NAMES[cfg.kind], cfg.I, cfg.H, cfg.num_layers, cfg.bidirectional,
                            cfg.batch_first, cfg.dropout, backend=backend, bptt=bptt, dtype=dtype,
                            **cfg.cell_options())
    copied = 0
    with torch.no_grad():
        for index, cell in enumerate(ours.cells):
            suffix = torch_suffix(index, cfg.D)
            names = list(cell.parameter_shapes())
            torch_names = [n[:-len(suffix)] for n, _ in reference.named_parameters() if n.endswith(suffix)]
            assert sorted(names) == sorted(torch_names), (index, names, torch_names)
            for name in names:
                getattr(cell, name).copy_(getattr(reference, name + suffix))
                copied += 1
    assert copied == len(list(reference.parameters())) == len(list(ours.parameters()))
    return ours


def recurrent_params_in_torch_order(ours: rnnkit.Recurrent, reference: nn.Module, cfg: Config):
    """Our cells' parameters listed in the order of ``reference.named_parameters()``."""
    ours_by_name = {}
    for index, cell in enumerate(ours.cells):
        for name in cell.parameter_shapes():
            ours_by_name[name + torch_suffix(index, cfg.D)] = getattr(cell, name)
    return [ours_by_name[name] for name, _ in reference.named_parameters()]


# ------------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    x: torch.Tensor                  # the leaf the gradient is taken with respect to
    state: tuple | None              # leaves, or None
    lengths: torch.Tensor | None     # (B,) for "packed" and "lengths"
    weights: dict                    # random weights of the loss


def make_inputs(cfg: Config, dtype, ours_output_size: int) -> Inputs:
    generator = torch.Generator().manual_seed(2000 + cfg.seed)

    def randn(*shape):
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)

    T, B = cfg.T, cfg.B
    if cfg.mode == "unbatched":
        x = randn(T, cfg.I)
    else:
        x = randn(B, T, cfg.I) if cfg.batch_first else randn(T, B, cfg.I)
    x.requires_grad_(True)
    lengths = None
    if cfg.mode in ("packed", "lengths"):
        rng = random.Random(f"{cfg.kind}-{cfg.seed}-lengths")
        lengths = torch.tensor([rng.randint(1, T) for _ in range(B)])
        if cfg.mode == "packed":
            lengths[rng.randrange(B)] = T                        # the padded tensor's length is T
            if cfg.enforce_sorted:
                lengths = lengths.sort(descending=True).values
    state = None
    if cfg.given_state:
        lead = (cfg.num_layers * cfg.D,) if cfg.mode == "unbatched" else (cfg.num_layers * cfg.D, B)
        state = tuple(randn(*lead, s).requires_grad_(True) for s in state_sizes(cfg))
    out_shape = (T, ours_output_size) if cfg.mode == "unbatched" else \
        ((B, T, ours_output_size) if cfg.batch_first else (T, B, ours_output_size))
    weights = {"output": randn(*out_shape)}
    final_lead = (cfg.num_layers * cfg.D,) if cfg.mode == "unbatched" else (cfg.num_layers * cfg.D, B)
    weights["final"] = [randn(*final_lead, s) for s in state_sizes(cfg)]
    return Inputs(x, state, lengths, weights)


def torch_state_arg(cfg: Config, state):
    if state is None:
        return None
    return state if cfg.kind == "lstm" else state[0]


def as_tuple(final):
    return tuple(final) if isinstance(final, tuple) else (final,)


def run_torch(cfg: Config, module: nn.Module, inp: Inputs):
    """torch's output as a padded tensor (or a PackedSequence for packed input) and final state."""
    hx = torch_state_arg(cfg, inp.state)
    if cfg.mode in ("packed", "lengths"):
        packed = pack_padded_sequence(inp.x, inp.lengths, batch_first=cfg.batch_first,
                                      enforce_sorted=cfg.enforce_sorted)
        out, final = module(packed, hx)
        if cfg.mode == "lengths":
            out, _ = pad_packed_sequence(out, batch_first=cfg.batch_first, total_length=cfg.T)
        return out, as_tuple(final)
    out, final = module(inp.x, hx)
    return out, as_tuple(final)


def run_ours(cfg: Config, module: nn.Module, inp: Inputs):
    """Our module called as torch's (``hx``, a tensor for GRU/RNN) or as Recurrent (``state``, a
    tuple), the state passed by position or, for odd seeds, by keyword."""
    dropin = isinstance(module, (rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN))
    state = torch_state_arg(cfg, inp.state) if dropin else inp.state
    kwargs = {"lengths": inp.lengths} if cfg.mode == "lengths" else {}
    x = inp.x
    if cfg.mode == "packed":
        x = pack_padded_sequence(inp.x, inp.lengths, batch_first=cfg.batch_first,
                                 enforce_sorted=cfg.enforce_sorted)
    if cfg.seed % 2:
        out, final = module(x, **{"hx" if dropin else "state": state}, **kwargs)
    else:
        out, final = module(x, state, **kwargs)
    return out, as_tuple(final)


def loss_of(cfg: Config, out, final, inp: Inputs):
    if isinstance(out, PackedSequence):
        # weight each packed element by the padded weight of its (t, b), so both sides agree
        w = inp.weights["output"]
        w_packed = pack_padded_sequence(w, inp.lengths, batch_first=cfg.batch_first,
                                        enforce_sorted=cfg.enforce_sorted)
        data_loss = (out.data * w_packed.data).sum()
    else:
        data_loss = (out * inp.weights["output"]).sum()
    return data_loss + sum((f * w).sum() for f, w in zip(final, inp.weights["final"]))


def gradient_leaves(inp: Inputs):
    return [inp.x] + (list(inp.state) if inp.state is not None else [])


def check_parity(cfg: Config, dtype, reference: nn.Module, ours: nn.Module, ours_params: list):
    """Outputs, final states and gradients of ``ours`` equal ``reference``'s to the dtype's tolerance."""
    tol = TOLERANCES[dtype]
    if cfg.dropout:
        reference.eval()
        ours.eval()
    out_size = (cfg.proj_size or cfg.H) * cfg.D
    inp = make_inputs(cfg, dtype, out_size)

    out_t, final_t = run_torch(cfg, reference, inp)
    out_o, final_o = run_ours(cfg, ours, inp)

    # outputs
    if cfg.mode == "packed":
        assert isinstance(out_o, PackedSequence)
        torch.testing.assert_close(out_o.data, out_t.data, **tol)
        assert torch.equal(out_o.batch_sizes, out_t.batch_sizes)
        for ours_index, torch_index in ((out_o.sorted_indices, out_t.sorted_indices),
                                        (out_o.unsorted_indices, out_t.unsorted_indices)):
            assert (ours_index is None and torch_index is None) or torch.equal(ours_index, torch_index)
    else:
        assert isinstance(out_o, torch.Tensor)
        assert out_o.shape == out_t.shape
        assert out_o.dtype == dtype
        torch.testing.assert_close(out_o, out_t, **tol)
    if cfg.mode == "lengths":
        steps = torch.arange(cfg.T)
        past_end = steps.unsqueeze(0) >= inp.lengths.unsqueeze(1)                  # (B, T)
        if not cfg.batch_first:
            past_end = past_end.T
        assert torch.count_nonzero(out_o[past_end]) == 0, "outputs past a sequence's end must be zero"

    # final states
    assert len(final_o) == len(final_t) == len(state_sizes(cfg))
    for f_o, f_t in zip(final_o, final_t):
        assert f_o.shape == f_t.shape
        torch.testing.assert_close(f_o, f_t, **tol)

    # gradients w.r.t. input, initial states and every parameter
    leaves = gradient_leaves(inp)
    ref_params = list(reference.parameters())
    assert len(ours_params) == len(ref_params)
    grads_t = torch.autograd.grad(loss_of(cfg, out_t, final_t, inp), leaves + ref_params)
    grads_o = torch.autograd.grad(loss_of(cfg, out_o, final_o, inp), leaves + list(ours_params))
    names = ["x"] + [f"state[{i}]" for i in range(len(leaves) - 1)] + \
        [n for n, _ in reference.named_parameters()]
    for name, g_o, g_t in zip(names, grads_o, grads_t):
        torch.testing.assert_close(g_o, g_t, **tol, msg=lambda m, name=name: f"gradient of {name}: {m}")
    if cfg.mode == "lengths":
        x_grad = grads_o[0]
        past_end_x = (torch.arange(cfg.T).unsqueeze(0) >= inp.lengths.unsqueeze(1))
        if not cfg.batch_first:
            past_end_x = past_end_x.T
        assert torch.count_nonzero(x_grad[past_end_x]) == 0, "inputs past a sequence's end must get no gradient"


def config_id(seed: int) -> str:
    return f"seed{seed}"


# ------------------------------------------------------------------------------------------------
# The drop-ins, both backends, both dtypes
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("seed", SEEDS, ids=config_id)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_dropin_matches_torch_on_random_configs(backend, kind, seed, dtype):
    cfg = draw_config(kind, seed)
    reference = make_torch_module(cfg, dtype)
    ours = make_dropin(cfg, dtype, backend, reference)
    check_parity(cfg, dtype, reference, ours, list(ours.parameters()))


@pytest.mark.parametrize("seed", range(12), ids=config_id)
@pytest.mark.parametrize("kind", KINDS)
def test_reference_dropin_with_autograd_bptt_matches_torch(kind, seed):
    """The drop-ins' reference backend defaults to the hand-derived backward; differentiating the
    step loop itself must give torch's gradients too (the forward equations' own test)."""
    cfg = draw_config(kind, 100 + seed)
    reference = make_torch_module(cfg, torch.float64)
    ours = make_dropin(cfg, torch.float64, "reference", reference)
    ours.bptt = "autograd"
    check_parity(cfg, torch.float64, reference, ours, list(ours.parameters()))


# ------------------------------------------------------------------------------------------------
# rnnkit.Recurrent with the lstm / gru / elman cells
@pytest.mark.parametrize("bptt", ["hand", "autograd"])
@pytest.mark.parametrize("seed", SEEDS, ids=config_id)
@pytest.mark.parametrize("kind", KINDS, ids=["lstm", "gru", "elman"])
def test_reference_recurrent_cells_match_torch_on_random_configs(kind, seed, bptt):
    cfg = draw_config(kind, 200 + seed)
    dtype = DTYPES[seed % 2]
    reference = make_torch_module(cfg, dtype)
    ours = make_recurrent(cfg, dtype, "reference", bptt, reference)
    check_parity(cfg, dtype, reference, ours, recurrent_params_in_torch_order(ours, reference, cfg))


@pytest.mark.parametrize("seed", range(12), ids=config_id)
@pytest.mark.parametrize("kind", KINDS, ids=["lstm", "gru", "elman"])
def test_auto_backend_recurrent_cells_match_torch_on_random_configs(kind, seed):
    cfg = draw_config(kind, 300 + seed)
    dtype = DTYPES[seed % 2]
    reference = make_torch_module(cfg, dtype)
    ours = make_recurrent(cfg, dtype, "auto", "auto", reference)
    check_parity(cfg, dtype, reference, ours, recurrent_params_in_torch_order(ours, reference, cfg))


# ------------------------------------------------------------------------------------------------
# The reference backend really is rnnkit's own code
def test_reference_backend_never_calls_torch_kernels(monkeypatch):
    """If the reference backend fell back on torch's kernel, the parity tests above would compare
    torch with itself. Disable the kernels and check the reference backend still runs and matches."""
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("torch's fused kernel called by the reference backend")

    for kind in KINDS:
        cfg = draw_config(kind, 7)
        cfg.num_layers, cfg.bidirectional, cfg.mode, cfg.dropout = 2, True, "lengths", 0.0
        reference = make_torch_module(cfg, torch.float64)
        with monkeypatch.context() as patch:
            patch.setattr(native, "_KERNELS", {k: forbidden for k in native._KERNELS})
            ours = make_dropin(cfg, torch.float64, "reference", reference)
            inp = make_inputs(cfg, torch.float64, (cfg.proj_size or cfg.H) * cfg.D)
            out_o, final_o = run_ours(cfg, ours, inp)
            loss_of(cfg, out_o, final_o, inp).backward()
        out_t, final_t = run_torch(cfg, reference, inp)
        torch.testing.assert_close(out_o, out_t, **TOLERANCES[torch.float64])
        for f_o, f_t in zip(final_o, final_t):
            torch.testing.assert_close(f_o, f_t, **TOLERANCES[torch.float64])
    assert calls == []

    # and the patch works: the auto backend does go through the (patched) kernel
    cfg = draw_config("lstm", 3)
    with monkeypatch.context() as patch:
        patch.setattr(native, "_KERNELS", {k: forbidden for k in native._KERNELS})
        ours = rnnkit.LSTM(cfg.I, cfg.H, backend="auto")
        with pytest.raises(AssertionError, match="fused kernel"):
            ours(torch.randn(3, 2, cfg.I))
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------------
# Names, shapes and load_state_dict both ways
@pytest.mark.parametrize("seed", range(8), ids=config_id)
@pytest.mark.parametrize("kind", KINDS)
def test_dropin_parameter_names_and_shapes_equal_torch(kind, seed):
    cfg = draw_config(kind, 400 + seed)
    reference = TORCH_CLASSES[kind](cfg.I, cfg.H, **cfg.torch_kwargs())
    ours = OUR_CLASSES[kind](cfg.I, cfg.H, **cfg.torch_kwargs())
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, p.shape) for n, p in reference.named_parameters()]
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert [[w.shape for w in ws] for ws in ours.all_weights] == \
        [[w.shape for w in ws] for ws in reference.all_weights]
    for attribute in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional"):
        assert getattr(ours, attribute) == getattr(reference, attribute), attribute
    if kind == "lstm":
        assert ours.proj_size == reference.proj_size
    if kind == "rnn":
        assert ours.nonlinearity == reference.nonlinearity
    ours.flatten_parameters()                  # torch.nn code calls it; it must change nothing
    assert [(n, p.shape) for n, p in ours.named_parameters()] == \
        [(n, p.shape) for n, p in reference.named_parameters()]


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("seed", range(6), ids=config_id)
@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_from_torch_into_rnnkit_gives_torch_results(kind, seed, backend):
    cfg = draw_config(kind, 500 + seed)
    cfg.dropout = 0.0
    reference = make_torch_module(cfg, torch.float64)
    ours = OUR_CLASSES[kind](cfg.I, cfg.H, dtype=torch.float64, backend=backend, **cfg.torch_kwargs())
    result = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for (name, p_o), (name_t, p_t) in zip(ours.named_parameters(), reference.named_parameters()):
        assert name == name_t and torch.equal(p_o, p_t)
    check_parity(cfg, torch.float64, reference, ours, list(ours.parameters()))


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("seed", range(6), ids=config_id)
@pytest.mark.parametrize("kind", KINDS)
def test_load_state_dict_from_rnnkit_into_torch_gives_rnnkit_results(kind, seed, backend):
    cfg = draw_config(kind, 600 + seed)
    cfg.dropout = 0.0
    torch.manual_seed(seed)
    ours = OUR_CLASSES[kind](cfg.I, cfg.H, dtype=torch.float64, backend=backend, **cfg.torch_kwargs())
    with torch.no_grad():                                  # weights unlike torch's default init
        for p in ours.parameters():
            p.normal_(0, 0.6)
    reference = TORCH_CLASSES[kind](cfg.I, cfg.H, dtype=torch.float64, **cfg.torch_kwargs())
    result = reference.load_state_dict(ours.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for (name, p_o), (name_t, p_t) in zip(ours.named_parameters(), reference.named_parameters()):
        assert name == name_t and torch.equal(p_o, p_t)
    check_parity(cfg, torch.float64, reference, ours, list(ours.parameters()))


def test_random_configs_cover_every_option():
    """The seeded draws above do reach every option the parity tests claim to cover."""
    configs = [draw_config(kind, seed) for kind in KINDS for seed in SEEDS]
    assert {c.num_layers for c in configs} == {1, 2, 3}
    assert {c.bidirectional for c in configs} == {True, False}
    assert {c.batch_first for c in configs} == {True, False}
    assert {c.bias for c in configs} == {True, False}
    assert {c.mode for c in configs} == set(INPUT_MODES)
    assert {c.given_state for c in configs} == {True, False}
    assert any(c.dropout for c in configs)
    assert any(c.enforce_sorted for c in configs) and any(c.mode == "packed" and not c.enforce_sorted
                                                          for c in configs)
    assert {c.nonlinearity for c in configs if c.kind == "rnn"} == {"tanh", "relu"}
    assert any(c.proj_size for c in configs if c.kind == "lstm")
    assert any(not c.proj_size for c in configs if c.kind == "lstm")
    lstm = [c for c in configs if c.kind == "lstm"]
    assert any(c.proj_size and c.bidirectional and c.num_layers > 1 for c in lstm)
    for mode in ("packed", "lengths"):
        for seed in SEEDS:
            cfg = draw_config("gru", seed)
            if cfg.mode == mode and cfg.B > 1:
                inp = make_inputs(cfg, torch.float64, cfg.H * cfg.D)
                if not bool((inp.lengths.diff() <= 0).all()):
                    break
        else:
            pytest.fail(f"no {mode} configuration with unsorted lengths")
