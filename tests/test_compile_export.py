"""torch.compile and torch.export see through rnnkit.Recurrent: the compiled loops are torch custom
operators (rnnkit.engine.ops) and the layer's handling of lengths has no data-dependent branch, so a
layer with lengths is one graph, and the graph computes what the eager layer computes."""
import pytest
import torch

import rnnkit
from rnnkit.engine import fused, ops

pytestmark = pytest.mark.skipif(not fused.available(), reason="rnnkit._fused is not built (tests/test_fused.py "
                                                               "fails on that)")

# (cell, options, the custom op its layer runs with lengths on the CPU)
LAYERS = [("lstm", {"variant": "vanilla"}, "lstm_family_forward"), ("lstm", {}, "lstm_family_forward"),
          ("gru", {}, "gru_forward"), ("mingru", {}, "minimal_scan_forward")]
IDS = ["lstm-vanilla", "lstm-standard", "gru", "mingru"]
I, H = 3, 5


def _layer(name: str, options: dict) -> rnnkit.Recurrent:
    torch.manual_seed(0)
    layer = rnnkit.Recurrent(name, I, H, num_layers=2, bidirectional=True, **options)
    with torch.no_grad():                                     # away from the initial values
        for p in layer.parameters():
            p.normal_(0, 0.5)
    return layer


def _batch(T: int, B: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (T, B, I) and lengths (B,) spread over 1..T, one full and one of a single step."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0], lengths[-1] = T, 1
    return torch.randn(T, B, I, generator=g), lengths


def _outputs_and_gradients(layer, x, lengths):
    x = x.clone().requires_grad_()
    out, final = layer(x, lengths=lengths)
    final = final if isinstance(final, tuple) else (final,)
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g)).sum() + sum((f * torch.randn(f.shape, generator=g)).sum()
                                                                  for f in final)
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return (out, *final, *grads)


@pytest.mark.parametrize("name,options,op", LAYERS, ids=IDS)
def test_a_layer_with_lengths_is_one_graph_that_holds_the_compiled_loop(name, options, op):
    layer = _layer(name, options)
    x, lengths = _batch(7, 4, seed=2)
    explanation = torch._dynamo.explain(layer)(x, lengths=lengths)
    assert explanation.graph_break_count == 0, [str(r.reason) for r in explanation.break_reasons]
    targets = {str(node.target) for graph in explanation.graphs for node in graph.graph.nodes}
    assert f"rnnkit.{op}.default" in targets, f"the compiled loop rnnkit::{op} is not in the graph"


# AOTAutograd on every layer; Inductor, whose C++ compile takes tens of seconds, on one
COMPILED = [(*layer, "aot_eager") for layer in LAYERS] + [("gru", {}, "gru_forward", "inductor")]


@pytest.mark.parametrize("name,options,op,backend", COMPILED, ids=[f"{i}-aot_eager" for i in IDS] + ["gru-inductor"])
def test_the_compiled_layer_equals_eager_in_outputs_and_gradients(name, options, op, backend):
    layer = _layer(name, options)
    x, lengths = _batch(7, 4, seed=3)
    compiled = torch.compile(layer, backend=backend, fullgraph=True)
    for ours, eager in zip(_outputs_and_gradients(compiled, x, lengths), _outputs_and_gradients(layer, x, lengths)):
        torch.testing.assert_close(ours, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,options,op", LAYERS, ids=IDS)
def test_the_exported_layer_runs_other_batch_sizes_and_lengths_as_eager(name, options, op):
    layer = _layer(name, options).eval()
    x, lengths = _batch(7, 3, seed=4)
    batch, steps = torch.export.Dim("batch", min=2, max=64), torch.export.Dim("steps", min=2, max=256)
    with torch.no_grad():
        program = torch.export.export(layer, (x,), {"lengths": lengths},
                                      dynamic_shapes={"x": {0: steps, 1: batch}, "lengths": {0: batch}})
    assert f"rnnkit.{op}.default" in {str(node.target) for node in program.graph.nodes}
    exported = program.module()
    for T, B in [(11, 5), (4, 2)]:
        x, lengths = _batch(T, B, seed=T)
        with torch.no_grad():
            for ours, eager in zip(exported(x, lengths=lengths), layer(x, lengths=lengths)):
                torch.testing.assert_close(ours, eager, atol=1e-5, rtol=1e-5)


# ----- the operators, each checked by torch.library.opcheck on the arguments a layer gives it -----------
OP_CALLS = [("lstm", {"variant": "vanilla"}), ("lstm", {"variant": "fgr"}), ("lstm", {"variant": "cifg"}),
            ("gru", {"variant": "original"}), ("minlstm", {})]


def _calls_of(layer, x, lengths) -> list:
    """Every (op, args) the layer's forward and backward pass to rnnkit.engine.ops.call."""
    calls, real = [], ops.call
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops, "call", lambda op, *args: calls.append((op, args)) or real(op, *args))
        out, _ = layer(x, lengths=lengths)
        out.sum().backward()
    return calls


def _fresh(value, grad: bool):
    if not isinstance(value, torch.Tensor):
        return value
    copy = value.detach().clone()
    return copy.requires_grad_() if grad and copy.is_floating_point() else copy


@pytest.mark.parametrize("name,options", OP_CALLS, ids=["-".join([n, *o.values()]) for n, o in OP_CALLS])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_each_op_passes_opcheck(name, options, with_lengths):
    layer = rnnkit.Recurrent(name, I, H, **options)
    x, lengths = _batch(6, 3, seed=5)
    calls = _calls_of(layer, x, lengths if with_lengths else None)
    forward_ops = {ops.lstm_family_forward, ops.gru_forward, ops.minimal_scan_forward}
    assert {op for op, _ in calls} & forward_ops and len({op for op, _ in calls}) == 2, \
        "the layer did not run a compiled loop forward and backward"
    for op, args in calls:
        grad = op in forward_ops                               # the backward ops have no gradient of their own
        torch.library.opcheck(op, tuple(_fresh(a, grad) for a in args))


def test_lstm_and_gru_ops_refuse_lengths_that_are_not_sorted_longest_first():
    u, h0 = torch.randn(3, 2, 15), torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"lengths must be sorted longest first .* got \[1, 3\]"):
        ops.gru_forward(u, h0, torch.randn(15, 5), None, torch.tensor([1, 3]), False)
