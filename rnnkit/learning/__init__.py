"""Learning algorithms for recurrent networks: truncated BPTT, gradient clipping, real-time recurrent learning."""
from .clipping import GradientClipper, total_norm, weight_decay_groups
from .tbptt import TBPTT, ChunkResult, StreamResult
from .rtrl import RTRL, rtrl_gradient, train_online
from .approx_rtrl import UORO
