"""Speed of rnnkit's layers against torch.nn.LSTM and torch.nn.GRU on the CPU; writes docs/performance.md.

    python benchmarks/speed.py --markdown docs/performance.md      # the full run (the document gives its time)
    python benchmarks/speed.py --quick                             # under a minute

The same benchmark as ``rnnkit bench`` (same options; the library is ``rnnkit.bench``): training
steps of every cell family, of a user-defined cell, of the LSTM with layer norm, zoneout and
recurrent dropout, and under bfloat16 autocast (``lstm:standard+bf16``); variable lengths,
minGRU/minLSTM on long sequences, batch-1 streaming and peak memory, each configuration checked
against the reference loop before it is timed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnkit.bench import SECTIONS, BenchConfig, parse_specs, run_and_report

PROGRAM = "python benchmarks/speed.py"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a subset of cells, few repeats")
    parser.add_argument("--sizes", help="BxTxH,... with I = H (default 32x100x128,32x100x256,64x200x512)")
    parser.add_argument("--cells", help="comma-separated cell specs, e.g. elman,lstm:cifg,lstm:zoneout=0.1,"
                                        "gru:standard+bf16,mypkg.cells:MyCell")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 3)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default 2)")
    parser.add_argument("--sections", help=f"comma-separated, of {','.join(SECTIONS)} (default all)")
    parser.add_argument("--markdown", help="write the report as markdown to this file")
    args = parser.parse_args(argv)
    if args.markdown is not None and not Path(args.markdown).resolve().parent.is_dir():
        parser.error(f"cannot write {args.markdown!r}: its directory does not exist")
    try:
        config = BenchConfig.from_options(quick=args.quick, sizes=args.sizes, cells=args.cells,
                                          rounds=args.rounds, threads=args.threads,
                                          sections=args.sections, markdown=args.markdown)
        parse_specs(config.cells)
    except ValueError as error:
        parser.error(str(error))
    run_and_report(config, program=PROGRAM, markdown=args.markdown)


if __name__ == "__main__":
    main(sys.argv[1:])
