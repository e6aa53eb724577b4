r"""Truncated backpropagation through time over one long stream, carrying the state across chunks.

Williams & Peng 1990, "An efficient gradient-based algorithm for on-line training of recurrent
network trajectories" (Neural Computation 2(4)), call it BPTT(h; h'); Sutskever (2013) writes
TBPTT(k₁, k₂). A stream x_1 … x_T (T, B, I) with targets y_1 … y_T is read in chunks of k₁ steps.
The forward pass never stops: the state s_t at the end of one chunk is where the next one starts,

    (o_t, s_t) = f_θ(x_t, s_{t−1}),          ℓ_t = loss(o_t, y_t).

After each chunk, ending at step t, one backward pass injects the errors of the chunk's own steps
and follows them back k₂ steps from t, through the chunk and the k₂ − k₁ steps before it:

    g_t = Σ_{τ = t−k₁+1}^{t} ∂ℓ_τ / ∂θ   with s_{t−k₂} held constant (its gradient is cut),

so the error of step τ travels τ − (t − k₂) steps back: between k₂ − k₁ + 1 and k₂. The
parameter update (or, for ``accumulate_gradients``, the sum over chunks) uses g_t. What is cut: every path
from ℓ_τ to θ through a state older than s_{t−k₂}.

* k₂ = k₁ (the common case, ``TBPTT(k)``): the window is the chunk. The chunk is run once from the
  carried state, detached; memory and compute per chunk are those of BPTT over k₁ steps.
* k₂ > k₁: the window reaches k₂ − k₁ steps into the past, which were already run. This
  implementation keeps those steps' inputs and the detached state s_{t−k₂} where the window starts,
  and re-runs the window with autograd from that state (the state at the next window's start is
  taken from the same run, so nothing else is recomputed). Cost per chunk: a forward and a
  backward over k₂ steps instead of k₁, so about k₂/k₁ times the compute of TBPTT(k₁), and memory
  for k₂ − k₁ stored inputs plus the activations of k₂ steps. Williams & Peng store the past
  activations instead of recomputing them; the two agree exactly when the parameters do not change
  between chunks (``accumulate_gradients``). When an optimiser steps after every chunk, the
  re-run uses the current parameters for the whole window (and draws fresh dropout masks), which
  is the gradient of the window as the current network computes it.

A chunk shorter than k₁ (the end of the stream) is backpropagated through itself and the k₂ − k₁
steps before it.

Like Keras's ``stateful=True``, the object keeps the detached state between calls, so a stream can
be fed chunk by chunk (``step``) or whole (``train``, ``accumulate_gradients``). Document
boundaries: ``starts`` (T, B) marks the steps where a stream begins a new document; that stream's
state is zeroed before the step (no value and no gradient crosses the boundary; zeros, also for a
layer with a learned initial state). ``reset(mask)``
zeroes the flagged streams before the next chunk; ``reset()`` forgets everything.

Example:

>>> import torch, rnnkit
>>> from rnnkit.learning import TBPTT
>>> layer, head = rnnkit.Recurrent("lstm", 8, 32), torch.nn.Linear(32, 8)
>>> tbptt = TBPTT(layer, k1=50, head=head)
>>> optimizer = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=1e-3)
>>> x, y = torch.randn(200, 4, 8), torch.randn(200, 4, 8)          # the stream (T, B, I), its targets
>>> result = tbptt.train(x, y, torch.nn.functional.mse_loss, optimizer)
>>> len(result.losses), tbptt.state[0].shape                       # a step per chunk; (h, c) carried on
(4, torch.Size([1, 4, 32]))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

State = Any   # a tensor, a (nested) tuple or list of tensors, or None for the model's initial state
Model = Callable[[Tensor, State], "tuple[Tensor, State]"]
LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class ChunkResult:
    """What one chunk gave: its loss and its outputs (detached)."""
    loss: float
    output: Tensor                      # (m, B, ·), the head's output when there is a head


@dataclass
class StreamResult:
    """What a whole stream gave: one loss per chunk, and every output when asked for."""
    losses: list[float]
    outputs: Tensor | None = None       # (T, B, ·) with ``keep_outputs=True``


@dataclass
class _Segment:
    """Steps run by one call of the model; ``starts`` (B,) zeroes those streams before them."""
    x: Tensor                           # (n, B, I), detached
    starts: Tensor | None               # (B,) bool, or None when no stream starts here


class TBPTT:
    """Truncated BPTT(k₁, k₂) with the state carried across chunks and calls (see module docstring).

    Args:
        model: any callable ``model(x_chunk, state) -> (output, state)`` that continues from the
            state it is given (state None: its initial state), e.g. ``rnnkit.Recurrent``
            (time-major: ``batch_first`` layers are refused, the stream is split along dim 0).
        k1: steps per chunk: one backward pass (and one optimiser step in ``train``) per chunk.
        k2: steps the backward pass reaches back from the end of a chunk; ``k2 >= k1``,
            default ``k1``.
        head: optional callable applied to the chunk's output before the loss (a readout).
        state_batch_dim: the batch dimension of every state tensor, used to zero single streams;
            1 for rnnkit's and torch's layout (L·D, B, S).
    """

    def __init__(self, model: Model, k1: int, k2: int | None = None, *,
                 head: Callable[[Tensor], Tensor] | None = None, state_batch_dim: int = 1) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable as model(x_chunk, state) -> (output, state), "
                            f"got {type(model).__name__}")
        if getattr(model, "batch_first", False):
            raise ValueError("model: TBPTT splits the stream along dim 0 (time-major (T, B, I)); "
                             "build the layer with batch_first=False")
        _check_positive_int("k1", k1)
        k2 = k1 if k2 is None else k2
        _check_positive_int("k2", k2)
        if k2 < k1:
            raise ValueError(f"k2 must be >= k1 (the backward pass covers at least the chunk), "
                             f"got k1={k1}, k2={k2}")
        if head is not None and not callable(head):
            raise TypeError(f"head must be callable or None, got {type(head).__name__}")
        if isinstance(state_batch_dim, bool) or not isinstance(state_batch_dim, int) or state_batch_dim < 0:
            raise ValueError(f"state_batch_dim must be a non-negative int, got {state_batch_dim!r}")
        self.model, self.k1, self.k2, self.head = model, k1, k2, head
        self.state_batch_dim = state_batch_dim
        self.reset()

    # ----- the carried state ---------------------------------------------------------------
    @property
    def state(self) -> State:
        """The detached state at the end of the last chunk (None before the first)."""
        return self._state

    def reset(self, mask: Tensor | None = None) -> None:
        """``reset()``: forget the state and the stored past, as at the start of a new stream.
        ``reset(mask)``: zero the state of the streams where ``mask`` (B,) is True before the next
        chunk (a document boundary), as ``starts`` does at a chunk's first step."""
        if mask is None:
            self._state: State = None            # s_t, detached
            self._past: list[_Segment] = []      # the last ≤ k₂ − k₁ steps, for the next window
            self._past_state: State = None       # the state where ``_past`` begins (before its resets)
            self._pending: Tensor | None = None  # streams to zero before the next chunk
            return
        mask = _check_mask("mask", mask)
        self._pending = mask if self._pending is None else self._pending | mask

    # ----- one chunk -----------------------------------------------------------------------
    def step(self, x: Tensor, target: Tensor, loss_fn: LossFn, *, starts: Tensor | None = None
             ) -> ChunkResult:
        """Run one chunk x (m, B, I), m ≤ k₁, and backpropagate its loss through the window.

        Gradients accumulate into ``.grad`` as ``loss.backward()`` does; nothing is stepped.
        ``target`` (m, B, ·) is what ``loss_fn(output, target)`` compares with; ``starts`` (m, B)
        bool marks the steps where a stream begins a new document.
        """
        m = _check_stream(x, target, starts)
        if m > self.k1:
            raise ValueError(f"x: a chunk has at most k1={self.k1} steps, got {m}")
        chunk = _segments(x, starts, self._pending)
        self._pending = None

        # The window: the stored past (≤ k₂ − k₁ steps) then the chunk. After this run the last
        # k₂ − k₁ steps of the window become the next window's past, starting at step ``split``.
        window = self._past + chunk
        n = sum(len(s.x) for s in window)
        keep = min(self.k2 - self.k1, n)
        split, chunk_begins = n - keep, n - m

        state, position = self._past_state, 0
        past, past_state = [], (self._past_state if split == 0 else None)
        outputs = []                                                           # each (n_i, B, O)
        with torch.enable_grad():
            for segment in _split_at(window, split):
                if position == split and split > 0:
                    past_state = _detach(state)
                state = _zero_streams(state, segment.starts, self.state_batch_dim)
                output, state = _call(self.model, segment.x, state)
                if position >= chunk_begins:
                    outputs.append(output)
                if position >= split:   # the chunk's steps copied: no view keeps the caller's stream alive
                    past.append(segment if position < chunk_begins
                                else _Segment(segment.x.clone(), segment.starts))
                position += len(segment.x)
            output = torch.cat(outputs) if len(outputs) > 1 else outputs[0]   # (m, B, O)
            if self.head is not None:
                output = self.head(output)
            loss = loss_fn(output, target)
            if not isinstance(loss, Tensor) or loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar tensor, got "
                                 f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}")
            if loss.requires_grad:
                loss.backward()

        self._state = _detach(state)
        self._past = past
        self._past_state = self._state if split == n else past_state
        return ChunkResult(float(loss.detach()), output.detach())

    # ----- a whole stream ------------------------------------------------------------------
    def accumulate_gradients(self, x: Tensor, targets: Tensor, loss_fn: LossFn, *,
                             starts: Tensor | None = None, keep_outputs: bool = False) -> StreamResult:
        """Run the stream x (T, B, I) chunk by chunk, summing every chunk's g_t into ``.grad``
        (nothing is zeroed, no optimiser steps): the gradient of Σ_chunks loss_fn(chunk) as TBPTT
        truncates it."""
        return self._run(x, targets, loss_fn, starts, keep_outputs, optimizer=None, clip=None)

    def train(self, x: Tensor, targets: Tensor, loss_fn: LossFn, optimizer: torch.optim.Optimizer, *,
              starts: Tensor | None = None, clip: Callable[[Iterable[Tensor]], Any] | None = None,
              keep_outputs: bool = False) -> StreamResult:
        """Train through the stream x (T, B, I): per chunk, zero the gradients, run and
        backpropagate the chunk, call ``clip(parameters)`` if given (e.g. a ``GradientClipper``)
        on the optimiser's parameters, and step the optimiser."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        return self._run(x, targets, loss_fn, starts, keep_outputs, optimizer, clip)

    def _run(self, x, targets, loss_fn, starts, keep_outputs, optimizer, clip) -> StreamResult:
        T = _check_stream(x, targets, starts)
        losses, outputs = [], []
        for begin in range(0, T, self.k1):
            end = min(begin + self.k1, T)
            if optimizer is not None:
                optimizer.zero_grad()
            result = self.step(x[begin:end], targets[begin:end], loss_fn,
                               starts=None if starts is None else starts[begin:end])
            if optimizer is not None:
                if clip is not None:
                    clip([p for group in optimizer.param_groups for p in group["params"]])
                optimizer.step()
            losses.append(result.loss)
            if keep_outputs:
                outputs.append(result.output)
        return StreamResult(losses, torch.cat(outputs) if keep_outputs else None)


# ----- helpers ------------------------------------------------------------------------------
def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_mask(name: str, mask) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 1:
        described = f"{mask.dtype} tensor of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) \
            else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor of shape (B,), got {described}")
    return mask


def _check_stream(x: Tensor, targets: Tensor, starts: Tensor | None) -> int:
    """Check x (T, B, …), targets (T, …) and starts (T, B); return T."""
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a tensor (T, B, …) of at least 2 dimensions, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    T, B = x.shape[:2]
    if T == 0:
        raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
    if not isinstance(targets, Tensor) or targets.dim() < 1 or targets.shape[0] != T:
        raise ValueError(f"targets must be a tensor with T={T} steps in dim 0, got "
                         f"{tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__}")
    if starts is not None:
        if not isinstance(starts, Tensor) or starts.dtype != torch.bool or tuple(starts.shape) != (T, B):
            described = f"{starts.dtype} tensor of shape {tuple(starts.shape)}" \
                if isinstance(starts, Tensor) else type(starts).__name__
            raise ValueError(f"starts must be a bool tensor of shape (T, B) = {(T, B)}, got {described}")
    return T


def _segments(x: Tensor, starts: Tensor | None, pending: Tensor | None) -> list[_Segment]:
    """Cut a chunk x (m, B, I) before every step where some stream starts a new document."""
    first = pending
    if starts is not None:
        first = starts[0] if first is None else first | starts[0]
    cuts = [0] + ([] if starts is None else starts[1:].any(dim=1).nonzero().flatten().add(1).tolist())
    cuts.append(len(x))
    segments = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        mask = first if a == 0 else starts[a]
        mask = mask.clone() if mask is not None and bool(mask.any()) else None
        segments.append(_Segment(x[a:b].detach(), mask))
    return segments


def _split_at(window: list[_Segment], split: int) -> list[_Segment]:
    """The window's segments, with the one that straddles step ``split`` cut in two there."""
    pieces, position = [], 0
    for segment in window:
        n = len(segment.x)
        if position < split < position + n:
            cut = split - position
            pieces += [_Segment(segment.x[:cut], segment.starts), _Segment(segment.x[cut:], None)]
        else:
            pieces.append(segment)
        position += n
    return pieces


def _call(model: Model, x: Tensor, state: State):
    result = model(x, state)
    if not isinstance(result, tuple) or len(result) != 2:
        length = f" of length {len(result)}" if isinstance(result, tuple) else ""
        raise ValueError(f"model must return a pair (output, state), got {type(result).__name__}{length}")
    return result


def _detach(state: State) -> State:
    """The same state, cut from the graph: no gradient flows back through it."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(_detach(s) for s in state)
    raise TypeError(f"state must be a tensor or a (nested) tuple/list of tensors, got {type(state).__name__}")


def _zero_streams(state: State, mask: Tensor | None, batch_dim: int) -> State:
    """Zero the entries of the streams flagged in mask (B,) along ``batch_dim`` of every tensor.
    None (the model's initial state) is left as it is: the model starts every stream afresh."""
    if state is None or mask is None:
        return state
    if isinstance(state, (tuple, list)):
        return type(state)(_zero_streams(s, mask, batch_dim) for s in state)
    if state.dim() <= batch_dim or state.shape[batch_dim] != len(mask):
        raise ValueError(f"starts/mask flags {len(mask)} streams but a state tensor has shape "
                         f"{tuple(state.shape)}, whose dimension state_batch_dim={batch_dim} should be "
                         f"the {len(mask)} streams")
    view = [1] * state.dim()
    view[batch_dim] = len(mask)
    return state.masked_fill(mask.to(state.device).view(view), 0.0)
