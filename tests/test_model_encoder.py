"""The shared recurrent encoder: padding changes nothing, the summary is each sequence's last output."""
import pytest
import torch

from rnnkit.models import EncoderConfig, length_mask


@pytest.mark.parametrize("cell,bidirectional", [("lstm", False), ("gru", True), ("jordan", True)])
def test_each_sequence_encodes_as_it_would_alone(cell, bidirectional):
    torch.manual_seed(0)
    encoder = EncoderConfig(cell, 6, num_layers=2, bidirectional=bidirectional).build(4).double()
    x = torch.randn(3, 7, 4, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5])
    outputs, summary, _ = encoder(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone_outputs, alone_summary, _ = encoder(x[b:b + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(outputs[b, :n], alone_outputs[0])
        torch.testing.assert_close(summary[b], alone_summary[0])
        assert torch.all(outputs[b, n:] == 0)                 # nothing past the end
    assert summary.shape == (3, encoder.output_size)


def test_length_mask():
    mask = length_mask(torch.tensor([2, 0, 3]), 3)
    assert mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
