"""The time-ordered linear scan h_t = a_t ⊙ h_{t−1} + b_t against the log-space parallel scan."""
import pytest
import torch

from rnnkit.cells.minimal import log_space_scan
from rnnkit.engine.scan import linear_scan

DTYPE = torch.float64


def _inputs(T, B=3, H=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(T, B, H, dtype=DTYPE, generator=g).requires_grad_()
    b = torch.rand(T, B, H, dtype=DTYPE, generator=g).requires_grad_()
    h0 = torch.randn(B, H, dtype=DTYPE, generator=g).requires_grad_()
    return a, b, h0


@pytest.mark.parametrize("T", [1, 2, 40])
def test_linear_scan_equals_the_log_space_scan_with_and_without_lengths(T):
    a, b, h0 = _inputs(T, seed=T)
    valid = torch.arange(T).unsqueeze(1) < torch.tensor([T, max(1, T // 2), 1])     # (T, 3)
    for mask in (None, valid):
        torch.testing.assert_close(linear_scan(a, b, h0, mask), log_space_scan(a.log(), b.log(), h0, mask),
                                   atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("T", [1, 5])
def test_linear_scan_gradients_pass_gradcheck(T):
    a, b, h0 = _inputs(T, seed=10 + T)
    valid = torch.ones(T, 3, dtype=torch.bool)
    valid[T // 2 + 1:, 1] = False
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0), (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_scan(a, b, h0, valid), (a, b, h0))
