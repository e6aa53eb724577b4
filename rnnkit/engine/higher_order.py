r"""Second-order gradients through the fast paths: their own first-order backward, autograd's for the second.

The fast paths differentiate by hand: the compiled C++ loops and the Python hand BPTT run the δ
recursion of BPTT directly, and the generated path's backward is compiled by AOTAutograd. None of
these backward passes is itself differentiable, yet gradient penalties, Hessian-vector products and
``torch.autograd.gradgradcheck`` differentiate a gradient: ``torch.autograd.grad(loss, x,
create_graph=True)`` then a backward through the result. ``twice_differentiable`` gives a fast path
a second derivative without slowing its first one.

For a layer y = F(z) (z: the input, the initial state, the parameters) and the incoming gradient
g = ∂L/∂y, the first-order backward returns v = J_F(z)ᵀ g. A second backward asks for the
vector-Jacobian product of v(z, g) with a cotangent w = ∂L₂/∂v:

.. math::
    \frac{∂L₂}{∂z} = \frac{∂}{∂z}\big\langle J_F(z)ᵀ g,\ w\big\rangle, \qquad
    \frac{∂L₂}{∂g} = J_F(z)\, w ,

both computed by autograd on the *reference* form of F (``reference_loop``: the cell's ``step`` at every
step, which autograd differentiates any number of times) from detached copies of z and g; autograd
then carries them on to whatever z and g were computed from. Two autograd functions make the wiring:

* ``_Fast`` runs the fast path in its forward, keeping the fast path's own graph inside (from
  detached copies of its inputs); its backward hands the incoming gradient g and the inputs z to
* ``_FirstOrder`` when a graph of the gradient is asked for (``create_graph=True``): its forward is
  the first-order backward (the fast path's hand or compiled backward, through the kept graph), its
  backward the second-order product above. Otherwise the first-order backward runs directly.

Zoneout's masks are random draws: the reference recomputation restores the random generator's state
from before the fast forward, so it draws the same masks (every path draws them in one order,
``engine/masks.py``). Autocast is re-entered with the forward's dtype. Third-order gradients are not
supported (``once_differentiable``: asking raises). Under torch.compile / torch.export the wrapper
is not used: their compiled graphs have no double backward of their own.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

Tensors = Sequence[Tensor | None]


def twice_differentiable(fast: Callable[..., tuple[Tensor, ...]], reference: Callable[..., tuple[Tensor, ...]],
                         inputs: Tensors, *, random: bool = False, autocast: torch.dtype | None = None,
                         retainable: bool = True) -> tuple[Tensor, ...]:
    """``fast(*inputs)``, a tuple of tensors whose autograd graph gives first-order gradients only,
    made differentiable twice with ``reference(*inputs)`` (the same function, differentiable by
    autograd to any order) for the second derivative.

    ``random``: ``fast`` draws from the default generator of the inputs' device (zoneout); the
    reference then replays the same draws. ``autocast``: the autocast dtype in force (the reference is
    recomputed under it). ``retainable=False``: the fast graph cannot be kept for a second backward
    (the generated path's compiled backward frees its buffers); ``backward(retain_graph=True)`` then
    takes the reference's gradient.
    """
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    if not needs_grad or torch.compiler.is_compiling():
        return fast(*inputs)
    device = next(t.device for t in inputs if t is not None)
    plan = _Plan(fast, reference, _rng_state(device) if random else None, device, autocast, retainable)
    return _Fast.apply(plan, *inputs)


class _Plan:
    """What the two autograd functions share: the two forms of the function and how to replay it."""

    def __init__(self, fast, reference, rng_state, device, autocast, retainable) -> None:
        self.fast, self.reference, self.rng_state = fast, reference, rng_state
        self.device, self.autocast, self.retainable = device, autocast, retainable
        self.graph: tuple[list, tuple[Tensor, ...]] | None = None     # the fast path's (leaves, outputs)

    def replay(self, inputs: Tensors) -> tuple[Tensor, ...]:
        """The reference form on ``inputs``, under the forward's random state and autocast."""
        with torch.random.fork_rng(devices=_forked(self.device), enabled=self.rng_state is not None):
            if self.rng_state is not None:
                _set_rng_state(self.device, self.rng_state)
            with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                return self.reference(*inputs)


class _Fast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, plan: _Plan, *inputs):
        with torch.enable_grad():
            leaves = [_leaf(t) for t in inputs]
            outputs = plan.fast(*leaves)
        plan.graph = (leaves, outputs)
        ctx.plan = plan
        ctx.save_for_backward(*inputs)
        ctx.set_materialize_grads(False)
        return tuple(o.detach() for o in outputs)

    @staticmethod
    def backward(ctx, *grads):
        if torch.is_grad_enabled():            # create_graph=True: the gradient gets a graph of its own
            return (None, *_FirstOrder.apply(ctx.plan, len(grads), *grads, *ctx.saved_tensors))
        return (None, *_first_order(ctx.plan, grads, ctx.saved_tensors))


class _FirstOrder(torch.autograd.Function):
    """Forward: the first-order gradients of the inputs. Backward: the second-order product."""

    @staticmethod
    def forward(ctx, plan: _Plan, n_outputs: int, *grads_and_inputs):
        ctx.plan, ctx.n_outputs = plan, n_outputs
        ctx.save_for_backward(*grads_and_inputs)
        return _first_order(plan, grads_and_inputs[:n_outputs], grads_and_inputs[n_outputs:])

    @staticmethod
    @once_differentiable
    def backward(ctx, *cotangents):
        saved = ctx.saved_tensors
        grads, inputs = saved[:ctx.n_outputs], saved[ctx.n_outputs:]
        with torch.enable_grad():
            input_leaves = [_leaf(t) for t in inputs]
            grad_leaves = [_leaf(g) for g in grads]
            first = _vjp(ctx.plan.replay(input_leaves), input_leaves, grad_leaves, create_graph=True)
            terms = [(f, w) for f, w in zip(first, cotangents)
                     if f is not None and w is not None and f.requires_grad]
            wrt = [t for t in input_leaves + grad_leaves if t is not None and t.requires_grad]
            second = torch.autograd.grad([f for f, _ in terms], wrt, [w for _, w in terms],
                                         allow_unused=True) if terms and wrt else [None] * len(wrt)
        by_leaf = dict(zip(map(id, wrt), second))
        return (None, None, *(by_leaf.get(id(t)) if t is not None else None
                              for t in grad_leaves + input_leaves))


def _first_order(plan: _Plan, grads: Tensors, inputs: Tensors) -> tuple[Tensor | None, ...]:
    """Jᵀ g through the fast path's own backward (its kept graph), or through the reference when the
    fast graph was freed (a second backward) or cannot be kept for one."""
    keep_graph = _keeping_graph()
    if plan.graph is None or (keep_graph and not plan.retainable):
        with torch.enable_grad():
            leaves = [_leaf(t) for t in inputs]
            return _vjp(plan.replay(leaves), leaves, grads, create_graph=False)
    leaves, outputs = plan.graph
    if not keep_graph:
        plan.graph = None                                         # free the fast graph's buffers now
    return _vjp(outputs, leaves, grads, create_graph=False, retain_graph=keep_graph)


def _vjp(outputs: Sequence[Tensor], leaves: list, grads: Tensors, *, create_graph: bool,
         retain_graph: bool | None = None) -> tuple[Tensor | None, ...]:
    """Jᵀ g: the gradient of each leaf (None for one that needs none) from the outputs' gradients."""
    pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
    wrt = [t for t in leaves if t is not None and t.requires_grad]
    if not pairs or not wrt:
        return tuple(None for _ in leaves)
    result = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True,
                                 create_graph=create_graph, retain_graph=retain_graph)
    by_leaf = dict(zip(map(id, wrt), result))
    return tuple(by_leaf.get(id(t)) if t is not None else None for t in leaves)


def _leaf(t: Tensor | None) -> Tensor | None:
    """A detached copy of ``t`` (same storage) that needs a gradient where ``t`` does."""
    if t is None:
        return None
    return t.detach().requires_grad_(t.requires_grad)


def _keeping_graph() -> bool:
    """Whether the backward pass running now keeps the graph (``retain_graph=True``)."""
    query = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    return True if query is None else bool(query())


def _forked(device: torch.device) -> list:
    return [] if device.type == "cpu" else [device]


def _rng_state(device: torch.device) -> Tensor:
    if device.type == "cpu":
        return torch.get_rng_state()
    return torch.get_device_module(device.type).get_rng_state(device)


def _set_rng_state(device: torch.device, state: Tensor) -> None:
    if device.type == "cpu":
        torch.set_rng_state(state)
    else:
        torch.get_device_module(device.type).set_rng_state(state, device)
