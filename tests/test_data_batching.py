"""Batching: padding with lengths, bucketed batch orders (every index once, little padding), and
language-model streams that rebuild the token stream."""
import random

import pytest
import torch

from rnnkit.data.batching import bucket_batches, count_stream_batches, pad_batch, stream_batches
from rnnkit.data.labelled import read_sst_sentences


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    """Padded positions over real positions, when each batch is padded to its longest member."""
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return padded / sum(lengths) - 1


# ---------------------------------------------------------------- pad_batch

def test_pad_batch_matches_a_hand_padded_tensor():
    ids, lengths = pad_batch([[5, 6, 7], [8], [9, 10]], pad_index=0)
    assert ids.dtype == torch.long and lengths.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]


def test_pad_batch_agrees_with_torch_pad_sequence():
    generator = random.Random(1)
    sequences = [[generator.randrange(1, 50) for _ in range(generator.randrange(1, 12))] for _ in range(9)]
    ids, lengths = pad_batch(sequences, pad_index=3)
    expected = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in sequences], batch_first=True,
                                               padding_value=3)
    assert torch.equal(ids, expected) and lengths.tolist() == [len(s) for s in sequences]


@pytest.mark.parametrize("sequences, match", [([], "empty batch"), ([[1], [], [2]], r"sequences\[1\]")])
def test_pad_batch_refuses_empty_input(sequences, match):
    with pytest.raises(ValueError, match=match):
        pad_batch(sequences, pad_index=0)


# ---------------------------------------------------------------- bucket_batches

@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("pool", [1, 3, None])
def test_bucket_batches_use_every_index_once(shuffle, pool):
    lengths = [random.Random(i).randrange(1, 40) for i in range(103)]
    batches = bucket_batches(lengths, batch_size=8, shuffle=shuffle, pool=pool)
    assert sorted(i for batch in batches for i in batch) == list(range(103))
    assert all(1 <= len(batch) <= 8 for batch in batches)


def test_bucket_batches_sort_within_pools():
    lengths = [random.Random(i).randrange(1, 40) for i in range(64)]
    batches = bucket_batches(lengths, batch_size=4, shuffle=False, pool=4)
    # without shuffling, pool k holds examples 16k..16k+15, in length order
    for k in range(4):
        pooled = [i for batch in batches[4 * k:4 * k + 4] for i in batch]
        assert sorted(pooled) == list(range(16 * k, 16 * k + 16))
        assert [lengths[i] for i in pooled] == sorted(lengths[16 * k:16 * k + 16])


def test_bucket_batches_are_seeded():
    lengths = list(range(1, 200))
    assert bucket_batches(lengths, 10, seed=3) == bucket_batches(lengths, 10, seed=3)
    assert bucket_batches(lengths, 10, seed=3) != bucket_batches(lengths, 10, seed=4)


@pytest.mark.parametrize("arguments, match", [({"batch_size": 0}, "batch_size"),
                                              ({"batch_size": 2, "pool": 0}, "pool")])
def test_bucket_batches_refuse_bad_sizes(arguments, match):
    with pytest.raises(ValueError, match=match):
        bucket_batches([1, 2, 3], **arguments)


def test_bucketing_wastes_far_less_padding_than_random_batches(shared_data):
    lengths = [len(r.tokens) for r in read_sst_sentences(shared_data("sst/sst2_sentences/stsa.binary.train"))]
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    random_batches = [order[i:i + 32] for i in range(0, len(order), 32)]
    random_waste = padding_fraction(random_batches, lengths)
    bucketed_waste = padding_fraction(bucket_batches(lengths, 32), lengths)
    assert random_waste > 0.5                       # SST-2 lengths vary (2 to 52 tokens)
    assert bucketed_waste < random_waste / 10


# ---------------------------------------------------------------- stream_batches

@pytest.mark.parametrize("num_tokens, batch_size, seq_len", [(103, 4, 7), (100, 4, 6), (40, 1, 39), (9, 3, 5),
                                                                  (22, 2, 3)])  # last window 1 step
def test_stream_batches_rebuild_the_stream(num_tokens, batch_size, seq_len):
    ids = torch.arange(num_tokens) * 10                                   # distinct tokens
    windows = list(stream_batches(ids, batch_size, seq_len))
    assert len(windows) == count_stream_batches(num_tokens, batch_size, seq_len)
    inputs = torch.cat([x for x, _ in windows], dim=1)                    # (B, N - 1)
    targets = torch.cat([y for _, y in windows], dim=1)                   # (B, N - 1)
    per_row = num_tokens // batch_size
    for b in range(batch_size):                                          # row b: tokens b·N ... b·N + N - 1
        row = ids[b * per_row:(b + 1) * per_row]
        assert torch.equal(inputs[b], row[:-1]) and torch.equal(targets[b], row[1:])
    assert all(x.shape == y.shape and x.shape[1] <= seq_len for x, y in windows)
    assert all(x.shape[1] == seq_len for x, _ in windows[:-1])


def test_stream_batches_refuse_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        stream_batches(torch.zeros(2, 5, dtype=torch.long), 2, 3)
    with pytest.raises(ValueError, match="at least 2 per row"):
        stream_batches(torch.arange(5), 3, 3)
    with pytest.raises(ValueError, match="seq_len"):
        stream_batches(torch.arange(50), 2, 0)
