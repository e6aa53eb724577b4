"""What making the fast paths differentiable twice costs a first-order training step.

    python benchmarks/higher_order_overhead.py [--rounds 5 --threads 1]

``rnnkit.engine.higher_order.twice_differentiable`` wraps every hand-derived or compiled backward
(two autograd Functions, one re-entrant ``autograd.grad`` into the fast path's own graph). Here one
forward + backward (loss = output.sum()) of a layer runs with the wrapper and with it replaced by a
plain call of the fast path (no second derivative), interleaved in rounds in one process; each
figure is the lowest of the round medians (host noise only adds time).
"""
from __future__ import annotations

import argparse

import torch
from bptt_vs_autograd import median_ms, training_step      # benchmarks/ is this script's directory

import rnnkit
from rnnkit.engine import loop

CASES = [("lstm", {"variant": "vanilla"}, 32, 100, 256), ("gru", {}, 32, 100, 128),
         ("lstm", {"variant": "vanilla"}, 1, 5, 32), ("gru", {}, 1, 5, 32)]


def first_order_only(fast, reference, inputs, **options):
    return fast(*inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wrapped = loop.twice_differentiable
    print(f"{'layer':<28} {'plain ms':>9} {'wrapped ms':>11} {'extra ms':>9} {'ratio':>6}")
    for name, options, B, T, H in CASES:
        layer = rnnkit.Recurrent(name, H, H, **options)
        x = torch.randn(T, B, H, requires_grad=True)
        step = training_step(layer, x)
        repeats = 5 if B > 1 else 200
        best = {"plain": float("inf"), "wrapped": float("inf")}
        for _ in range(args.rounds):
            for label, wrapper in (("plain", first_order_only), ("wrapped", wrapped)):
                loop.twice_differentiable = wrapper
                best[label] = min(best[label], median_ms(step, repeats))
        loop.twice_differentiable = wrapped
        label = f"{name}{'' if not options else ':' + options['variant']} B{B} T{T} H{H}"
        print(f"{label:<28} {best['plain']:>9.3f} {best['wrapped']:>11.3f} "
              f"{best['wrapped'] - best['plain']:>9.3f} {best['wrapped'] / best['plain']:>6.3f}")


if __name__ == "__main__":
    main()
