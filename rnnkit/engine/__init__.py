"""How a cell runs over time: the reference loop, the scans, torch's kernels, the compiled loops."""
from . import fused
from .lengths import check_lengths, reverse_padded, valid_mask
from .loop import SequenceResult, run_sequence
from .native import flat_weights, run_native

__all__ = ["check_lengths", "reverse_padded", "valid_mask", "SequenceResult", "run_sequence",
           "flat_weights", "run_native", "fused"]
