"""How a cell runs over time: one dispatcher (``dispatch``) over torch's kernels, the compiled loops,
the generated loops, the scans and the reference loop."""
from . import fused
from .dispatch import PATHS, explain
from .lengths import check_lengths, reverse_padded, valid_mask
from .loop import SequenceResult, reference_loop, run_sequence
from .native import flat_weights, run_native

__all__ = ["check_lengths", "reverse_padded", "valid_mask", "SequenceResult", "run_sequence",
           "reference_loop", "flat_weights", "run_native", "fused", "PATHS", "explain"]
