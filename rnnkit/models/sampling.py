r"""Sampling text from a language model: temperature, top-k, nucleus (top-p), greedy.

At each step the model's logits z over the vocabulary become a distribution

.. math::
    p_i = \frac{\exp(z_i / τ)}{\sum_{j \in K} \exp(z_j / τ)} \quad (i \in K),\qquad p_i = 0 \text{ otherwise},

where τ is the temperature (τ → 0 is the argmax, τ = 1 the model's own distribution) and K the
kept tokens: all of them, the k largest (top-k; A. Fan, M. Lewis, Y. Dauphin, "Hierarchical Neural
Story Generation", ACL 2018), or the smallest set of largest ones whose probability reaches p
(nucleus sampling; A. Holtzman, J. Buys, L. Du, M. Forbes, Y. Choi, "The Curious Case of Neural
Text Degeneration", ICLR 2020, arXiv:1904.09751). Both filters together keep the intersection.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def next_token_probabilities(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                             top_p: float | None = None) -> Tensor:
    """The distribution to sample from: softmax(logits / temperature) over the kept tokens.

    Args:
        logits: (..., V) unnormalised log-probabilities.
        temperature: τ > 0.
        top_k: keep the k largest logits (None: all; ties with the k-th are kept).
        top_p: keep the smallest set of most probable tokens whose probability (after temperature
            and top-k) reaches top_p, in (0, 1] (None: all).

    Returns:
        (..., V) probabilities, zero outside the kept tokens, summing to 1.
    """
    _check_filters(temperature, top_k, top_p)
    scaled = logits / temperature                                                # (..., V)
    if top_k is not None and top_k < scaled.shape[-1]:
        kth_largest = scaled.topk(top_k, dim=-1).values[..., -1:]                 # (..., 1)
        scaled = scaled.masked_fill(scaled < kth_largest, float("-inf"))
    probabilities = scaled.softmax(dim=-1)                                       # (..., V)
    if top_p is not None and top_p < 1:
        sorted_p, order = probabilities.sort(dim=-1, descending=True)            # (..., V)
        mass_before = sorted_p.cumsum(dim=-1) - sorted_p                         # (..., V)
        sorted_p = sorted_p.masked_fill(mass_before >= top_p, 0.0)               # the most probable stays
        probabilities = torch.zeros_like(probabilities).scatter(-1, order, sorted_p)
        probabilities = probabilities / probabilities.sum(dim=-1, keepdim=True)
    return probabilities


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None,
                greedy: bool = False) -> Tensor:
    """One token id per row of ``logits`` (..., V) → (...) long.

    ``greedy=True`` or ``temperature == 0`` takes the argmax; otherwise the id is drawn from
    ``next_token_probabilities(logits, temperature, top_k, top_p)`` with ``generator``.
    """
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = next_token_probabilities(logits, temperature, top_k, top_p)  # (..., V)
    flat = probabilities.reshape(-1, probabilities.shape[-1])                    # (N, V)
    drawn = torch.multinomial(flat, 1, generator=generator)                      # (N, 1)
    return drawn.view(probabilities.shape[:-1])


@torch.no_grad()
def generate(model: nn.Module, prompt_ids: list[int], length: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, eos_index: int | None = None,
             greedy: bool = False) -> list[int]:
    """Continue ``prompt_ids`` by up to ``length`` tokens sampled from ``model``.

    The prompt is read once; each new token is then fed alone with the carried state, so a step
    costs one step of the network, never a re-run of the whole prefix.

    Args:
        model: called as ``model(tokens (1, T), state) -> (logits (1, T, V), state)``, as
            ``LanguageModel`` is. It runs in evaluation mode (no dropout) and its mode is restored.
        prompt_ids: at least one token id (for example the vocabulary's ``<bos>`` or a text).
        length: the most new tokens to produce (≥ 0).
        temperature, top_k, top_p: as ``next_token_probabilities``; temperature 0 is greedy.
        generator: a seeded ``torch.Generator`` makes the draw reproducible (None: torch's global one).
        eos_index: stop after producing this id (it is included in the result).
        greedy: take the most probable token at every step.

    Returns:
        The new token ids (the prompt not included).
    """
    if not isinstance(prompt_ids, (list, tuple)) or not prompt_ids or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in prompt_ids):
        raise ValueError(f"prompt_ids must be a non-empty list of int token ids, got {prompt_ids!r}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be an int ≥ 0, got {length!r}")
    if not (greedy or temperature == 0):
        _check_filters(temperature, top_k, top_p)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        tokens = torch.tensor([prompt_ids], dtype=torch.long, device=device)       # (1, P)
        logits, state = model(tokens)                                            # (1, P, V)
        generated: list[int] = []
        for step in range(length):
            token = sample_next(logits[:, -1], temperature, top_k, top_p, generator, greedy)  # (1,)
            generated.append(int(token))
            if generated[-1] == eos_index or step == length - 1:
                break
            logits, state = model(token.view(1, 1), state)                       # (1, 1, V)
        return generated
    finally:
        model.train(was_training)


def _check_filters(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0 (or use greedy=True), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int ≥ 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
