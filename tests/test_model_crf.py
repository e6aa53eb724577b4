"""LinearChainCRF against brute-force enumeration of every tag path, gradcheck, and padding."""
import itertools

import pytest
import torch

from rnnkit.models.crf import LinearChainCRF


def random_crf(num_tags: int, seed: int = 0) -> LinearChainCRF:
    """A CRF in float64 whose scores are large enough that paths differ clearly."""
    torch.manual_seed(seed)
    crf = LinearChainCRF(num_tags).double()
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_(0.0, 1.0)
    return crf


@torch.no_grad()
def path_score(crf: LinearChainCRF, emissions, path) -> float:
    """s(y) written out from the formula: start + emissions + transitions + end."""
    total = crf.start[path[0]] + crf.end[path[-1]]
    total = total + sum(emissions[t, tag] for t, tag in enumerate(path))
    total = total + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))
    return total.item()


def all_paths(num_tags: int, length: int):
    return list(itertools.product(range(num_tags), repeat=length))


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_log_partition_and_viterbi_match_enumeration_of_every_path(length):
    K = 3
    crf = random_crf(K, seed=length)
    emissions = torch.randn(1, length, K, dtype=torch.float64)
    lengths = torch.tensor([length])
    scores = {path: path_score(crf, emissions[0], path) for path in all_paths(K, length)}

    log_z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0)
    torch.testing.assert_close(crf.log_partition(emissions, lengths)[0], log_z)
    assert crf.decode(emissions, lengths) == [list(max(scores, key=scores.get))]
    for path in [(0,) * length, tuple(range(length)) if length <= K else (2, 1, 0, 2)]:
        tags = torch.tensor([path])
        assert crf.score(emissions, tags, lengths).item() == pytest.approx(scores[path])
        assert crf.log_likelihood(emissions, tags, lengths).item() == pytest.approx(
            scores[path] - log_z.item())


def test_probabilities_of_all_paths_sum_to_one():
    K, T = 3, 4
    crf = random_crf(K, seed=7)
    emissions = torch.randn(1, T, K, dtype=torch.float64)
    paths = torch.tensor(all_paths(K, T))                                       # (K^T, T)
    likelihoods = crf.log_likelihood(emissions.expand(len(paths), T, K), paths,
                                     torch.full((len(paths),), T))
    torch.testing.assert_close(likelihoods.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_padded_batch_equals_each_sequence_alone():
    K, T = 4, 6
    crf = random_crf(K, seed=3)
    lengths = torch.tensor([6, 2, 1, 4])
    emissions = torch.randn(4, T, K, dtype=torch.float64)
    tags = torch.randint(0, K, (4, T))
    for b, n in enumerate(lengths.tolist()):     # garbage past each end: huge scores, NaN, bad ids
        emissions[b, n:] = float("nan") if b % 2 else 1e6
        tags[b, n:] = -100
    batched_ll = crf.log_likelihood(emissions, tags, lengths)
    batched_paths = crf.decode(emissions, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = (emissions[b:b + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(batched_ll[b], crf.log_likelihood(alone[0], tags[b:b + 1, :n], alone[1])[0])
        assert batched_paths[b] == crf.decode(*alone)[0]
        assert len(batched_paths[b]) == n


def test_padding_gets_no_gradient_and_nan_padding_leaves_gradients_finite():
    crf = random_crf(3, seed=1)
    emissions = torch.randn(2, 5, 3, dtype=torch.float64)
    emissions[1, 2:] = float("nan")
    emissions.requires_grad_(True)
    tags = torch.randint(0, 3, (2, 5))
    crf.log_likelihood(emissions, tags, torch.tensor([5, 2])).sum().backward()
    assert torch.all(emissions.grad[1, 2:] == 0)
    assert torch.isfinite(emissions.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in crf.parameters())


def test_gradcheck_in_float64():
    crf = random_crf(3, seed=2)
    tags = torch.randint(0, 3, (3, 4))
    lengths = torch.tensor([4, 1, 3])
    emissions = torch.randn(3, 4, 3, dtype=torch.float64, requires_grad=True)
    parameters = tuple(p.detach().clone().requires_grad_(True)
                       for p in (crf.transitions, crf.start, crf.end))

    def log_likelihood(emissions, transitions, start, end):
        # the parameters enter as inputs so that gradcheck differentiates them too
        replaced = {"transitions": transitions, "start": start, "end": end}
        return torch.func.functional_call(crf, replaced, (emissions, tags, lengths), strict=True)

    assert torch.autograd.gradcheck(log_likelihood, (emissions,) + parameters)


def test_calling_the_crf_gives_the_log_likelihood():
    crf = random_crf(3)
    emissions = torch.randn(1, 2, 3, dtype=torch.float64)
    tags, lengths = torch.tensor([[0, 2]]), torch.tensor([2])
    torch.testing.assert_close(crf(emissions, tags, lengths), crf.log_likelihood(emissions, tags, lengths))


@pytest.mark.parametrize("call,message", [
    (lambda crf: crf.log_partition(torch.zeros(2, 3, 4), torch.tensor([3, 3])), r"\(B, T, 3\)"),
    (lambda crf: crf.log_partition(torch.zeros(2, 3, 3), torch.tensor([3, 4])), "must not exceed"),
    (lambda crf: crf.log_partition(torch.zeros(2, 3, 3), torch.tensor([3, 0])), "at least 1"),
    (lambda crf: crf.score(torch.zeros(2, 3, 3), torch.zeros(2, 2, dtype=torch.long), torch.tensor([3, 3])),
     r"tags must be an integer tensor of shape \(2, 3\)"),
    (lambda crf: crf.score(torch.zeros(1, 2, 3), torch.tensor([[0, 3]]), torch.tensor([2])),
     r"tags must lie in \[0, 3\)"),
])
def test_errors_name_the_argument_and_the_expected_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call(LinearChainCRF(3))


def test_num_tags_must_be_positive():
    with pytest.raises(ValueError, match="num_tags"):
        LinearChainCRF(0)
