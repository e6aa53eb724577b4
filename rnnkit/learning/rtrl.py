r"""Real-time recurrent learning: the exact gradient, online, by carrying ∂s_t/∂θ forward in time.

R. J. Williams, D. Zipser, "A Learning Algorithm for Continually Running Fully Recurrent Neural
Networks", Neural Computation 1(2), 1989.

A cell (any ``rnnkit.cells`` cell) with trained parameters θ — all its trained tensors flattened
into one vector of P numbers, in the cell's parameter order — maps the previous state and the
input to the new state; an optional readout R with parameters φ and a loss give one loss per step:

    s_t = F(θ, s_{t−1}, x_t),        ℓ_t = loss(R(y_t), target_t),

where s_t holds S numbers: every state tensor of the cell, flattened and concatenated (h_t for the
Elman and GRU cells, [h_t; c_t] for the LSTM), and y_t is the cell's output at step t (h_t).

**Sensitivities.** The total derivative of the state with respect to θ, through every earlier step,
M_t = ds_t/dθ (S × P), obeys Williams & Zipser's recursion (their p^k_{ij}):

    M_t = D_t M_{t−1} + I_t,     D_t = ∂F/∂s_{t−1}  (S × S),     I_t = ∂F/∂θ  (S × P),     M_0 = 0

(M_0 = 0: the initial state does not depend on θ). D_t and I_t are the Jacobians of one step,
taken at (θ, s_{t−1}, x_t) with ``torch.func.jacrev``, so any cell is covered without derivatives
by hand.

**Gradient at step t.** By the chain rule, with ∂ℓ_t/∂s_t the error at the state,

    dℓ_t/dθ = (∂ℓ_t/∂s_t) M_t
            = (∂ℓ_t/∂s_t) I_t + ((∂ℓ_t/∂s_t) D_t) M_{t−1}
            = ∂ℓ_t/∂θ |_{s_{t−1} held fixed}  +  (∂ℓ_t/∂s_{t−1}) M_{t−1},
    dℓ_t/dφ = ∂ℓ_t/∂φ.

The code computes the last line: one autograd pass through step t alone, from the detached
s_{t−1}, gives the direct term ∂ℓ_t/∂θ, the readout's gradient and ∂ℓ_t/∂s_{t−1}; a vector–matrix
product with M_{t−1} adds everything older. (This form needs nothing of how y_t depends on s_t.)
Summed over the steps, Σ_t dℓ_t/dθ is BPTT's gradient exactly: both multiply the same Jacobians,
RTRL from the first step forwards, BPTT from the last step backwards.

**Cost.** Memory: M_t, S × P numbers per sequence, whatever the length T (no graph is kept across
steps: the state and M_t are detached tensors). Time per step: the product D_t M_{t−1}, S² P
multiply-adds; forming D_t and I_t takes S vector–Jacobian products, O(S P). For an Elman network
of n units and I inputs, S = n and P = n² + n I + 2n, so O(n⁴) time per step and O(n³) memory,
against BPTT's O(n²) per step and O(n T) memory (``benchmarks/rtrl_cost.py`` measures the growth).

**Online training.** Williams & Zipser update the weights at every step with dℓ_t/dθ while M_t
keeps running (``train_online``). M_t is then the sensitivity to the parameters as they were at
each earlier step, not to the current ones: the gradient is exact only while θ is fixed, and close
to it when the learning rate is small, as Williams & Zipser note.

Shapes: B batch (each sequence has its own M_t), S state numbers, P trained cell parameters,
I input size.

Example:

>>> import torch, rnnkit
>>> from rnnkit.learning import RTRL
>>> cell, readout = rnnkit.cells.create("lstm", 3, 16), torch.nn.Linear(16, 2)
>>> rtrl = RTRL(cell, readout)
>>> rtrl.reset(batch_size=4)
>>> x, y = torch.randn(10, 4, 3), torch.randn(10, 4, 2)          # x (T, B, I), targets (T, B, K)
>>> for x_t, y_t in zip(x, y):
...     output, loss = rtrl.step(x_t, y_t, torch.nn.functional.mse_loss)   # dℓ_t/dθ into .grad
>>> output.shape, rtrl.sensitivity.shape                         # (B, K); M_t (B, S, P): S = 2H
(torch.Size([4, 2]), torch.Size([4, 32, 1344]))
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..cells.base import RecurrentCell, State

LossFn = Callable[..., Tensor]   # loss_fn(output, target) -> scalar, or loss_fn(output) without a target


class ParameterLayout:
    """How the cell's trained tensors sit in the flat vector θ (P,), and back.

    The trained tensors are the cell's parameters less its ``fixed_parameters`` (the echo state
    cell's reservoir) and any with ``requires_grad=False``; they enter θ in ``cell.params()`` order.
    """

    def __init__(self, cell: RecurrentCell) -> None:
        p = cell.params()
        self.names = [n for n in p if n not in cell.fixed_parameters and p[n].requires_grad]
        if not self.names:
            raise ValueError(f"cell: {type(cell).__name__} has no trained parameters to learn")
        self.fixed = [n for n in p if n not in self.names]
        self.shapes = [tuple(p[n].shape) for n in self.names]
        self.numels = [p[n].numel() for n in self.names]
        self.size = sum(self.numels)                                            # P

    def flatten(self, p: dict[str, Tensor]) -> Tensor:
        """θ (P,), detached, from the cell's tensors by name (other names in ``p`` are ignored)."""
        return torch.cat([p[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Views of θ (…, P) shaped as the cell's tensors (leading dimensions kept), by name."""
        lead = theta.shape[:-1]
        pieces = theta.split(self.numels, dim=-1)
        return {n: piece.reshape(*lead, *shape) for n, piece, shape in zip(self.names, pieces, self.shapes)}


class RTRL:
    """Exact real-time recurrent learning for one cell and an optional readout (module docstring).

    ``reset(batch_size)``, then ``step(x_t, target_t, loss_fn)`` once per time step; every step's
    gradient dℓ_t/dθ is added to the ``.grad`` of the cell's and the readout's parameters at once,
    so after step t they hold the gradient of ℓ_1 + … + ℓ_t (plus whatever was there).

    Args:
        cell: a cell of ``rnnkit.cells`` that owns its parameters, e.g.
            ``rnnkit.cells.create("gru", I, H)`` or ``rnnkit.Recurrent(...).cells[0]``.
        readout: optional module applied to the cell's output y_t (B, O) before the loss, e.g.
            ``nn.Linear(O, K)``; its gradient is the step's own (it has no recurrence).
    """

    def __init__(self, cell: RecurrentCell, readout: nn.Module | None = None) -> None:
        if not isinstance(cell, RecurrentCell):
            raise TypeError(f"cell must be an rnnkit.cells.RecurrentCell, got {type(cell).__name__}")
        if not cell._own_parameters:
            raise ValueError("cell: RTRL needs a cell that owns its parameters (own_parameters=True)")
        if readout is not None and not callable(readout):
            raise TypeError(f"readout must be callable (e.g. an nn.Linear) or None, got {type(readout).__name__}")
        self.cell, self.readout = cell, readout
        self.layout = ParameterLayout(cell)
        self.state_sizes = tuple(cell.state_sizes())
        self.batch_size: int | None = None

    # ----- state ----------------------------------------------------------------------------
    def reset(self, batch_size: int, state: State | Tensor | None = None) -> None:
        """Start B = ``batch_size`` new sequences from ``state`` (a tuple of (B, S_i) tensors in
        ``cell.state_names`` order, or one tensor for a one-state cell; None for zeros), with
        M_0 = 0."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        like = self.cell.params()[self.layout.names[0]]
        if state is None:
            state = self.cell.initial_state(batch_size, device=like.device, dtype=like.dtype)
        self.batch_size = batch_size
        self.state = self._flat_state(state)                                    # s_0 (B, S)
        self._reset_sensitivities(like)

    def _reset_sensitivities(self, like: Tensor) -> None:
        B, S, P = self.batch_size, self.state.shape[1], self.layout.size
        self.sensitivity = like.new_zeros(B, S, P)                              # M_0 (B, S, P)

    def _flat_state(self, state: State | Tensor) -> Tensor:
        """The state tuple as one detached (B, S) tensor, checked against the cell's sizes."""
        state = (state,) if isinstance(state, Tensor) else tuple(state)
        expected = [(self.batch_size, size) for size in self.state_sizes]
        got = [tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__ for s in state]
        if got != expected:
            raise ValueError(f"state: expected {len(expected)} tensor(s) of shape(s) {expected} "
                             f"({', '.join(self.cell.state_names)}), got {got}")
        return torch.cat(state, dim=-1).detach()                                # (B, S)

    def _split_state(self, s: Tensor) -> State:
        """(…, S) -> the cell's state tuple, each (…, S_i)."""
        return tuple(s.split(self.state_sizes, dim=-1))

    # ----- one step ---------------------------------------------------------------------------
    def step(self, x_t: Tensor, target_t: Tensor | None = None, loss_fn: LossFn | None = None
             ) -> tuple[Tensor, Tensor | None]:
        """Advance every sequence by one step from x_t (B, I); with a loss, add dℓ_t/dθ and dℓ_t/dφ
        to the parameters' ``.grad``.

        ``loss_fn(output, target_t)`` (or ``loss_fn(output)`` when ``target_t`` is None) must
        return a scalar; ``output`` is the readout's output, or y_t without a readout. Without
        ``loss_fn`` the step only advances the state and M_t.

        Returns:
            (output (B, ·), ℓ_t or None), both detached.
        """
        output, loss, grads = self.step_gradients(x_t, target_t, loss_fn)
        if grads is not None:
            for name, tensor in self.trained_tensors().items():
                tensor.grad = grads[name].clone() if tensor.grad is None else tensor.grad + grads[name]
        return output, loss

    def step_gradients(self, x_t: Tensor, target_t: Tensor | None = None, loss_fn: LossFn | None = None
                       ) -> tuple[Tensor, Tensor | None, dict[str, Tensor] | None]:
        """``step`` without touching ``.grad``: returns (output, ℓ_t, {name: dℓ_t/d(tensor)}) with
        the cell's tensors by their names and the readout's as ``"readout.<name>"`` (None for the
        last two without a loss)."""
        x_t = self._check_step(x_t, target_t, loss_fn)
        p = self.cell.params()
        theta = self.layout.flatten(p)                                          # θ (P,)

        output, loss, new_state, direct, d_state = self._forward_step(p, x_t, target_t, loss_fn)
        grads = None
        if loss is not None:
            # dℓ_t/dθ = ∂ℓ_t/∂θ|direct + (∂ℓ_t/∂s_{t−1}) M_{t−1}, summed over the batch; dℓ_t/dφ direct.
            d_theta = self.layout.flatten(direct) + self._credit(d_state)       # (P,)
            grads = {**direct, **self.layout.unflatten(d_theta)}

        self._advance(theta, p, x_t)                                            # M_{t−1} -> M_t
        self.state = new_state                                                  # s_t (B, S)
        return output, loss, grads

    def _forward_step(self, p, x_t, target_t, loss_fn):
        """Step t with autograd from the detached s_{t−1}: the output, ℓ_t, the new state s_t (B, S),
        the direct gradients {name: ∂ℓ_t/∂(tensor)} (cell and readout) and ∂ℓ_t/∂s_{t−1} (B, S)."""
        need_grad = loss_fn is not None
        s_prev = self.state.clone().requires_grad_(need_grad)                   # (B, S)
        with torch.set_grad_enabled(need_grad):
            u_t = self.cell.project_input(p, x_t.unsqueeze(0))[0]               # (B, G)
            y_t, new_state = self.cell.step(p, u_t, self._split_state(s_prev))
            output = y_t if self.readout is None else self.readout(y_t)
            new_state = torch.cat(new_state, dim=-1).detach()                   # (B, S)
            if not need_grad:
                return output.detach(), None, new_state, None, None
            loss = loss_fn(output) if target_t is None else loss_fn(output, target_t)
            if not isinstance(loss, Tensor) or loss.dim() != 0:
                raise ValueError("loss_fn must return a scalar tensor, got "
                                 f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}")
            named = self.trained_tensors()
            grads = torch.autograd.grad(loss, [*named.values(), s_prev], allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, [*named.values(), s_prev])]
        direct = dict(zip(named, grads[:-1]))
        return output.detach(), loss.detach(), new_state, direct, grads[-1]

    # ----- what an approximation replaces (rnnkit.learning.approx_rtrl) -----------------------------
    def _credit(self, d_state: Tensor) -> Tensor:
        """Σ_b (∂ℓ_t/∂s_{t−1})_b M_{t−1, b}: (B, S) -> (P,)."""
        return torch.einsum("bs,bsp->p", d_state, self.sensitivity)

    def _advance(self, theta: Tensor, p: dict[str, Tensor], x_t: Tensor) -> None:
        """M_t = D_t M_{t−1} + I_t, with D_t and I_t from ``torch.func.jacrev`` per sequence."""
        transition = self._transition(p)
        jacobians = torch.func.vmap(torch.func.jacrev(transition, argnums=(0, 1)), in_dims=(None, 0, 0))
        immediate, recurrent = jacobians(theta, self.state, x_t.detach())      # I_t (B, S, P), D_t (B, S, S)
        self.sensitivity = torch.baddbmm(immediate, recurrent, self.sensitivity)   # M_t (B, S, P)

    def _transition(self, p: dict[str, Tensor]) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """F(θ, s_{t−1}, x_t) -> s_t for one sequence: θ (P,), s_{t−1} (S,), x_t (I,) -> (S,);
        the fixed tensors of ``p`` are constants."""
        fixed = {n: p[n].detach() for n in self.layout.fixed}

        def transition(theta: Tensor, s_prev: Tensor, x_t: Tensor) -> Tensor:
            q = {**self.layout.unflatten(theta), **fixed}
            u_t = self.cell.project_input(q, x_t.view(1, 1, -1))[0]             # (1, G)
            _, state = self.cell.step(q, u_t, self._split_state(s_prev.view(1, -1)))
            return torch.cat(state, dim=-1).view(-1)                            # (S,)
        return transition

    # ----- helpers ----------------------------------------------------------------------------
    def trained_tensors(self) -> dict[str, Tensor]:
        """The tensors that get gradients: the cell's trained ones by name (θ), then the
        readout's parameters as ``"readout.<name>"`` (φ)."""
        p = self.cell.params()
        named = {n: p[n] for n in self.layout.names}
        if isinstance(self.readout, nn.Module):
            named.update((f"readout.{n}", t) for n, t in self.readout.named_parameters() if t.requires_grad)
        return named

    def _check_step(self, x_t, target_t, loss_fn) -> Tensor:
        if self.batch_size is None:
            raise RuntimeError("call reset(batch_size) before the first step")
        expected = (self.batch_size, self.cell.input_size)
        if not isinstance(x_t, Tensor) or tuple(x_t.shape) != expected:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must be one step of shape (B, I) = {expected}, got {got}")
        if target_t is not None and loss_fn is None:
            raise ValueError("target_t was given without a loss_fn to compare the output with")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        return x_t


# ----- whole sequences -------------------------------------------------------------------------
def rtrl_gradient(cell: RecurrentCell, x: Tensor, loss_fn: LossFn, targets: Tensor | None = None, *,
                  readout: nn.Module | None = None, state: State | Tensor | None = None,
                  learner: Callable[[RecurrentCell, nn.Module | None], RTRL] = RTRL) -> dict[str, Tensor]:
    """d(Σ_t ℓ_t)/d(every trained tensor) over the sequence x (T, B, I), computed forwards by RTRL.

    ℓ_t = ``loss_fn(output_t, targets[t])`` (or ``loss_fn(output_t)`` without ``targets``), with
    output_t the readout of y_t; ``.grad`` is left alone. ``learner(cell, readout)``: RTRL, or an
    approximation with the same interface (``rnnkit.learning.UORO``).

    Returns:
        {name: gradient}: the cell's tensors by their names, the readout's as ``"readout.<name>"``.
    """
    T = _check_sequence(x, targets)
    rtrl = learner(cell, readout)
    rtrl.reset(x.shape[1], state)
    total: dict[str, Tensor] = {}
    for t in range(T):
        _, _, grads = rtrl.step_gradients(x[t], None if targets is None else targets[t], loss_fn)
        for name, grad in grads.items():
            total[name] = grad if name not in total else total[name] + grad
    return total


def train_online(cell: RecurrentCell, readout: nn.Module | None, x: Tensor, targets: Tensor,
                 optimizer: torch.optim.Optimizer, loss_fn: LossFn, *,
                 state: State | Tensor | None = None) -> Tensor:
    """Williams & Zipser's online learning: one optimiser step after every time step.

    For t = 1 … T: zero the gradients, run RTRL's step t on x[t] (B, I) against targets[t] (which
    puts dℓ_t/dθ and dℓ_t/dφ into ``.grad``), and step the optimiser. The sensitivities are carried
    across the updates, which is exact only for a fixed θ (module docstring, "Online training").

    Returns:
        The loss of every step, (T,), each measured before that step's update.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    T = _check_sequence(x, targets)
    rtrl = RTRL(cell, readout)
    rtrl.reset(x.shape[1], state)
    losses = torch.empty(T, dtype=x.dtype)
    for t in range(T):
        optimizer.zero_grad()
        _, loss = rtrl.step(x[t], targets[t], loss_fn)
        optimizer.step()
        losses[t] = loss
    return losses


def _check_sequence(x, targets) -> int:
    """Check x (T, B, I) and targets (T, …); return T."""
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a sequence of shape (T, B, I) with T ≥ 1, got {got}")
    if targets is not None and (not isinstance(targets, Tensor) or targets.dim() < 1
                                or targets.shape[0] != x.shape[0]):
        got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"targets must have T={x.shape[0]} steps in dim 0, got {got}")
    return x.shape[0]
