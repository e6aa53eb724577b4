"""Running a composition over a batch of binary trees one level at a time.

The batch is plain tensors (``rnnkit.data.trees.trees_to_batch`` builds them from trees): N nodes,
numbered level by level. Level 0 is every leaf of every tree, level k every node of height k, so
both children of a level-k node lie in levels below k. A whole level is one batched computation:
gather the children's states, compose, write the level's states; a batch of trees of depth K costs
K steps, whatever the number of trees or nodes.

* leaf_inputs: (L, I) one vector per leaf (nodes 0 .. L-1).
* left, right: (N,) the children's node indices (read for internal nodes only; -1 at leaves).
* level_sizes: nodes per level, L first; they sum to N.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

States = tuple[Tensor, ...]


def check_tree_arrays(leaf_inputs: Tensor, left: Tensor, right: Tensor,
                      level_sizes: Sequence[int] | Tensor) -> list[int]:
    """Validate the arrays of a level-ordered batch; return ``level_sizes`` as Python ints."""
    sizes = [int(size) for size in level_sizes]
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"level_sizes must be positive node counts, leaves first, got {sizes}")
    N, L = sum(sizes), sizes[0]
    if leaf_inputs.dim() != 2 or leaf_inputs.shape[0] != L:
        raise ValueError(f"leaf_inputs must be (L={L}, I) (L = level_sizes[0]), "
                         f"got {tuple(leaf_inputs.shape)}")
    for name, children in (("left", left), ("right", right)):
        if children.dim() != 1 or children.shape[0] != N or children.dtype != torch.long:
            raise ValueError(f"{name} must be a (N={N},) long tensor of child indices (N = "
                             f"sum(level_sizes)), got {children.dtype} {tuple(children.shape)}")
    level = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).to(left.device)
    level_start = torch.tensor([0, *sizes[:-1]]).cumsum(0).to(left.device)[level]     # (N,)
    internal = slice(L, N)
    for name, children in (("left", left), ("right", right)):
        inside = (children[internal] >= 0) & (children[internal] < level_start[internal])
        if not bool(inside.all()):
            node = L + int((~inside).nonzero()[0])
            raise ValueError(f"{name}[{node}] = {int(children[node])}: a child must be a node of a "
                             f"lower level (0 .. {int(level_start[node]) - 1} for node {node})")
    return sizes


def compose_by_level(leaf: Callable[[Tensor], States], node: Callable[[States, States], States],
                     leaf_inputs: Tensor, left: Tensor, right: Tensor,
                     level_sizes: Sequence[int] | Tensor) -> States:
    """The states of every node: ``leaf(leaf_inputs)`` for level 0, then per level
    ``node(left children's states, right children's states)``.

    ``leaf`` maps (L, I) to a tuple of (L, S) states (``(h,)``, or ``(h, c)``); ``node`` maps two such
    tuples of (n, S) to the n parents' states. Returns the tuple of (N, S) states of all nodes.
    """
    sizes = check_tree_arrays(leaf_inputs, left, right, level_sizes)
    N, L = sum(sizes), sizes[0]
    leaf_states = leaf(leaf_inputs)                                         # each (L, S)
    states = [s.new_zeros(N, *s.shape[1:]) for s in leaf_states]            # each (N, S)
    for all_nodes, first in zip(states, leaf_states):
        all_nodes[:L] = first
    start = L
    for size in sizes[1:]:
        level = slice(start, start + size)
        left_states = tuple(s[left[level]] for s in states)                # each (n, S)
        right_states = tuple(s[right[level]] for s in states)              # each (n, S)
        for all_nodes, parents in zip(states, node(left_states, right_states)):
            all_nodes[level] = parents
        start += size
    return tuple(states)
