"""PyTorch's time_sequence_prediction example, trimmed to run in a test, with the LSTM cell class as a
parameter so that the same code runs with ``torch.nn.LSTMCell`` and ``rnnkit.LSTMCell``.

Derived from pytorch/examples, time_sequence_prediction/train.py (commit
04b1f3cec923d40972d998a7ed3c00c1b37e765e) and time_sequence_prediction/generate_sine_wave.py
(commit 2b456e809fe249f2153616578c116e4b2954ca18), re-typed and trimmed:

    Copyright (c) 2017 Pytorch contributors. All rights reserved. BSD 3-Clause License:
    Redistribution and use in source and binary forms, with or without modification, are permitted
    provided that the following conditions are met: (1) redistributions of source code must retain
    the above copyright notice, this list of conditions and the following disclaimer;
    (2) redistributions in binary form must reproduce the above copyright notice, this list of
    conditions and the following disclaimer in the documentation and/or other materials provided
    with the distribution; (3) neither the name of the copyright holder nor the names of its
    contributors may be used to endorse or promote products derived from this software without
    specific prior written permission. THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND
    CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES ARE DISCLAIMED (full text:
    https://github.com/pytorch/examples/blob/main/LICENSE).

What is kept: the ``Sequence`` module (two LSTM cells of 51 units and a Linear, float64), its loop
over ``input.split(1, dim=1)``, the ``future`` loop that feeds predictions back, the MSE loss and
LBFGS (lr 0.8) with a closure, and the test prediction after each step. What is trimmed: 8 sine
waves of length 60 instead of 100 of length 1000 (made in memory, not saved to traindata.pt),
``steps`` LBFGS steps (2 in the test) instead of 15, a 20-step future instead of 1000, no argparse,
device choice, printing or plots; the losses are returned instead.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim


def sine_waves(waves: int = 8, length: int = 60, period: int = 20, seed: int = 2) -> np.ndarray:
    """generate_sine_wave.py's data, (waves, length) float64: sin(x / period) with x shifted by a
    random integer in [−4·period, 4·period) per wave."""
    rng = np.random.RandomState(seed)
    x = np.empty((waves, length), "int64")
    x[:] = np.array(range(length)) + rng.randint(-4 * period, 4 * period, waves).reshape(waves, 1)
    return np.sin(x / 1.0 / period).astype("float64")


class Sequence(nn.Module):
    def __init__(self, cell_class=nn.LSTMCell):
        super(Sequence, self).__init__()
        self.lstm1 = cell_class(1, 51)
        self.lstm2 = cell_class(51, 51)
        self.linear = nn.Linear(51, 1)
        self.dummy_param = nn.Parameter(torch.empty(0))

    def forward(self, input, future=0):
        outputs = []
        device = self.dummy_param.device
        h_t = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)
        c_t = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)
        h_t2 = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)
        c_t2 = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)

        for input_t in input.split(1, dim=1):                   # each (B, 1)
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for i in range(future):                                 # predict the future from itself
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        outputs = torch.cat(outputs, dim=1)                     # (B, T + future)
        return outputs


def run(cell_class=nn.LSTMCell, steps: int = 2, waves: int = 8, length: int = 60, future: int = 20,
        seed: int = 0) -> dict:
    """Train as the example does; the training loss of every closure call, the test loss after each
    step and the last prediction (3 test waves, length − 1 + future)."""
    torch.manual_seed(seed)
    data = torch.from_numpy(sine_waves(waves, length))
    input = data[3:, :-1]
    target = data[3:, 1:]
    test_input = data[:3, :-1]
    test_target = data[:3, 1:]
    seq = Sequence(cell_class).double()
    criterion = nn.MSELoss()
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8)
    train_losses, test_losses = [], []
    for i in range(steps):
        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            train_losses.append(loss.item())
            loss.backward()
            return loss
        optimizer.step(closure)
        with torch.no_grad():
            pred = seq(test_input, future=future)
            loss = criterion(pred[:, :-future], test_target)
            test_losses.append(loss.item())
    return {"train": train_losses, "test": test_losses, "prediction": pred}
