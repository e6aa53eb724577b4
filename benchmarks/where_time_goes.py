"""Where a training step of the compiled LSTM loop spends its time, beside torch.nn.LSTM's whole step.

    python benchmarks/where_time_goes.py [--batch 32 --length 100 --size 256 --threads 2 --rounds 7]

The compiled loop (rnnkit/csrc/lstm_family.cpp) does, per training step: the input projection
(one (T·B, I) @ (I, 4H) product), T per-step recurrent products (B, H) @ (H, 4H) forward and T
(B, 4H) @ (4H, H) backward, the pointwise gate math of every step, and the weight gradients (one
(4H, T·B) @ (T·B, H) product each for the input and recurrent weights). This script times each kind
of product on its own, with the same shapes and the same ATen calls (MKL through at::addmm / at::mm),
interleaved in rounds with the whole rnnkit step and nn.LSTM's step; the figure is the lowest round
median (host noise only adds time). What is left of the whole step after the products is the gate
math and the bookkeeping. Also timed: the same per-step product through oneDNN
(torch.ops.mkldnn._linear_pointwise on a prepacked weight), the library nn.LSTM's kernel uses.
"""
from __future__ import annotations

import argparse

import torch

import rnnkit
from bptt_vs_autograd import median_ms   # this folder is sys.path[0] when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variant", default="vanilla")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    B, T, H = args.batch, args.length, args.size
    torch.manual_seed(0)
    x = torch.randn(T, B, H)
    ours = rnnkit.Recurrent("lstm", H, H, variant=args.variant)
    theirs = torch.nn.LSTM(H, H)
    weight = torch.randn(4 * H, H) / H ** 0.5
    weight_t = weight.t().contiguous()
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, B)
    h, a, d_a = torch.randn(B, H), torch.randn(B, 4 * H), torch.randn(B, 4 * H)
    rows_x, rows_d = torch.randn(T * B, H), torch.randn(T * B, 4 * H)

    def step(module):
        def run():
            output = module(x)[0]
            output.sum().backward()
        return run

    def per_step_forward():
        for _ in range(T):
            a.addmm_(h, weight_t)

    def per_step_backward():
        for _ in range(T):
            torch.mm(d_a, weight)

    def per_step_onednn():
        for _ in range(T):
            torch.ops.mkldnn._linear_pointwise(h, packed, None, "none", [], "")

    def big_products():
        torch.mm(rows_x, weight_t)                      # input projection
        torch.mm(rows_d.t(), rows_x)                     # dW_ih
        torch.mm(rows_d.t(), rows_x)                     # dW_hh
        torch.mm(rows_d, weight)                         # dx

    parts = {"nn.LSTM step": step(theirs), f"rnnkit lstm:{args.variant} step": step(ours),
             "per-step products, forward (T x addmm)": per_step_forward,
             "per-step products, backward (T x mm)": per_step_backward,
             "per-step products, forward through oneDNN": per_step_onednn,
             "sequence-level products (4 large GEMMs)": big_products}
    rounds = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, fn in parts.items():
            rounds[name].append(median_ms(fn, 5))
    best = {name: min(values) for name, values in rounds.items()}
    ours_ms = best[f"rnnkit lstm:{args.variant} step"]
    products = (best["per-step products, forward (T x addmm)"] + best["per-step products, backward (T x mm)"]
                + best["sequence-level products (4 large GEMMs)"])
    print(f"B={B} T={T} I=H={H}, {args.threads} threads, best of {args.rounds} round medians")
    for name, value in best.items():
        print(f"  {name:48s} {value:8.2f} ms  ({value / ours_ms:5.1%} of rnnkit's step)")
    print(f"  {'gate math and bookkeeping (the rest)':48s} {ours_ms - products:8.2f} ms  "
          f"({(ours_ms - products) / ours_ms:5.1%})")
    print(f"  ratio nn.LSTM / rnnkit = {best['nn.LSTM step'] / ours_ms:.2f}")


if __name__ == "__main__":
    main()
