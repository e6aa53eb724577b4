"""What a benchmark run measures: one typed configuration, built from the command line's strings.

Both front ends (``rnnkit bench`` and ``benchmarks/speed.py``) turn their options into a
``BenchConfig`` with ``BenchConfig.from_options`` and print it back as a command line with
``command_line``, so that a report names the exact command that regenerates it.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace

SECTIONS = ("train", "lengths", "scan", "streaming", "memory")

# A cell written as a user writes one, named as a user names it (rnnkit/bench/user_cell.py).
USER_CELL = "rnnkit.bench.user_cell:UserGatedCell"
# Every cell family through Recurrent(name, I, H, **options), backend="auto" (the default); then rows
# that the report compares with the row they build on (rnnkit.bench.comparisons): a cell of one's own,
# layer norm, zoneout and recurrent dropout (layer options), and bfloat16 autocast.
DEFAULT_CELLS = ("elman", "jordan", "residual",
                 "lstm:standard", "lstm:vanilla", "lstm:nig", "lstm:nfg", "lstm:nog", "lstm:niaf",
                 "lstm:noaf", "lstm:np", "lstm:cifg", "lstm:fgr",
                 "gru:standard", "gru:original", "indrnn", "mingru", "minlstm",
                 USER_CELL, "lstm:layer_norm=true", "lstm:zoneout=0.1", "lstm:recurrent_dropout=0.25",
                 "lstm:standard+bf16", "lstm:vanilla+bf16", "gru:standard+bf16")
QUICK_CELLS = ("elman", "lstm:standard", "lstm:vanilla", "gru:standard", "gru:original", "mingru",
               USER_CELL, "lstm:standard+bf16")
TIME_TARGET = 1.5       # issue 14: those rows at most 1.5x the time of the row they build on
LENGTHS_CELLS = ("lstm:vanilla", "gru:original")       # against nn.LSTM on a PackedSequence
SCAN_CELLS = ("mingru", "minlstm")
SCAN_TARGET = 3.0                                       # tokens/s ratio to nn.LSTM named in the issue


@dataclass(frozen=True)
class Size:
    """One problem size: batch B, length T, input I, hidden H."""
    B: int
    T: int
    I: int
    H: int

    @classmethod
    def parse(cls, text: str) -> "Size":
        """``"32x100x256"`` (B x T x H, I = H) or ``"32x100x64x256"`` (B x T x I x H)."""
        parts = text.strip().lower().split("x")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) not in (3, 4) or min(numbers) < 1:
            raise ValueError(f"a size must be BxTxH or BxTxIxH with positive integers, like 32x100x256; "
                             f"got {text!r}")
        B, T, *rest = numbers
        I, H = (rest[0], rest[0]) if len(rest) == 1 else rest
        return cls(B, T, I, H)

    def __str__(self) -> str:
        return f"{self.B}x{self.T}x{self.H}" if self.I == self.H else f"{self.B}x{self.T}x{self.I}x{self.H}"

    @property
    def label(self) -> str:
        io = f"I=H={self.H}" if self.I == self.H else f"I={self.I} H={self.H}"
        return f"B={self.B} T={self.T} {io}"


DEFAULT_SIZES = (Size(32, 100, 128, 128), Size(32, 100, 256, 256), Size(64, 200, 512, 512))
QUICK_SIZES = (Size(8, 20, 32, 32),)


@dataclass(frozen=True)
class TimerConfig:
    """Repeats per round (``rnnkit.bench.timing.time_interleaved``)."""
    rounds: int = 3
    warmup: int = 1
    min_reps: int = 5
    min_time: float = 0.5          # seconds of timed repeats per subject and round, at least min_reps
    max_reps: int = 50


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[Size, ...] = DEFAULT_SIZES
    cells: tuple[str, ...] = DEFAULT_CELLS
    sections: tuple[str, ...] = SECTIONS
    threads: int = 2
    timer: TimerConfig = field(default_factory=TimerConfig)
    scan_size: Size = Size(16, 4096, 256, 256)
    streaming_steps: int = 200
    tolerance: float = 1e-4        # fast path against the reference loop, float32
    # under bfloat16 autocast: 5x bfloat16's relative rounding 2^-8 (the paths round in different
    # places; torch's LSTM kernel runs its recurrence in bfloat16); measured 2e-3 to 6e-3
    bf16_tolerance: float = 2e-2
    seed: int = 0
    quick: bool = False
    options: tuple[tuple[str, str], ...] = ()     # the options as given, for command_line

    @classmethod
    def from_options(cls, *, quick: bool = False, sizes: str | None = None, cells: str | None = None,
                     rounds: int | None = None, threads: int | None = None, sections: str | None = None,
                     markdown: str | None = None) -> "BenchConfig":
        """The configuration of ``rnnkit bench`` / ``benchmarks/speed.py`` from their option strings
        (None = not given). ``--quick`` picks small sizes, a subset of cells and few repeats; any
        option given explicitly still wins. Raises ValueError naming the bad option."""
        given = [("--quick", "")] if quick else []
        for flag, value in (("--sizes", sizes), ("--cells", cells), ("--rounds", rounds),
                            ("--threads", threads), ("--sections", sections), ("--markdown", markdown)):
            if value is not None:
                given.append((flag, str(value)))
        base = QUICK if quick else cls()
        changes: dict = {"options": tuple(given)}
        if sizes is not None:
            changes["sizes"] = tuple(Size.parse(s) for s in _items(sizes, "--sizes"))
        if cells is not None:
            changes["cells"] = tuple(_items(cells, "--cells"))
            repeated = sorted({c for c in changes["cells"] if changes["cells"].count(c) > 1})
            if repeated:
                raise ValueError(f"--cells names {', '.join(repeated)} more than once")
        if sections is not None:
            chosen = _items(sections, "--sections")
            unknown = [s for s in chosen if s not in SECTIONS]
            if unknown:
                raise ValueError(f"--sections: unknown section(s) {', '.join(unknown)}; "
                                 f"choose from {','.join(SECTIONS)}")
            changes["sections"] = tuple(s for s in SECTIONS if s in chosen)   # run in the usual order
        if rounds is not None:
            if rounds < 1:
                raise ValueError(f"--rounds must be at least 1, got {rounds}")
            changes["timer"] = replace(base.timer, rounds=rounds)
        if threads is not None:
            if threads < 1:
                raise ValueError(f"--threads must be at least 1, got {threads}")
            changes["threads"] = threads
        return replace(base, **changes)

    def command_line(self, program: str) -> str:
        """The command that reproduces this run, e.g. ``rnnkit bench --quick --sections train``."""
        words = [program]
        for flag, value in self.options:
            words += [flag] + ([value] if value else [])
        return " ".join(w if w == program else shlex.quote(w) for w in words)


def _items(text: str, option: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError(f"{option} needs at least one comma-separated item, got {text!r}")
    return items


# Small sizes and few repeats: the whole run in well under a minute on two cores.
QUICK = BenchConfig(sizes=QUICK_SIZES, cells=QUICK_CELLS, quick=True,
                    timer=TimerConfig(rounds=2, warmup=1, min_reps=3, min_time=0.02, max_reps=10),
                    scan_size=Size(4, 256, 32, 32), streaming_steps=20)
