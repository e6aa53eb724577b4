"""Training-step time of zoneout and recurrent dropout inside the compiled loops, against torch's LSTM.

    python benchmarks/masks_in_compiled_loops.py [--batch 32 --length 100 --size 256 --rounds 5]

One forward + backward (loss = output.sum()) per step, interleaved in rounds in one process; the
figure is the lowest of the round medians (host noise only adds time). Rows:

- ``lstm (native)``: ``rnnkit.Recurrent("lstm", H, H)``, which the dispatcher sends to torch's kernel
  (oneDNN on the CPU): the yardstick, ratio 1.
- ``lstm:vanilla (fused)``: the peephole LSTM, which the dispatcher sends to the compiled loop.
- ``lstm zoneout / recurrent_dropout (fused)``, ``gru zoneout (fused)``: the layer's work on the
  compiled loop with the masks: the recurrent dropout mask drawn as the layer draws it, the input
  projection, ``rnnkit.engine.fused.run_fused_lstm``/``run_fused_gru`` with the mask and zoneout
  (training: its masks drawn before the loop), and the backward. Called directly, so the rows
  measure the compiled loops whichever path the dispatcher picks for these options today.
- ``gru (fused)``: the plain GRU on the compiled loop (the dispatcher's choice), for the GRU rows.
- with ``--reference``: the same zoneout LSTM layer on ``backend="reference"`` (the Python step loop
  differentiated by autograd), for scale.
"""
from __future__ import annotations

import argparse

import torch
from bptt_vs_autograd import median_ms      # the same timer (benchmarks/ is this script's directory)

import rnnkit
from rnnkit.engine import fused
from rnnkit.engine.masks import variational_mask


def layer_step(layer, x):
    """A training step through the layer (the dispatcher's path)."""
    def step():
        layer(x)[0].sum().backward()
        layer.zero_grad(set_to_none=True)
    return step


def fused_step(layer, x, recurrent_dropout: float = 0.0, zoneout: float = 0.0):
    """A training step of a one-layer ``layer`` on the compiled loop with its masks, as the layer
    would run it there: recurrent mask per sequence (inverted dropout), zero initial state."""
    cell, p = layer.cells[0], layer.cell_params(0)
    run = fused.run_fused_lstm if cell.state_names[:2] == ("h", "c") else fused.run_fused_gru
    T, B, _ = x.shape

    def step():
        state = tuple(x.new_zeros(B, size) for size in cell.state_sizes())        # each (B, S)
        mask = None
        if recurrent_dropout:
            mask = variational_mask(state[0], recurrent_dropout)
        u = cell.project_input(p, x)                                               # (T, B, G)
        outputs, _ = run(cell, p, u, state, None, mask, zoneout, True)
        outputs.sum().backward()
        layer.zero_grad(set_to_none=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--size", type=int, default=256, help="input and hidden size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference", action="store_true", help="add the zoneout LSTM on backend='reference'")
    args = parser.parse_args()
    if not fused.available():
        raise SystemExit("rnnkit's compiled loops are not built (pip install -e . with a C++ compiler)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    H = args.size
    x = torch.randn(args.length, args.batch, H)
    layers = {"native": rnnkit.Recurrent("lstm", H, H), "vanilla": rnnkit.Recurrent("lstm", H, H, variant="vanilla"),
              "gru": rnnkit.Recurrent("gru", H, H)}
    for name, path in (("native", "native"), ("vanilla", "fused"), ("gru", "fused")):
        chosen = layers[name].explain(x).layers[0].path
        assert chosen == path, f"the dispatcher sends {name} to {chosen}, not {path}"
    steps = {
        "lstm (native)": layer_step(layers["native"], x),
        "lstm:vanilla (fused)": layer_step(layers["vanilla"], x),
        "lstm zoneout=0.1 (fused)": fused_step(rnnkit.Recurrent("lstm", H, H), x, zoneout=0.1),
        "lstm recurrent_dropout=0.25 (fused)": fused_step(rnnkit.Recurrent("lstm", H, H), x,
                                                          recurrent_dropout=0.25),
        "lstm both (fused)": fused_step(rnnkit.Recurrent("lstm", H, H), x, recurrent_dropout=0.25,
                                        zoneout=0.1),
        "gru (fused)": layer_step(layers["gru"], x),
        "gru zoneout=0.1 (fused)": fused_step(rnnkit.Recurrent("gru", H, H), x, zoneout=0.1),
    }
    if args.reference:
        steps["lstm zoneout=0.1 (reference)"] = layer_step(
            rnnkit.Recurrent("lstm", H, H, zoneout=0.1, backend="reference"), x)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for key, step in steps.items():
            best[key] = min(best.get(key, float("inf")), median_ms(step, args.repeats))
    base = best["lstm (native)"]
    print(f"B={args.batch} T={args.length} I=H={H}, {args.threads} thread(s), torch {torch.__version__}; "
          f"training step (forward + backward), lowest of {args.rounds} round medians")
    print(f"{'row':<38}{'ms':>9}{'÷ native lstm':>16}")
    for key, ms in best.items():
        print(f"{key:<38}{ms:>9.1f}{ms / base:>16.2f}")


if __name__ == "__main__":
    main()
