"""The Python time-ordered scan of minGRU / minLSTM (the form used without the compiled loops)
against the log-space parallel scan, and its hand-derived backward against gradcheck."""
import pytest
import torch

from rnnkit import cells
from rnnkit.engine.scan import gated_scan, log_space_scan

DTYPE = torch.float64


def _inputs(name, T, B=3, H=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    cell = cells.create(name, 2, H, dtype=DTYPE)
    u = (2 * torch.randn(T, B, cell.n_projections * H, dtype=DTYPE, generator=g)).requires_grad_()
    h0 = torch.randn(B, H, dtype=DTYPE, generator=g).requires_grad_()      # any sign
    return cell, u, h0


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
@pytest.mark.parametrize("T", [1, 2, 40])
def test_python_scan_equals_the_log_space_scan_with_and_without_lengths(name, T):
    cell, u, h0 = _inputs(name, T, seed=T)
    valid = torch.arange(T).unsqueeze(1) < torch.tensor([T, max(1, T // 2), 1])     # (T, 3)
    for mask in (None, valid):
        torch.testing.assert_close(gated_scan(cell, u, h0, mask),
                                   log_space_scan(*cell.log_coefficients(u), h0, mask),
                                   atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
@pytest.mark.parametrize("T", [1, 5])
def test_python_scan_gradients_pass_gradcheck(name, T):
    cell, u, h0 = _inputs(name, T, seed=10 + T)
    valid = torch.ones(T, 3, dtype=torch.bool)
    valid[T // 2 + 1:, 1] = False
    assert torch.autograd.gradcheck(lambda u, h0: gated_scan(cell, u, h0), (u, h0))
    assert torch.autograd.gradcheck(lambda u, h0: gated_scan(cell, u, h0, valid), (u, h0))
