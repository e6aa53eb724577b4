"""The language model and its sampler: carried state = one long run, tied weights are one Parameter,
the loss is the log-softmax formula, sampling follows softmax(z / τ) with its filters, and generating
step by step equals re-reading the whole prefix."""
import itertools
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.data.batching import stream_batches
from rnnkit.data.text import iter_word_lines, read_characters
from rnnkit.data.vocab import UNK, Vocabulary
from rnnkit.models.encoder import EncoderConfig
from rnnkit.models.language_model import LanguageModel, detach_state
from rnnkit.models.sampling import generate, next_token_probabilities, sample_next

pytestmark = pytest.mark.usefixtures("one_thread")

V = 11


def small_model(cell="lstm", proj_size=None, **options) -> LanguageModel:
    torch.manual_seed(0)
    cell_options = {} if proj_size is None else {"proj_size": proj_size}
    return LanguageModel(V, encoder=EncoderConfig(cell, 8, num_layers=2, options=cell_options), **options).double()


def random_tokens(batch: int, steps: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, steps), generator=torch.Generator().manual_seed(seed))


# ----- the model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,options,state_sizes", [
    ("lstm", {}, [(2, 3, 8), (2, 3, 8)]),
    ("gru", {}, [(2, 3, 8)]),
    ("lstm", {"proj_size": 5, "tie_embeddings": True}, [(2, 3, 5), (2, 3, 8)]),
])
def test_shapes(cell, options, state_sizes):
    model = small_model(cell, **options)
    logits, state = model(random_tokens(3, 7))
    assert logits.shape == (3, 7, V)
    states = [state] if isinstance(state, torch.Tensor) else list(state)
    assert [tuple(s.shape) for s in states] == state_sizes


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_state_carried_across_windows_equals_one_run(cell):
    model = small_model(cell)
    tokens = random_tokens(2, 9)
    whole_logits, whole_state = model(tokens)
    first_logits, state = model(tokens[:, :4])
    second_logits, state = model(tokens[:, 4:], detach_state(state))
    torch.testing.assert_close(torch.cat([first_logits, second_logits], dim=1), whole_logits)
    for carried, whole in zip(_as_tuple(state), _as_tuple(whole_state)):
        torch.testing.assert_close(carried, whole)


def test_detach_state_keeps_values_and_cuts_the_graph():
    model = small_model()
    _, state = model(random_tokens(2, 3))
    assert all(s.grad_fn is not None for s in state)
    detached = detach_state(state)
    assert all(d.grad_fn is None and torch.equal(d, s) for d, s in zip(detached, state))
    assert detach_state(state[0]).grad_fn is None and detach_state(None) is None


def test_tied_embeddings_are_one_parameter_and_get_both_gradients():
    tied = small_model(tie_embeddings=True)
    assert tied.decoder.weight is tied.embedding.weight
    assert sum(p is tied.embedding.weight for p in tied.parameters()) == 1
    assert isinstance(tied.projection, nn.Identity)            # hidden 8 = embedding 8

    # An untied model with the same values: the tied gradient is the sum of its two gradients.
    untied = small_model(tie_embeddings=False)
    untied.load_state_dict(tied.state_dict())
    assert untied.decoder.weight is not untied.embedding.weight
    tokens = random_tokens(2, 5)
    tied.loss(tokens, tokens.roll(-1, 1)).total.backward()
    untied.loss(tokens, tokens.roll(-1, 1)).total.backward()
    torch.testing.assert_close(tied.embedding.weight.grad,
                               untied.embedding.weight.grad + untied.decoder.weight.grad)


def test_tied_embeddings_project_when_the_last_output_size_differs():
    model = small_model(embedding_dim=6, tie_embeddings=True)           # hidden 8 → embedding 6
    assert model.projection.weight.shape == (6, 8) and model.projection.bias is None
    assert model.decoder.weight.shape == (V, 6)
    assert model(random_tokens(2, 4))[0].shape == (2, 4, V)
    untied = small_model(embedding_dim=6)
    assert isinstance(untied.projection, nn.Identity) and untied.decoder.weight.shape == (V, 8)


def test_loss_is_the_summed_log_softmax_of_the_targets_inside_each_length():
    model = small_model()
    tokens, targets = random_tokens(3, 6, seed=2), random_tokens(3, 6, seed=3)
    lengths = torch.tensor([6, 2, 4])
    result = model.loss(tokens, targets, lengths=lengths)
    expected = 0.0
    for b, n in enumerate(lengths.tolist()):                    # each sequence alone, step by step
        logits, _ = model(tokens[b:b + 1, :n])
        log_p = logits[0].log_softmax(-1)
        expected -= sum(log_p[t, targets[b, t]] for t in range(n))
    torch.testing.assert_close(result.total, expected)
    assert result.tokens == 12
    torch.testing.assert_close(result.mean, expected / 12)
    full = model.loss(tokens, targets)
    assert full.tokens == 18
    torch.testing.assert_close(full.mean, F.cross_entropy(model(tokens)[0].reshape(18, V), targets.reshape(18)))


def test_padded_batch_returns_each_sequence_state_at_its_own_end():
    model = small_model("gru")
    tokens, lengths = random_tokens(2, 5), torch.tensor([5, 3])
    _, state = model(tokens, lengths=lengths)
    _, alone = model(tokens[1:, :3])
    torch.testing.assert_close(state[:, 1], alone[:, 0])


def test_errors_name_the_argument():
    model = small_model()
    with pytest.raises(ValueError, match=r"tokens must be a \(batch, time\) long tensor.*shape \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tokens must hold ids in \[0, vocab_size=11\), got values in \[0, 11\]"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match=r"targets must have the shape of tokens \(2, 3\), got \(2, 4\)"):
        model.loss(random_tokens(2, 3), random_tokens(2, 4))
    with pytest.raises(ValueError, match=r"must be one-way \(bidirectional=False\)"):
        LanguageModel(V, encoder=EncoderConfig(hidden_size=4, bidirectional=True))
    with pytest.raises(ValueError, match="dropout must be a number in"):
        LanguageModel(V, dropout=1.5)
    with pytest.raises(TypeError, match="does not take option.*'varient'"):
        LanguageModel(V, encoder=EncoderConfig(options={"varient": "cifg"}))   # misspelled options are not swallowed


# ----- sampling ----------------------------------------------------------------------------------
LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0], dtype=torch.float64)


def test_temperature_samples_follow_softmax_of_logits_over_temperature():
    draws = 40_000
    for temperature in (0.5, 2.0):
        tokens = sample_next(LOGITS.expand(draws, -1), temperature,
                             generator=torch.Generator().manual_seed(0))       # (draws,)
        empirical = torch.bincount(tokens, minlength=5).double() / draws
        exp = [math.exp(z / temperature) for z in LOGITS.tolist()]
        formula = torch.tensor([e / sum(exp) for e in exp], dtype=torch.float64)
        # binomial standard deviation ≤ 0.0025 at 40k draws: 0.012 is ~5 of them
        torch.testing.assert_close(empirical, formula, atol=0.012, rtol=0)


def test_top_k_keeps_the_k_largest_renormalised():
    probabilities = next_token_probabilities(LOGITS, temperature=1.0, top_k=2)
    e0, e1 = math.exp(2.0), math.exp(1.0)
    expected = torch.tensor([e0 / (e0 + e1), e1 / (e0 + e1), 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(probabilities, expected)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()      # probabilities 0.5, 0.3, 0.15, 0.05
    keep_two = next_token_probabilities(logits, top_p=0.7)     # 0.5 < 0.7 ≤ 0.8
    torch.testing.assert_close(keep_two, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    keep_one = next_token_probabilities(logits, top_p=0.4)
    torch.testing.assert_close(keep_one, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(next_token_probabilities(logits, top_p=1.0), logits.softmax(-1))


def test_sampling_arguments_are_checked():
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        next_token_probabilities(LOGITS, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k must be None or an int ≥ 1, got 0"):
        next_token_probabilities(LOGITS, top_k=0)
    with pytest.raises(ValueError, match=r"top_p must be None or a number in \(0, 1\], got 1.5"):
        next_token_probabilities(LOGITS, top_p=1.5)
    with pytest.raises(ValueError, match="prompt_ids must be a non-empty list"):
        generate(small_model(), [], 3)


class Recorder(nn.Module):
    """Wraps a model and keeps every call's tokens and logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, tokens, state=None):
        logits, state = self.model(tokens, state)
        self.calls.append((tokens.clone(), logits.clone()))
        return logits, state


@pytest.mark.parametrize("options", [{"greedy": True}, {"temperature": 0.8, "top_k": 5}, {"top_p": 0.9}])
def test_generation_step_by_step_equals_rereading_the_whole_prefix(options):
    recorder = Recorder(small_model())
    prompt = [3, 1, 4, 1]
    new = generate(recorder, prompt, 6, generator=torch.Generator().manual_seed(5), **options)
    assert len(new) == 6
    # the prompt is read once, then each call reads one token: no call re-reads the prefix
    assert [tuple(t.shape) for t, _ in recorder.calls] == [(1, 4)] + [(1, 1)] * 5
    assert recorder.calls[0][0].tolist() == [prompt]
    assert [t.item() for t, _ in recorder.calls[1:]] == new[:-1]
    step_logits = torch.cat([logits[:, -1] for _, logits in recorder.calls])   # (6, V)
    whole_logits, _ = recorder.model(torch.tensor([prompt + new[:-1]]))        # (1, 9, V)
    torch.testing.assert_close(step_logits, whole_logits[0, len(prompt) - 1:])
    if options.get("greedy"):
        assert new == whole_logits[0, len(prompt) - 1:].argmax(-1).tolist()


def test_top_k_one_and_temperature_zero_are_greedy():
    model = small_model()
    greedy = generate(model, [2, 7], 12, greedy=True)
    assert generate(model, [2, 7], 12, top_k=1, generator=torch.Generator().manual_seed(9)) == greedy
    assert generate(model, [2, 7], 12, temperature=0) == greedy


def test_seeded_generation_is_reproducible_and_seeds_differ():
    model = small_model()
    runs = [generate(model, [0], 30, temperature=1.5, generator=torch.Generator().manual_seed(seed))
            for seed in (1, 1, 2)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_generation_stops_after_eos_and_restores_training_mode():
    model = small_model()
    model.train()
    first = generate(model, [1], 1, greedy=True)[0]
    assert generate(model, [1], 10, greedy=True, eos_index=first) == [first]
    assert model.training
    assert generate(model, [1], 0) == []


# ----- the model learns --------------------------------------------------------------------------
def train_truncated_bptt(model: LanguageModel, train_ids, epochs: int, batch_size: int, seq_len: int,
                         lr: float) -> None:
    """Adam over Zaremba-style windows, the state carried (and detached) from window to window."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        state = None
        for inputs, targets in stream_batches(train_ids, batch_size, seq_len):
            result = model.loss(inputs, targets, state)
            optimizer.zero_grad()
            result.mean.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            state = detach_state(result.state)


@torch.no_grad()
def validation_nats(model: LanguageModel, valid_ids) -> float:
    """Mean NLL per token of the validation stream (10 streams, read with the state carried)."""
    model.eval()
    total, tokens, state = 0.0, 0, None
    for inputs, targets in stream_batches(valid_ids, 10, 200):
        result = model.loss(inputs, targets, state)
        total, tokens, state = total + result.total.item(), tokens + result.tokens, result.state
    return total / tokens


def unigram_nats(train_ids, valid_ids, vocab_size: int) -> float:
    """Cross-entropy of validation under add-one smoothed training frequencies."""
    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1      # (V,)
    return -(counts / counts.sum()).log()[valid_ids].mean().item()


@pytest.mark.slow
def test_character_model_learns_tinyshakespeare(shared_data):
    text = read_characters(shared_data("tinyshakespeare/input.txt"))
    train_text, valid_text = text[:100_000], text[100_000:110_000]
    vocab = Vocabulary.build([train_text], specials=(UNK,))
    train_ids = torch.tensor(vocab.encode(train_text))
    valid_ids = torch.tensor(vocab.encode(valid_text))

    torch.manual_seed(0)
    model = LanguageModel(len(vocab), encoder=EncoderConfig("lstm", 128), tie_embeddings=True)
    train_truncated_bptt(model, train_ids, epochs=3, batch_size=16, seq_len=64, lr=0.01)
    bits_per_character = validation_nats(model, valid_ids) / math.log(2)

    unigram_bits = unigram_nats(train_ids, valid_ids, len(vocab)) / math.log(2)
    pairs, previous = Counter(zip(train_text, train_text[1:])), Counter(train_text[:-1])
    bigram_bits = -sum(math.log2((pairs[a, b] + 1) / (previous[a] + len(vocab)))
                       for a, b in zip(valid_text, valid_text[1:])) / (len(valid_text) - 1)
    # measured: unigram 4.76, add-one bigram 3.49, the model about 2.5 bits per character
    assert bits_per_character < unigram_bits - 1.5
    assert bits_per_character < bigram_bits - 0.4


@pytest.mark.slow
def test_word_model_learns_penn_treebank(shared_data):
    train_lines = list(itertools.islice(iter_word_lines(shared_data("ptb/ptb.train.txt")), 2000))
    valid_lines = list(itertools.islice(iter_word_lines(shared_data("ptb/ptb.valid.txt")), 300))
    vocab = Vocabulary.build(train_lines, max_size=1000, specials=(UNK,))   # a small softmax: fast
    train_ids = torch.tensor([i for line in train_lines for i in vocab.encode(line)])   # ~44k words
    valid_ids = torch.tensor([i for line in valid_lines for i in vocab.encode(line)])   # ~7k words

    torch.manual_seed(0)
    model = LanguageModel(len(vocab), encoder=EncoderConfig("lstm", 64), tie_embeddings=True)
    train_truncated_bptt(model, train_ids, epochs=4, batch_size=20, seq_len=35, lr=0.01)
    nats = validation_nats(model, valid_ids)
    unigram = unigram_nats(train_ids, valid_ids, len(vocab))
    # measured: unigram perplexity 76, the model about 49 (0.45 nats per word better)
    assert nats < unigram - 0.25, f"perplexity {math.exp(nats):.1f} vs unigram {math.exp(unigram):.1f}"


def _as_tuple(state):
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)
