r"""The generated path: any cell's own ``step``, compiled by torch.compile, inside the time loop.

No C++ is written for a cell, a user's own cell included: torch.compile traces the cell's ``step``,
with the loop's masks around it, and its backend writes the kernels (Inductor: C++/OpenMP on the
CPU, Triton on a GPU; nothing here is specific to either). The loop over time stays in Python,
around the compiled function, so a new sequence length never compiles anything.

**What is compiled.** One function, ``_steps``: K consecutive steps of the reference loop
(``rnnkit/engine/loop.py``), K = ``STEPS_PER_CALL`` = 4, unrolled into one graph. A compiled call
costs ~40 µs on the CPU before any arithmetic (dynamo's guards, AOTAutograd's and Inductor's
wrappers), about what the eager step of a small cell costs in all; K steps per call pay it once,
and the pointwise work of the K steps fuses into a few kernels around the recurrent products.
Per step, with d_t the zoneout draw and v_t the ``valid`` flag:

.. math::
    (y, s') = \mathrm{step}(p, u_t, s, m);\qquad
    s' \leftarrow d_t ⊙ s + (1 − d_t) ⊙ s',\ y \leftarrow s'_0 \quad\text{(zoneout: } d_t \sim
    \mathrm{Bernoulli(rate)} \text{ in training, } d_t = \text{rate at evaluation)};\qquad
    s' \leftarrow v_t\,?\,s' : s,\ y \leftarrow v_t\, y

so masks, lengths and zoneout fuse with the cell's own pointwise work. The T mod K steps left at
the end run the same function uncompiled. Zoneout's draws are made before the loop in the reference
loop's order (step by step, state by state, ``rand_like``): under one seed both paths draw the same
masks.

**Compiled once per cell configuration.** The cell is an *argument* of the compiled function, not a
constant: dynamo guards on its class and on the attributes that ``step`` reads (``variant``,
sizes, the nonlinearity...), not on the object, so the four cells of a 2-layer bidirectional
layer, or a second layer of the same configuration, share one compiled graph, and an attribute
the step never reads (an ESN's seed) does not count. Parameters come in ``p``. The batch dimension
is marked dynamic (``maybe_mark_dynamic``) and the feature sizes stay static (a forward step
measured 9 % faster than with ``dynamic=True``: 126 vs 138 µs); a batch of one compiles once more (torch
specialises sizes 0 and 1). Each cell class has its own compiled region (``isolate_recompiles``,
up to 64 graphs), so one class's configurations do not use up another's recompile limit.
``compile_count()`` counts the graphs compiled.

**Backward.** Autograd through the K-step calls: AOTAutograd splits each chunk's graph into a
forward that saves what its backward needs and a compiled backward, which runs BPTT's δ recursion
backwards through the chunk's steps: with δs_t the gradient reaching the state after step t
(from step t + 1, and from the kept states or the final state), δy_t the output's,

.. math::
    (δu_t,\ δs_{t−1},\ δθ_t) = J_tᵀ (δy_t, δs_t),\quad J_t = \frac{∂(y_t, s_t)}{∂(u_t, s_{t−1}, θ)},
    \qquad δθ = Σ_t δθ_t,

each step's vector-Jacobian product being the transposed derivative of the compiled step. Inductor
would form a weight's δθ as a chain of K small products, each copying the accumulator; a graph pass
(``batch_weight_gradients``) makes it one product over the chunk's K·B rows. Gradients reach u, the
initial state and every tensor of ``p`` that requires grad (fixed buffers, an echo state
network's, get none). The alternative the design started from, a sequence-level
``autograd.Function`` whose forward runs the compiled chunk without autograd and whose backward
runs a compiled ``torch.func.vjp`` of the chunk from its saved starting state (recomputing the
chunk: one more recurrent product per step), measured 6-20 % slower on every cell below
(``benchmarks/generated_path.py --compare-backward``), so autograd it is. A compiled backward runs
once per forward (its buffers are donated); a retained graph's second backward and second-order
gradients (``create_graph=True``) go through the reference loop instead (``engine/higher_order.py``).

**Speed** (``python benchmarks/generated_path.py``: training step, B 32, T 100, H 256, 2 threads,
a loaded 2-core host; the built-in kernels and the reference loop in the same run):

========================  ==========  ===========================  ==============
cell                      generated   vs built-in                  reference loop
========================  ==========  ===========================  ==============
user's gated cell         34.5 ms     0.90× the GRU's C++ loop     1.06×
LSTM, layer_norm          75.3 ms     1.45× torch's oneDNN LSTM    1.86×
LSTM, zoneout 0.1         73.4 ms     1.41×                        1.89×
LSTM, recurrent dropout   62.4 ms     1.20×                        1.36×
========================  ==========  ===========================  ==============

**Compile cost**, once per cell configuration and process, forward and backward graphs (Inductor,
K = 4, the first training step minus a steady one, on the same loaded 2-core host): 11-21 s with
an empty Inductor cache (``python benchmarks/generated_path.py --cold``), 3-11 s with Inductor's
on-disk cache warm (``TORCHINDUCTOR_CACHE_DIR``, /tmp/torchinductor_<user> by default: the C++
is not rebuilt, the traces are redone in every process). Against K = 4, K = 8 measured 0-11 %
faster per step for 1.4-1.9× the compile time, K = 2 10-15 % and K = 1 19-36 % slower
(``--steps-per-call 1,2,4,8``).

**When it does not compile.** Inside a torch.compile or torch.export trace (or FX symbolic tracing,
TorchScript tracing) the steps run as plain Python, so that the enclosing compiler sees the loop;
where torch.compile fails for a cell class (a step dynamo cannot trace, the recompile limit, a
backend that cannot build, e.g. Inductor without a C++ compiler), ``run_generated`` warns once and
runs that class's steps uncompiled from then on, which computes the same thing.
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import statically_known_true

from ..cells.base import Params, RecurrentCell, State
from .masks import after_step, draw_zoneout_masks

# The torch.compile backend used when ``run_generated`` is given none: "inductor" writes kernels;
# "aot_eager" traces and partitions the same graphs but runs them with ATen ops (seconds less to
# compile: what most tests use to check the mechanism).
COMPILER = "inductor"

# Steps unrolled into one compiled call (the module docstring has the measurements): more steps per
# call cost less per step and more to compile (benchmarks/generated_path.py --steps-per-call).
STEPS_PER_CALL = 4

_regions: dict[tuple[type, str], object] = {}
_failed: dict[tuple[type, str], str] = {}
_compiled_graphs = 0


def compile_count() -> int:
    """How many graphs the generated path has compiled in this process (one per cell configuration
    and call context: with or without gradient, the options used)."""
    return _compiled_graphs


def run_generated(cell: RecurrentCell, p: Params, u: Tensor, state: State,
                  valid: Tensor | None = None, recurrent_mask: Tensor | None = None,
                  zoneout: float = 0.0, training: bool = False, keep_states: bool = False,
                  compiler: str | None = None
                  ) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, ...] | None]:
    """Run ``cell`` over the projected inputs ``u`` (T, B, G) = ``cell.project_input(p, x)`` from
    ``state`` (each (B, S)), computing what the reference loop computes.

    ``valid`` (T, B) bool: where False the state is held and the output is zero. ``recurrent_mask``
    (B, S) multiplies the previous state in the recurrent product (variational dropout).
    ``zoneout``: each state unit keeps its previous value with this probability while ``training``;
    at evaluation old and new are mixed (``torch.lerp(new, old, rate)``). ``keep_states``: also
    return every step's state, zero past each sequence's end. ``compiler``: the torch.compile
    backend (``COMPILER`` when None).

    Returns outputs (T, B, O), the final state (each (B, S)) and, with ``keep_states``, every
    step's state (each (T, B, S)), else None.
    """
    compiler = compiler or COMPILER
    T = u.shape[0]
    state = tuple(state)
    p = dict(p)
    rate = float(zoneout)
    keep_old = _keep_old(state, T, rate) if rate and training else None            # each (T, B, S)
    valid3 = valid.unsqueeze(-1) if valid is not None else None                     # (T, B, 1)
    options = (rate, bool(training), bool(keep_states))

    run = None if _tracing() else _compiled(type(cell), compiler)
    if run is None or T < STEPS_PER_CALL:
        outputs, state, history = _steps(cell, p, u, state, recurrent_mask, keep_old, valid3, *options)
        return outputs, state, (history if keep_states else None)

    K = STEPS_PER_CALL
    if torch.is_grad_enabled() and (u.requires_grad or any(t.requires_grad for t in p.values())):
        # One compiled graph for every chunk: the first chunk's state must require grad as the
        # later chunks' do (else it is a second graph to compile).
        state = tuple(s if s.requires_grad else s.detach().requires_grad_() for s in state)
    u_chunks = u.split(K)                                                       # each (K, B, G)
    mask_chunks = zip(*(m.split(K) for m in keep_old)) if keep_old is not None else None
    valid_chunks = valid3.split(K) if valid3 is not None else None
    full = T // K
    ys, histories = [], []
    for c in range(len(u_chunks)):
        keep_c = next(mask_chunks) if mask_chunks is not None else None
        valid_c = valid_chunks[c] if valid_chunks is not None else None
        if c < full and (type(cell), compiler) not in _failed:
            result = _call(run, cell, compiler, p, u_chunks[c], state, recurrent_mask, keep_c, valid_c,
                           options)
        else:                                                                   # T mod K steps
            result = _steps(cell, p, u_chunks[c], state, recurrent_mask, keep_c, valid_c, *options)
        y, state, history = result
        ys.append(y)
        histories.append(history)
    outputs = torch.cat(ys)                                                     # (T, B, O)
    all_states = tuple(torch.cat(h) for h in zip(*histories)) if keep_states else None
    return outputs, state, all_states


def _steps(cell: RecurrentCell, p: Params, u: Tensor, state: State, recurrent_mask: Tensor | None,
           keep_old: tuple[Tensor, ...] | None, valid: Tensor | None, rate: float, training: bool,
           keep_states: bool) -> tuple[Tensor, State, tuple[Tensor, ...]]:
    """The reference loop over the K = u.shape[0] steps of u (K, B, G): ``keep_old`` the zoneout
    draws (each (K, B, S) bool), ``valid`` (K, B, 1). Returns the outputs (K, B, O), the last state
    and, with ``keep_states``, every step's state (each (K, B, S); else an empty tuple)."""
    ys, history = [], []
    for k in range(u.shape[0]):
        y, new = cell.step(p, u[k], state, recurrent_mask)
        y, state = after_step(state, new, y, rate, training,
                              tuple(d[k] for d in keep_old) if keep_old is not None else None,
                              valid[k] if valid is not None else None)       # valid[k]: (B, 1)
        ys.append(y)
        if keep_states:
            history.append(state if valid is None else tuple(s * valid[k] for s in state))
    kept = tuple(torch.stack(h) for h in zip(*history)) if keep_states else ()
    return torch.stack(ys), state, kept


def _keep_old(state: State, T: int, rate: float) -> tuple[Tensor, ...]:
    """Zoneout's keep-the-old-value masks for all T steps (each (T, B, S) bool), drawn as every path
    draws them (``rnnkit.engine.masks``), so that one seed gives all paths the same masks."""
    return tuple(m.bool() for m in draw_zoneout_masks(state, T, rate))


def _tracing() -> bool:
    """Whether this call is being traced by torch.compile/torch.export, FX or TorchScript, where
    the enclosing compiler should see the plain loop instead of a nested compiled region."""
    return (torch.compiler.is_compiling() or torch.fx._symbolic_trace.is_fx_symbolic_tracing()
            or torch.jit.is_tracing())


def _compiled(cell_class: type, compiler: str):
    """The compiled ``_steps`` for a cell class and backend, or None where it failed before."""
    key = (cell_class, compiler)
    if key in _failed:
        return None
    if key not in _regions:
        def backend(gm, example_inputs):
            global _compiled_graphs
            _compiled_graphs += 1
            if compiler == "inductor":
                from torch._inductor.compile_fx import compile_fx
                return compile_fx(gm, example_inputs,
                                  config_patches={"post_grad_custom_pre_pass": _weight_gradient_pass()})
            return torch._dynamo.lookup_backend(compiler)(gm, example_inputs)
        _regions[key] = torch.compile(_steps, backend=backend, fullgraph=True, dynamic=None,
                                      isolate_recompiles=True, recompile_limit=64)
    return _regions[key]


def _call(run, cell, compiler, p, u, state, recurrent_mask, keep_old, valid, options):
    """One compiled call, the batch dimension of every input marked dynamic; where torch.compile
    fails for this cell class, warn once and run the chunk uncompiled from then on."""
    masks = (recurrent_mask,) if recurrent_mask is not None else ()
    for tensor in (u, *state, *masks, *(keep_old or ()), *((valid,) if valid is not None else ())):
        torch._dynamo.maybe_mark_dynamic(tensor, tensor.dim() - 2)              # the B of (…, B, S)
    try:
        return run(cell, p, u, state, recurrent_mask, keep_old, valid, *options)
    except torch._dynamo.exc.TorchDynamoException as error:
        # An error of the step itself (a wrong shape) raises here again, uncompiled, and leaves the
        # class compiling; one that only torch.compile meets turns the class's compiling off.
        result = _steps(cell, p, u, state, recurrent_mask, keep_old, valid, *options)
        key = (type(cell), compiler)
        _failed[key] = f"{type(error).__name__}: {error}".splitlines()[0]
        warnings.warn(f"rnnkit's generated path could not compile {type(cell).__name__}.step with "
                      f"torch.compile(backend={compiler!r}) ({_failed[key]}); running the plain loop, "
                      f"which computes the same thing", RuntimeWarning, stacklevel=3)
        return result


@functools.cache
def _weight_gradient_pass():
    """``batch_weight_gradients`` as an Inductor graph pass (imported here, when a compile needs it:
    importing torch._inductor costs ~1 s)."""
    from torch._inductor.custom_graph_pass import CustomGraphPass

    class BatchedWeightGradients(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            batch_weight_gradients(graph)

        def uuid(self) -> str:                                                  # Inductor's cache key
            return "rnnkit.generated.batch_weight_gradients.1"

    return BatchedWeightGradients()


def batch_weight_gradients(graph: torch.fx.Graph) -> None:
    r"""Rewrite each sum of products Σ_k A_kᵀ B_k in ``graph`` as one product
    [A_1; …; A_K]ᵀ [B_1; …; B_K].

    In a chunk's backward a recurrent weight's gradient is the sum over its K steps of
    δa_kᵀ h_{k−1}, each a product over only B rows; Inductor would run them as a chain of
    ``addmm(acc, δa_kᵀ, h_{k−1}, out=new)``, each copying the (G, P) accumulator first. One product
    over the K·B rows stacked does the same arithmetic in one call (as the hand BPTT's
    ``summed_outer`` does over all T·B rows): a plain LSTM's training step measured 11 % faster on one
    thread (B 32, T 100, H 256), about the same on two. Only sums whose every term is such a
    product, used nowhere else, are rewritten."""
    changed = False
    for node in list(graph.nodes):
        if not _is_add(node) or any(_is_add(user) and len(node.users) == 1 for user in node.users):
            continue                                                            # not the root of a sum
        terms = [_product_operands(leaf) for leaf in _summands(node, node)]
        if len(terms) < 2 or any(t is None for t in terms) or not _stackable(terms):
            continue
        values = [(a.meta["val"], b.meta["val"]) for a, b in terms]
        fake_mode = torch._guards.detect_fake_mode([v for pair in values for v in pair])
        aten = torch.ops.aten
        with graph.inserting_before(node):
            a = graph.call_function(aten.cat.default, ([a for a, _ in terms], 0))           # (K·B, G)
            b = graph.call_function(aten.cat.default, ([b for _, b in terms], 0))           # (K·B, P)
            a_t = graph.call_function(aten.permute.default, (a, [1, 0]))                   # (G, K·B)
            product = graph.call_function(aten.mm.default, (a_t, b))                       # (G, P)
        with fake_mode:
            a.meta["val"] = torch.cat([va for va, _ in values])
            b.meta["val"] = torch.cat([vb for _, vb in values])
            a_t.meta["val"] = a.meta["val"].permute(1, 0)
            product.meta["val"] = a_t.meta["val"] @ b.meta["val"]
        node.replace_all_uses_with(product)
        changed = True
    if changed:
        graph.eliminate_dead_code()


def _is_add(node) -> bool:
    return (isinstance(node, torch.fx.Node) and node.op == "call_function"
            and node.target is torch.ops.aten.add.Tensor and len(node.args) == 2 and not node.kwargs
            and all(isinstance(arg, torch.fx.Node) for arg in node.args))


def _summands(node, root) -> list:
    """The terms of the sum rooted at ``root``: inner additions used only by the sum are opened."""
    if _is_add(node) and (node is root or len(node.users) == 1):
        return _summands(node.args[0], root) + _summands(node.args[1], root)
    return [node]


def _product_operands(node):
    """(A, B) for a node mm(permute(A, [1, 0]), B) used only once, else None."""
    if not (node.op == "call_function" and node.target is torch.ops.aten.mm.default and len(node.users) == 1):
        return None
    lhs, rhs = node.args
    if (isinstance(lhs, torch.fx.Node) and lhs.op == "call_function"
            and lhs.target is torch.ops.aten.permute.default and list(lhs.args[1]) == [1, 0]):
        return lhs.args[0], rhs
    return None


def _stackable(terms) -> bool:
    """Whether the A's (and the B's) can be stacked along their first dimension."""
    for index in (0, 1):
        values = [pair[index].meta.get("val") for pair in terms]
        if any(not isinstance(v, Tensor) or v.dim() != 2 for v in values):
            return False
        first = values[0]
        if any(v.dtype != first.dtype or v.device != first.device
               or not statically_known_true(v.shape[1] == first.shape[1]) for v in values):
            return False
    return True
