"""The synthetic tasks are what their papers describe."""
import torch

from rnnkit.tasks import ADDING_BASELINE_MSE, adding_problem, copy_memory, memoryless_cross_entropy


def test_adding_problem_marks_one_value_in_each_half_and_targets_their_sum():
    g = torch.Generator().manual_seed(0)
    x, y = adding_problem(500, 40, generator=g)
    assert x.shape == (40, 500, 2) and y.shape == (500, 1)
    markers = x[..., 1]
    assert torch.equal(markers.sum(0), torch.full((500,), 2.0))
    assert torch.equal(markers[:20].sum(0), torch.ones(500))
    manual = torch.stack([x[markers[:, b] == 1, b, 0].sum() for b in range(500)])
    torch.testing.assert_close(y[:, 0], manual)
    # Answering the mean (1.0) costs about 1/6.
    assert abs(((y - 1.0) ** 2).mean().item() - ADDING_BASELINE_MSE) < 0.03


def test_copy_memory_targets_repeat_the_shown_symbols_after_the_delimiter():
    g = torch.Generator().manual_seed(0)
    x, y = copy_memory(7, delay=15, n_symbols=5, n_categories=4, generator=g)
    assert x.shape == y.shape == (25, 7)
    assert torch.equal(y[-5:], x[:5])
    assert torch.equal(x[5 + 15 - 1], torch.full((7,), 5))
    assert (y[:-5] == 0).all() and (x[:5] >= 1).all() and (x[:5] <= 4).all()
    assert abs(memoryless_cross_entropy(15, 5, 4) - 5 * torch.log(torch.tensor(4.0)).item() / 25) < 1e-9
