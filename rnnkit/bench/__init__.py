"""The speed benchmark: rnnkit's layers against torch.nn.LSTM and torch.nn.GRU on the CPU.

    rnnkit bench --quick                                        # under a minute
    rnnkit bench --sections train --cells lstm:vanilla,gru:original --sizes 32x100x256
    python benchmarks/speed.py --markdown docs/performance.md   # regenerates docs/performance.md

``config`` (what to measure), ``subjects`` (layers, inputs, the timed functions), ``guard`` (fast
path == reference loop before anything is timed), ``timing`` (the interleaved median timer),
``suites`` (the sections), ``memory`` (peak memory of a step, one process each), ``comparisons``
(which row a row is measured against: bf16 against float32, a layer option against the plain cell,
a user's cell against the GRU), ``user_cell`` (a cell written as a user writes one) and ``report``
(markdown tables and the generated document).
"""
from __future__ import annotations

from typing import Callable

from .config import DEFAULT_CELLS, DEFAULT_SIZES, SECTIONS, BenchConfig, Size, TimerConfig
from .guard import Check, check_against_reference
from .report import render_document, render_tables, write_markdown
from .suites import Measurement, Results, parse_specs, run
from .timing import Timing, time_interleaved

__all__ = ["BenchConfig", "Size", "TimerConfig", "SECTIONS", "DEFAULT_CELLS", "DEFAULT_SIZES", "run",
           "Results", "Measurement", "parse_specs", "Check", "check_against_reference", "Timing", "time_interleaved",
           "render_tables", "render_document", "write_markdown", "run_and_report"]


def run_and_report(config: BenchConfig, *, program: str, markdown=None, echo: Callable[[str], None] | None = None,
                   out: Callable[[str], None] = print) -> Results:
    """Run ``config``, print its tables with ``out`` (progress goes to ``echo``, stderr by default)
    and, with ``markdown``, write the document naming ``config.command_line(program)``."""
    results = run(config, echo)
    out(render_tables(results))
    command = config.command_line(program)
    if markdown is not None:
        write_markdown(markdown, results, command)
        out(f"wrote {markdown} ({command}, {results.seconds:.0f} s)")
    return results
