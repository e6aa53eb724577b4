"""SequenceTagger and its character features: shapes, padding, the loss and prediction against
per-sentence and brute-force references; and short training runs on UD English EWT and ATIS."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from rnnkit.models.char_features import CharacterWordEncoder
from rnnkit.models.tagger import SequenceTagger

pytestmark = pytest.mark.usefixtures("one_thread")

V, K, N, C = 20, 3, 4, 12          # words, tags, intents, characters


def padded_batch(lengths, max_chars=5, seed=0):
    """Random word ids, tags, intents and characters of sentences with the given lengths; the padding
    past each end holds junk (nonzero ids) so that a test notices if it is ever read."""
    generator = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    words = torch.randint(1, V, (B, T), generator=generator)
    tags = torch.randint(0, K, (B, T), generator=generator)
    intents = torch.randint(0, N, (B,), generator=generator)
    char_lengths = torch.randint(1, max_chars + 1, (B, T), generator=generator)
    chars = torch.randint(1, C, (B, T, max_chars), generator=generator)
    chars = chars.masked_fill(torch.arange(max_chars) >= char_lengths.unsqueeze(2), 0)
    for b, n in enumerate(lengths):
        char_lengths[b, n:] = 0
        chars[b, n:] = 0
    return dict(words=words, lengths=torch.tensor(lengths), tags=tags, intents=intents, chars=chars,
                char_lengths=char_lengths)


def make_tagger(**options):
    torch.manual_seed(0)
    defaults = dict(embedding_dim=5, hidden_size=6, char_vocab_size=C, char_embedding_dim=3,
                    char_hidden_size=4, num_intents=N)
    return SequenceTagger(V, K, **{**defaults, **options}).double().eval()


def sentence(batch, b):
    """Sentence b of a padded batch, alone and cut to its length."""
    n = int(batch["lengths"][b])
    return dict(words=batch["words"][b:b + 1, :n], lengths=torch.tensor([n]), tags=batch["tags"][b:b + 1, :n],
                intents=batch["intents"][b:b + 1], chars=batch["chars"][b:b + 1, :n],
                char_lengths=batch["char_lengths"][b:b + 1, :n])


def inputs(batch):
    return batch["words"], batch["lengths"], batch["chars"], batch["char_lengths"]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [dict(), dict(crf=True), dict(cell="gru", bidirectional=False),
                                     dict(num_layers=2, dropout=0.1, variant="cifg"),
                                     dict(char_vocab_size=None, num_intents=None, cell="mingru")])
def test_shapes(options):
    tagger = make_tagger(**options)
    batch = padded_batch([4, 2, 3])
    chars = (batch["chars"], batch["char_lengths"]) if tagger.char_encoder is not None else (None, None)
    emissions, intent_logits = tagger(batch["words"], batch["lengths"], *chars)
    assert emissions.shape == (3, 4, K)
    assert (intent_logits is None) == (tagger.intent_scores is None)
    if intent_logits is not None:
        assert intent_logits.shape == (3, N)
    paths, intents = tagger.predict(batch["words"], batch["lengths"], *chars)
    assert [len(p) for p in paths] == [4, 2, 3]
    assert all(0 <= tag < K for p in paths for tag in p)
    assert intents is None or (len(intents) == 3 and all(0 <= i < N for i in intents))


@pytest.mark.parametrize("crf", [False, True])
def test_padded_batch_equals_each_sentence_alone(crf):
    tagger = make_tagger(crf=crf)
    batch = padded_batch([5, 1, 3, 2])
    emissions, intent_logits = tagger(*inputs(batch))
    paths, intents = tagger.predict(*inputs(batch))
    for b, n in enumerate(batch["lengths"].tolist()):
        alone = sentence(batch, b)
        alone_emissions, alone_intent = tagger(*inputs(alone))
        torch.testing.assert_close(emissions[b, :n], alone_emissions[0])
        torch.testing.assert_close(intent_logits[b], alone_intent[0])
        assert torch.all(emissions[b, n:] == 0)
        alone_paths, alone_intents = tagger.predict(*inputs(alone))
        assert paths[b] == alone_paths[0] and intents[b] == alone_intents[0]


@pytest.mark.parametrize("crf", [False, True])
def test_loss_is_the_per_word_tag_loss_plus_the_mean_intent_loss(crf):
    tagger = make_tagger(crf=crf)
    batch = padded_batch([5, 1, 3, 2])
    lengths = batch["lengths"]
    loss = tagger.loss(batch["words"], lengths, batch["tags"], batch["intents"], chars=batch["chars"],
                       char_lengths=batch["char_lengths"])
    tag_only = tagger.loss(batch["words"], lengths, batch["tags"], chars=batch["chars"],
                           char_lengths=batch["char_lengths"])
    # per sentence alone: its summed tag loss, then one division by all words of the batch
    summed_tag_loss, intent_losses = 0.0, []
    for b in range(len(lengths)):
        alone = sentence(batch, b)
        n = int(lengths[b])
        summed_tag_loss = summed_tag_loss + n * tagger.loss(
            alone["words"], alone["lengths"], alone["tags"], chars=alone["chars"],
            char_lengths=alone["char_lengths"])
        intent_logits = tagger(*inputs(alone)).intent_logits
        intent_losses.append(-intent_logits.log_softmax(1)[0, alone["intents"][0]])
    torch.testing.assert_close(tag_only, summed_tag_loss / lengths.sum())
    torch.testing.assert_close(loss, tag_only + torch.stack(intent_losses).mean())


def test_tag_loss_without_crf_is_the_cross_entropy_of_each_word():
    tagger = make_tagger()
    batch = padded_batch([3, 2])
    emissions = tagger(*inputs(batch)).emissions
    words = [(b, t) for b, n in enumerate(batch["lengths"].tolist()) for t in range(n)]
    expected = sum(-emissions[b, t].log_softmax(0)[batch["tags"][b, t]] for b, t in words) / len(words)
    loss = tagger.loss(batch["words"], batch["lengths"], batch["tags"], chars=batch["chars"],
                       char_lengths=batch["char_lengths"])
    torch.testing.assert_close(loss, expected)


@torch.no_grad()
def brute_force_best_path(tagger, emissions):
    """argmax over all K^n paths of start + emissions + transitions + end, from the formula."""
    crf = tagger.crf

    def score(path):
        return (crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, y] for t, y in enumerate(path))
                + sum(crf.transitions[a, b] for a, b in zip(path, path[1:])))

    return list(max(itertools.product(range(K), repeat=len(emissions)), key=lambda p: score(p).item()))


def test_predict_with_crf_is_the_best_path_by_enumeration():
    tagger = make_tagger(crf=True)
    with torch.no_grad():                    # transitions strong enough to overrule the emissions
        tagger.crf.transitions.normal_(0.0, 2.0)
    batch = padded_batch([4, 3, 1, 2], seed=1)
    emissions = tagger(*inputs(batch)).emissions
    paths, _ = tagger.predict(*inputs(batch))
    per_word_best = emissions.argmax(2).tolist()
    for b, n in enumerate(batch["lengths"].tolist()):
        assert paths[b] == brute_force_best_path(tagger, emissions[b, :n])
    assert any(paths[b] != per_word_best[b][:n] for b, n in enumerate(batch["lengths"].tolist()))


def test_predict_without_crf_is_each_words_best_tag():
    tagger = make_tagger()
    batch = padded_batch([4, 2], seed=2)
    emissions = tagger(*inputs(batch)).emissions
    paths, intents = tagger.predict(*inputs(batch))
    for b, n in enumerate(batch["lengths"].tolist()):
        assert paths[b] == [max(range(K), key=lambda k: emissions[b, t, k].item()) for t in range(n)]
    assert intents == tagger(*inputs(batch)).intent_logits.argmax(1).tolist()


def test_char_lengths_default_to_the_non_padding_characters():
    tagger = make_tagger()
    batch = padded_batch([4, 2], seed=3)
    with_lengths = tagger(*inputs(batch)).emissions
    without = tagger(batch["words"], batch["lengths"], batch["chars"]).emissions
    torch.testing.assert_close(with_lengths, without)


def test_characters_change_the_tags_and_every_part_is_trained():
    tagger = make_tagger(crf=True)
    batch = padded_batch([4, 2], seed=4)
    other_chars = batch["chars"].clone()
    other_chars[0, 0, 0] = (other_chars[0, 0, 0] % (C - 1)) + 1           # another first character
    emissions = tagger(*inputs(batch)).emissions
    changed = tagger(batch["words"], batch["lengths"], other_chars, batch["char_lengths"]).emissions
    assert not torch.allclose(emissions[0], changed[0])
    torch.testing.assert_close(emissions[1], changed[1])                  # the other sentence is unmoved
    tagger.loss(batch["words"], batch["lengths"], batch["tags"], batch["intents"], chars=batch["chars"],
                char_lengths=batch["char_lengths"]).backward()
    untrained = [name for name, p in tagger.named_parameters()
                 if p.grad is None or not p.grad.abs().sum() > 0]
    assert untrained == []


# ---------------------------------------------------------------------------------------------
def test_character_encoder_batched_equals_each_word_alone():
    torch.manual_seed(0)
    encoder = CharacterWordEncoder(C, embedding_dim=3, hidden_size=4).double()
    batch = padded_batch([3, 1, 2], max_chars=6, seed=5)
    vectors = encoder(batch["chars"], batch["char_lengths"])                # (B, T, 8)
    assert vectors.shape == (3, 3, encoder.output_size) and encoder.output_size == 8
    for b, n in enumerate(batch["lengths"].tolist()):
        for t in range(3):
            m = int(batch["char_lengths"][b, t])
            if t >= n:
                assert m == 0 and torch.all(vectors[b, t] == 0)
                continue
            alone = encoder(batch["chars"][b:b + 1, t:t + 1, :m], torch.tensor([[m]]))
            torch.testing.assert_close(vectors[b, t], alone[0, 0])


def test_character_encoder_is_the_two_directions_final_outputs():
    """The word vector is [forward output at the last character ; backward output at the first],
    here from torch.nn.LSTM run on the characters alone and on them reversed."""
    torch.manual_seed(0)
    encoder = CharacterWordEncoder(C, embedding_dim=3, hidden_size=4).double()
    chars = torch.tensor([[[3, 5, 7, 0]]])
    vector = encoder(chars, torch.tensor([[3]]))[0, 0]
    x = encoder.embedding(chars[0, :, :3]).detach()                       # (1, 3, 3)
    forward_cell, backward_cell = encoder.encoder.rnn.cells
    outputs = []
    for cell, sequence in ((forward_cell, x), (backward_cell, x.flip(1))):
        reference = torch.nn.LSTM(3, 4, batch_first=True).double()
        reference.load_state_dict(_torch_lstm_weights(cell.params()), strict=True)
        outputs.append(reference(sequence)[0][0, -1])
    torch.testing.assert_close(vector, torch.cat(outputs))


def _torch_lstm_weights(params):
    """rnnkit's LSTM cell parameters under torch.nn.LSTM's names."""
    renamed = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0", "bias_ih": "bias_ih_l0",
               "bias_hh": "bias_hh_l0"}
    return {renamed[name]: tensor.detach() for name, tensor in params.items()}


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,error", [
    (lambda tagger, batch: tagger(batch["words"], batch["lengths"]), "chars .* is required"),
    (lambda tagger, batch: tagger(batch["words"].float(), batch["lengths"], batch["chars"]),
     r"words must be an integer tensor \(B, T\)"),
    (lambda tagger, batch: tagger(batch["words"], batch["lengths"], batch["chars"][:, :2]),
     r"chars must have shape \(2, 3, W\)"),
    (lambda tagger, batch: tagger.loss(batch["words"], batch["lengths"], batch["tags"][:, :2],
                                       chars=batch["chars"]), r"tags must be an integer tensor of shape \(2, 3\)"),
    (lambda tagger, batch: tagger.loss(batch["words"], batch["lengths"], batch["tags"],
                                       batch["intents"][:1], chars=batch["chars"]), r"intents must have shape \(2,\)"),
])
def test_errors_name_the_argument_and_what_came_in(call, error):
    tagger = make_tagger()
    with pytest.raises(ValueError, match=error):
        call(tagger, padded_batch([3, 2]))


def test_options_the_tagger_was_built_without_are_refused():
    tagger = make_tagger(char_vocab_size=None, num_intents=None)
    batch = padded_batch([3, 2])
    with pytest.raises(ValueError, match="without char_vocab_size"):
        tagger(*inputs(batch))
    with pytest.raises(ValueError, match="without num_intents"):
        tagger.loss(batch["words"], batch["lengths"], batch["tags"], batch["intents"])
