"""Training-step time of the generated path (a cell's own step compiled by torch.compile) against
rnnkit's built-in kernels and the reference loop.

    python benchmarks/generated_path.py [--size 32x100x256] [--threads 2] [--rounds 4]
    python benchmarks/generated_path.py --steps-per-call 1,2,4,8     # the K of generated.py
    python benchmarks/generated_path.py --compare-backward           # autograd vs recomputing vjp
    python benchmarks/generated_path.py --cold                       # an empty Inductor cache

A training step is forward + backward of output.sum() with gradients to every weight (the input
projection included). Rows, each timed in every round, interleaved in one process; a row's
figure is the lowest of its round medians (host noise only adds time):

* ``gated``: a user-defined cell (no more arithmetic than the GRU: z and the candidate from 2H-wide
  projections) on the generated path, against the built-in GRU ``rnnkit.Recurrent("gru", H, H)``;
* ``lstm+ln``, ``lstm+zoneout`` (0.1, training), ``lstm+rdrop`` (recurrent dropout 0.25,
  training) on the generated path, against the plain ``rnnkit.Recurrent("lstm", H, H)`` (torch's
  oneDNN kernel on the CPU);
* the same cells on the reference loop (a Python loop over ``cell.step``, autograd through it);
* ``compile``: each generated configuration's first call minus its steady-state time.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import rnnkit
from rnnkit.cells import RecurrentCell
from rnnkit.cells.functional import affine
from rnnkit.engine import generated
from rnnkit.engine.masks import variational_mask


class GatedCell(RecurrentCell):
    """h_t = (1 − z) ⊙ h_{t−1} + z ⊙ tanh(W_n x_t + U_n h_{t−1} + b_n),
    z = σ(W_z x_t + U_z h_{t−1} + b_z): a user's cell, defined here, with nothing written for it but
    its step."""

    def __init__(self, input_size: int, hidden_size: int, **factory) -> None:
        super().__init__(input_size, hidden_size, **factory)
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (2 * H, I), "bias_ih": (2 * H,), "weight_hh": (2 * H, H), "bias_hh": (2 * H,)}

    def project_input(self, p, x):
        return affine(x, p["weight_ih"], p["bias_ih"])                          # (T, B, 2H)

    def step(self, p, u_t, state, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        x_z, x_n = u_t.chunk(2, dim=-1)
        a_z, a_n = affine(h if recurrent_mask is None else h * recurrent_mask,
                          p["weight_hh"], p["bias_hh"]).chunk(2, dim=-1)
        z, n = torch.sigmoid(x_z + a_z), torch.tanh(x_n + a_n)
        h = (1 - z) * h + z * n
        return h, (h,)


def reference_loop(cell, p, u, state, recurrent_mask=None, zoneout=0.0, training=True):
    """The reference loop (rnnkit/engine/loop.py's), autograd through every step."""
    outputs = []
    for u_t in u.unbind(0):
        y, new = cell.step(p, u_t, state, recurrent_mask)
        if zoneout:
            new = tuple(torch.where(torch.rand_like(n) < zoneout, old, n) for old, n in zip(state, new))
            y = new[0]
        state = new
        outputs.append(y)
    return torch.stack(outputs), state


def layer_step(module, x):
    def step():
        module(x)[0].sum().backward()
        for tensor in module.parameters():
            tensor.grad = None
    return step


def cell_step(cell, x, runner, recurrent_dropout=0.0, **options):
    """A training step of one cell on ``runner`` (generated.run_generated or reference_loop)."""
    p = cell.params()
    B = x.shape[1]
    def step():
        u = cell.project_input(p, x)                                            # (T, B, G)
        state = cell.initial_state(B, dtype=x.dtype)
        mask = None
        if recurrent_dropout:
            mask = variational_mask(state[0], recurrent_dropout)                # (B, H)
        outputs = runner(cell, p, u, state, recurrent_mask=mask, **options)[0]
        outputs.sum().backward()
        for tensor in p.values():
            tensor.grad = None
    return step


def vjp_runner(cell, p, u, state, recurrent_mask=None, zoneout=0.0, training=True, K=4,
               compiler="inductor"):
    """The alternative backward measured against autograd (``--compare-backward``): a
    sequence-level autograd.Function whose forward runs the compiled K-step function without
    autograd, saving each chunk's starting state, and whose backward runs a compiled
    torch.func.vjp of the chunk (recomputing it) K steps at a time, accumulating parameter grads."""
    rate = float(zoneout)
    keep_old = generated._keep_old(tuple(state), u.shape[0], rate) if rate and training else None
    names = tuple(n for n, t in p.items() if t.requires_grad)
    fixed = {n: t for n, t in p.items() if not t.requires_grad}
    out = _VJPSequence.apply(cell, fixed, names, (rate, training, False), K, compiler, len(state),
                             recurrent_mask,
                             keep_old, u, *state, *(p[n] for n in names))
    return out[0], tuple(out[1:])


def _chunk_vjp(cell, fixed, trained, u, state, recurrent_mask, keep_old, rate, training, keep_states,
               g_y, g_state, acc):
    def chunk(trained, u, state):
        y, new, _ = generated._steps(cell, {**fixed, **trained}, u, state, recurrent_mask, keep_old, None,
                                     rate, training, keep_states)
        return y, new
    _, vjp = torch.func.vjp(chunk, trained, u, state)
    d_trained, du, d_state = vjp((g_y, g_state))
    return du, d_state, {name: acc[name] + d_trained[name] for name in acc}


_vjp_regions = {}


def _vjp_compiled(fn, cell, compiler):
    key = (fn, type(cell), compiler)
    if key not in _vjp_regions:
        _vjp_regions[key] = torch.compile(fn, backend=compiler, fullgraph=True, dynamic=True,
                                          isolate_recompiles=True, recompile_limit=64)
    return _vjp_regions[key]


class _VJPSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cell, fixed, names, options, K, compiler, S, recurrent_mask, keep_old, u, *rest):
        state, trained = tuple(rest[:S]), rest[S:]
        p = {**fixed, **dict(zip(names, trained))}
        run = _vjp_compiled(generated._steps, cell, compiler)
        ys, starts = [], []
        for t0 in range(0, u.shape[0], K):
            starts.append(state)
            keep_c = tuple(m[t0:t0 + K] for m in keep_old) if keep_old is not None else None
            y, state, _ = run(cell, p, u[t0:t0 + K], state, recurrent_mask, keep_c, None, *options)
            ys.append(y)
        ctx.cell, ctx.fixed, ctx.names, ctx.options, ctx.K, ctx.S = cell, fixed, names, options, K, S
        ctx.compiler = compiler
        ctx.recurrent_mask, ctx.keep_old = recurrent_mask, keep_old
        ctx.save_for_backward(u, *trained, *(s for start in starts for s in start))
        return (torch.cat(ys), *state)

    @staticmethod
    def backward(ctx, g_out, *g_state):
        S, K, n = ctx.S, ctx.K, len(ctx.names)
        saved = ctx.saved_tensors
        u, trained, flat = saved[0], dict(zip(ctx.names, saved[1:1 + n])), saved[1 + n:]
        starts = [tuple(flat[i:i + S]) for i in range(0, len(flat), S)]
        acc = {name: torch.zeros_like(t) for name, t in trained.items()}
        du = torch.empty_like(u)
        run = _vjp_compiled(_chunk_vjp, ctx.cell, ctx.compiler)
        for c in range(len(starts) - 1, -1, -1):
            t0 = c * K
            keep_c = tuple(m[t0:t0 + K] for m in ctx.keep_old) if ctx.keep_old is not None else None
            du[t0:t0 + K], g_state, acc = run(ctx.cell, ctx.fixed, trained, u[t0:t0 + K], starts[c],
                                              ctx.recurrent_mask, keep_c, *ctx.options,
                                              g_out[t0:t0 + K], g_state, acc)
        return (None,) * 9 + (du, *g_state, *(acc[name] for name in ctx.names))


def best_round_medians(steps: dict, rounds: int, repeats: int) -> dict[str, float]:
    """Each step timed ``repeats`` times per round, rounds interleaved; the lowest round median (ms)."""
    medians = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            medians[name].append(statistics.median(times) * 1e3)
    return {name: min(values) for name, values in medians.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="32x100x256", help="BxTxH: batch, length, input and hidden size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps-per-call", default=str(generated.STEPS_PER_CALL),
                        help="comma-separated K values for the generated rows (generated.STEPS_PER_CALL)")
    parser.add_argument("--compare-backward", action="store_true",
                        help="also time the recomputing-vjp backward (a sequence-level autograd.Function)")
    parser.add_argument("--cold", action="store_true", help="compile into an empty Inductor cache")
    parser.add_argument("--compiler", default="inductor")
    parser.add_argument("--only", default="", help="comma-separated row groups: gated,ln,zoneout,rdrop")
    args = parser.parse_args()
    if args.cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
    B, T, H = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(T, B, H)
    groups = args.only.split(",") if args.only else ["gated", "ln", "zoneout", "rdrop"]
    ks = [int(k) for k in args.steps_per_call.split(",")]

    cells = {"gated": (GatedCell(H, H), {}), "ln": (rnnkit.cells.create("lstm", H, H, layer_norm=True), {}),
             "zoneout": (rnnkit.cells.create("lstm", H, H), {"zoneout": 0.1}),
             "rdrop": (rnnkit.cells.create("lstm", H, H), {"recurrent_dropout": 0.25})}
    baselines = {"gated": "gru (built-in)", "ln": "lstm (built-in)", "zoneout": "lstm (built-in)",
                 "rdrop": "lstm (built-in)"}
    labels = {"gated": "gated (user cell)", "ln": "lstm+ln", "zoneout": "lstm+zoneout", "rdrop": "lstm+rdrop"}
    steps, compile_s, baseline_of = {}, {}, {}
    if "gated" in groups:
        steps["gru (built-in)"] = layer_step(rnnkit.Recurrent("gru", H, H), x)
    if set(groups) & {"ln", "zoneout", "rdrop"}:
        steps["lstm (built-in)"] = layer_step(rnnkit.Recurrent("lstm", H, H), x)
    for group in groups:
        cell, options = cells[group]
        zoneout = options.get("zoneout", 0.0)
        runner_options = dict(zoneout=zoneout, training=True)
        rdrop = options.get("recurrent_dropout", 0.0)
        for k in ks:
            def run_k(*a, k=k, **kw):
                generated.STEPS_PER_CALL = k
                return generated.run_generated(*a, compiler=args.compiler, **kw)
            name = f"{labels[group]}: generated K={k}"
            steps[name] = cell_step(cell, x, run_k, rdrop, **runner_options)
            baseline_of[name] = baselines[group]
            if args.compare_backward:
                name = f"{labels[group]}: vjp-recompute K={k}"
                def run_vjp(*a, k=k, **kw):
                    return vjp_runner(*a, K=k, compiler=args.compiler, **kw)
                steps[name] = cell_step(cell, x, run_vjp, rdrop, **runner_options)
                baseline_of[name] = baselines[group]
        name = f"{labels[group]}: reference loop"
        steps[name] = cell_step(cell, x, reference_loop, rdrop, **runner_options)
        baseline_of[name] = baselines[group]

    for name, step in steps.items():                                            # first calls: compiles
        start = time.perf_counter()
        step()
        compile_s[name] = time.perf_counter() - start
    times = best_round_medians(steps, args.rounds, args.repeats)
    print(f"B={B} T={T} H={H}, {args.threads} threads, torch {torch.__version__}, compiler {args.compiler}"
          f"{' (cold cache)' if args.cold else ''}; best of {args.rounds} round medians "
          f"({args.repeats} steps each), ms per training step")
    print(f"{'row':40s} {'ms':>8s} {'ratio':>7s}  {'vs':16s} {'compile s':>9s}")
    for name, ms in times.items():
        base = baseline_of.get(name)
        ratio = f"{ms / times[base]:.2f}x" if base else ""
        first = compile_s[name] - ms / 1e3
        compiled = f"{first:.1f}" if "generated" in name or "vjp" in name else ""
        print(f"{name:40s} {ms:8.1f} {ratio:>7s}  {base or '':16s} {compiled:>9s}")


if __name__ == "__main__":
    main()
