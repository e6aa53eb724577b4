"""Learning algorithms for recurrent networks: truncated BPTT, gradient clipping."""
from .clipping import GradientClipper, total_norm, weight_decay_groups
from .tbptt import TBPTT, ChunkResult, StreamResult
