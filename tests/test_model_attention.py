"""Attention: each score against its formula written here, weights a distribution over valid steps."""
import pytest
import torch

from rnnkit.models.attention import Attention

B, S, HQ, HK = 3, 5, 4, 6
LENGTHS = torch.tensor([5, 2, 3])


def inputs(query_size=HQ, key_size=HK):
    torch.manual_seed(0)
    query = torch.randn(B, query_size, dtype=torch.float64)
    keys = torch.randn(B, S, key_size, dtype=torch.float64)
    mask = torch.arange(S).unsqueeze(0) < LENGTHS.unsqueeze(1)                    # (B, S)
    return query, keys, mask


def make(kind):
    query_size = HK if kind == "luong-dot" else HQ
    torch.manual_seed(1)
    return Attention(query_size, HK, kind).double(), query_size


def formula_scores(attention, q, k):
    """The paper's score of one query (Hq,) against one key (Hk,), written from the equations."""
    if attention.kind == "bahdanau":
        W = attention.query_projection.weight                                     # (A, Hq)
        U = attention.key_projection.weight                                       # (A, Hk)
        v = attention.score.weight[0]                                             # (A,)
        return v @ torch.tanh(W @ q + U @ k)
    if attention.kind == "luong-dot":
        return q @ k
    return q @ attention.bilinear.weight @ k                                      # q^T W_a k


@pytest.mark.parametrize("kind", ["bahdanau", "luong-dot", "luong-general"])
def test_each_kind_matches_its_formula_one_key_at_a_time(kind):
    attention, query_size = make(kind)
    query, keys, mask = inputs(query_size)
    context, weights = attention(query, keys, mask)
    for b in range(B):
        n = int(LENGTHS[b])
        scores = torch.stack([formula_scores(attention, query[b], keys[b, s]) for s in range(n)])
        expected = torch.exp(scores) / torch.exp(scores).sum()
        torch.testing.assert_close(weights[b, :n], expected)
        torch.testing.assert_close(context[b], (expected.unsqueeze(1) * keys[b, :n]).sum(0))


@pytest.mark.parametrize("kind", ["bahdanau", "luong-dot", "luong-general"])
def test_weights_sum_to_one_and_are_exactly_zero_on_padding(kind):
    attention, query_size = make(kind)
    query, keys, mask = inputs(query_size)
    keys = keys.masked_fill(~mask.unsqueeze(-1), 1e6)              # huge padding must not leak in
    _, weights = attention(query, keys, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, dtype=torch.float64))
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights[mask] > 0)


def test_padding_values_change_nothing_and_get_no_gradient():
    attention, _ = make("bahdanau")
    query, keys, mask = inputs()
    keys.requires_grad_(True)
    context, _ = attention(query, keys, mask)
    context.sum().backward()
    assert torch.all(keys.grad[~mask] == 0)
    other = keys.detach().clone()
    other[~mask] = torch.randn(int((~mask).sum()), HK, dtype=torch.float64)
    torch.testing.assert_close(attention(query, other, mask)[0], context.detach())


def test_a_row_without_valid_steps_gives_zero_weights_not_nan():
    attention, _ = make("luong-general")
    query, keys, mask = inputs()
    mask[1] = False
    context, weights = attention(query, keys, mask)
    assert torch.all(weights[1] == 0) and torch.all(context[1] == 0)
    assert not torch.isnan(weights).any()


def test_prepared_keys_give_the_same_result():
    attention, _ = make("bahdanau")
    query, keys, mask = inputs()
    direct = attention(query, keys, mask)
    prepared = attention(query, keys, mask, prepared=attention.prepare(keys))
    torch.testing.assert_close(direct, prepared)


def test_gradcheck_bahdanau_float64():
    attention, _ = make("bahdanau")
    query, keys, mask = inputs()
    query.requires_grad_(True)
    keys.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q, k: attention(q, k, mask), (query, keys))


def test_errors_name_the_argument_and_the_shapes():
    with pytest.raises(ValueError, match="kind must be one of"):
        Attention(4, 4, "concat")
    with pytest.raises(ValueError, match="query_size == key_size"):
        Attention(4, 6, "luong-dot")
    attention, _ = make("luong-general")
    query, keys, mask = inputs()
    with pytest.raises(ValueError, match=r"query must have shape \(B, query_size=4\), got \(3, 6\)"):
        attention(keys[:, 0], keys, mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        attention(query, keys, mask.long())
