"""A layer call whose input, state and weights disagree in dtype is refused up front, naming the state
(it used to end in a matrix product's error from deep inside the engine); cell options that cannot
initialise anything (a non-finite forget bias) are refused at construction."""
import pytest
import torch

import rnnkit
from rnnkit.errors import StateDtypeError


@pytest.mark.parametrize("cell, options", [("gru", {}), ("lstm", {}), ("lstm", {"variant": "vanilla"}),
                                           ("elman", {}), ("mingru", {})])
@pytest.mark.parametrize("state_dtype", [torch.float64, torch.long])
def test_a_state_of_another_dtype_than_the_input_names_the_state(cell, options, state_dtype):
    layer = rnnkit.Recurrent(cell, 4, 8, **options)
    state = tuple(torch.zeros(1, 2, size, dtype=state_dtype) for size in layer.state_sizes)
    with pytest.raises(StateDtypeError, match="state must have the input's dtype torch.float32"):
        layer(torch.randn(5, 2, 4), state if len(state) > 1 else state[0])


def test_the_state_dtype_error_is_the_type_torch_raises_and_rnnkits():
    with pytest.raises(RuntimeError):                    # torch.nn.GRU: RuntimeError from its kernel
        rnnkit.GRU(4, 8)(torch.randn(5, 2, 4), torch.zeros(1, 2, 8, dtype=torch.float64))
    with pytest.raises(TypeError):                       # rnnkit's DtypeError family
        rnnkit.GRU(4, 8)(torch.randn(5, 2, 4), torch.zeros(1, 2, 8, dtype=torch.float64))


def test_under_autocast_a_float32_state_with_a_lower_precision_input_runs():
    layer = rnnkit.LSTM(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, _ = layer(torch.randn(5, 2, 4).bfloat16(), (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)))
    assert output.shape == (5, 2, 8)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1.0", True])
def test_a_forget_bias_that_is_not_a_finite_number_is_refused(value):
    with pytest.raises(ValueError, match="forget_bias must be a finite number"):
        rnnkit.Recurrent("lstm", 4, 8, forget_bias=value)
