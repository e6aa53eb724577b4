"""SequenceTagger and its character features: shapes, padding, the loss and prediction against
per-sentence and brute-force references; and short training runs on UD English EWT and ATIS."""
import collections
import dataclasses
import itertools

import pytest
import torch

from rnnkit import metrics
from rnnkit.data.atis import iter_atis
from rnnkit.data.batching import bucket_batches, pad_batch
from rnnkit.data.conll import iter_conllu
from rnnkit.data.vocab import Vocabulary
from rnnkit.models.char_features import CharacterWordEncoder
from rnnkit.models.encoder import EncoderConfig
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


WORDS_ENCODER = EncoderConfig("lstm", hidden_size=6, bidirectional=True)
CHARS_ENCODER = EncoderConfig("lstm", hidden_size=4, bidirectional=True)


def make_tagger(encoder=None, **options):
    """A small tagger; ``encoder``: fields of the word encoder that differ from WORDS_ENCODER."""
    torch.manual_seed(0)
    defaults = dict(embedding_dim=5, encoder=dataclasses.replace(WORDS_ENCODER, **(encoder or {})),
                    char_vocab_size=C, char_embedding_dim=3, char_encoder=CHARS_ENCODER, num_intents=N)
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
@pytest.mark.parametrize("options", [
    dict(), dict(crf=True), dict(encoder=dict(cell="gru", bidirectional=False)),
    dict(encoder=dict(num_layers=2, dropout=0.1, options={"variant": "cifg"}), dropout=0.1),
    dict(char_vocab_size=None, num_intents=None, encoder=dict(cell="mingru"))])
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
    encoder = CharacterWordEncoder(C, embedding_dim=3, encoder=CHARS_ENCODER).double()
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
    encoder = CharacterWordEncoder(C, embedding_dim=3, encoder=CHARS_ENCODER).double()
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


# ---------------------------------------------------------------------------------------------
# The tagger learns: short runs on excerpts of the real data beat the baselines a count gives.

def most_frequent_tag_per_word(train_pairs, words, fallback):
    """The baseline tagger: each word's most frequent training tag, ``fallback`` for unseen words."""
    counts = collections.defaultdict(collections.Counter)
    for sentence_words, sentence_tags in train_pairs:
        for word, tag in zip(sentence_words, sentence_tags):
            counts[word][tag] += 1
    return [[counts[w].most_common(1)[0][0] if w in counts else fallback for w in sentence]
            for sentence in words]


def char_tensors(sentences, char_vocab):
    """(B, T, W) character ids and (B, T) character counts of the words of each sentence."""
    all_words = [word for sentence in sentences for word in sentence]
    word_chars, word_lengths = pad_batch([char_vocab.encode(word) for word in all_words], char_vocab.pad_index)
    B, T = len(sentences), max(len(s) for s in sentences)
    chars = torch.full((B, T, word_chars.shape[1]), char_vocab.pad_index, dtype=torch.long)
    char_lengths = torch.zeros(B, T, dtype=torch.long)
    first = 0
    for b, sentence in enumerate(sentences):
        chars[b, :len(sentence)] = word_chars[first:first + len(sentence)]
        char_lengths[b, :len(sentence)] = word_lengths[first:first + len(sentence)]
        first += len(sentence)
    return chars, char_lengths


def train(tagger, batches, epochs, lr=1e-2):
    """Adam over the batches (dicts of ``loss``'s arguments), a new order each epoch."""
    optimizer = torch.optim.Adam(tagger.parameters(), lr=lr)
    tagger.train()
    for epoch in range(epochs):
        for index in torch.randperm(len(batches), generator=torch.Generator().manual_seed(epoch)).tolist():
            optimizer.zero_grad()
            tagger.loss(**batches[index]).backward()
            optimizer.step()
    return tagger.eval()


@pytest.mark.slow
def test_upos_tagger_with_character_features_beats_the_most_frequent_tag_of_each_word(shared_data):
    train_sentences = list(itertools.islice(iter_conllu(shared_data("ud_english_ewt/en_ewt-ud-train.conllu")), 600))
    dev_sentences = list(itertools.islice(iter_conllu(shared_data("ud_english_ewt/en_ewt-ud-dev.conllu")), 200))
    word_vocab = Vocabulary.build(s.words for s in train_sentences)
    tag_vocab = Vocabulary.build((s.tags for s in train_sentences), specials=(), unknown=None)
    char_vocab = Vocabulary.build(list(w) for s in train_sentences for w in s.words)

    def batch(sentences):
        words, lengths = pad_batch([word_vocab.encode(s.words) for s in sentences], word_vocab.pad_index)
        tags, _ = pad_batch([tag_vocab.encode(s.tags) for s in sentences], 0)
        chars, char_lengths = char_tensors([s.words for s in sentences], char_vocab)
        return dict(words=words, lengths=lengths, tags=tags, chars=chars, char_lengths=char_lengths)

    torch.manual_seed(0)
    tagger = SequenceTagger(len(word_vocab), len(tag_vocab), embedding_dim=50, char_vocab_size=len(char_vocab),
                            encoder=EncoderConfig("lstm", 64, bidirectional=True), dropout=0.2)
    order = bucket_batches([len(s.words) for s in train_sentences], 32, seed=0)
    train(tagger, [batch([train_sentences[i] for i in indices]) for indices in order], epochs=5)

    dev = batch(dev_sentences)
    paths, _ = tagger.predict(dev["words"], dev["lengths"], dev["chars"], dev["char_lengths"])
    gold = [tag for s in dev_sentences for tag in s.tags]
    predicted = [tag for path in paths for tag in tag_vocab.decode(path)]
    majority_tag = collections.Counter(t for s in train_sentences for t in s.tags).most_common(1)[0][0]
    baseline = most_frequent_tag_per_word([(s.words, s.tags) for s in train_sentences],
                                          [s.words for s in dev_sentences], majority_tag)
    accuracy = metrics.accuracy(predicted, gold)
    baseline_accuracy = metrics.accuracy([t for sentence in baseline for t in sentence], gold)
    print(f"UPOS dev accuracy {accuracy:.4f}; most frequent tag per word {baseline_accuracy:.4f}")
    assert accuracy > baseline_accuracy + 0.02
    assert accuracy > metrics.accuracy([majority_tag] * len(gold), gold) + 0.5


@pytest.mark.slow
def test_joint_crf_slot_filler_beats_the_most_frequent_tag_and_the_majority_intent(shared_data):
    train_utterances = list(itertools.islice(iter_atis(shared_data("atis/train/seq.in").parent), 800))
    test_utterances = list(itertools.islice(iter_atis(shared_data("atis/test/seq.in").parent), 300))
    word_vocab = Vocabulary.build(u.words for u in train_utterances)
    tag_vocab = Vocabulary.build((u.tags for u in train_utterances), specials=("O",), unknown="O")
    intent_vocab = Vocabulary.build(([u.intent] for u in train_utterances), specials=(), unknown=None)

    def batch(utterances):
        words, lengths = pad_batch([word_vocab.encode(u.words) for u in utterances], word_vocab.pad_index)
        tags, _ = pad_batch([tag_vocab.encode(u.tags) for u in utterances], 0)
        return dict(words=words, lengths=lengths, tags=tags)

    def training_batch(utterances):
        return dict(batch(utterances), intents=torch.tensor([intent_vocab.id(u.intent) for u in utterances]))

    torch.manual_seed(0)
    tagger = SequenceTagger(len(word_vocab), len(tag_vocab), embedding_dim=50, crf=True,
                            encoder=EncoderConfig("lstm", 64, bidirectional=True), num_intents=len(intent_vocab),
                            dropout=0.2)
    order = bucket_batches([len(u.words) for u in train_utterances], 32, seed=0)
    train(tagger, [training_batch([train_utterances[i] for i in indices]) for indices in order], epochs=5)

    test = batch(test_utterances)
    paths, intents = tagger.predict(test["words"], test["lengths"])
    gold_tags = [u.tags for u in test_utterances]
    slot_f1 = metrics.span_f1([tag_vocab.decode(path) for path in paths], gold_tags)["f1"]
    baseline = most_frequent_tag_per_word([(u.words, u.tags) for u in train_utterances],
                                          [u.words for u in test_utterances], "O")
    baseline_f1 = metrics.span_f1(baseline, gold_tags)["f1"]
    gold_intents = [u.intent for u in test_utterances]
    intent_accuracy = metrics.accuracy(intent_vocab.decode(intents), gold_intents)
    majority_intent = collections.Counter(u.intent for u in train_utterances).most_common(1)[0][0]
    majority_accuracy = metrics.accuracy([majority_intent] * len(gold_intents), gold_intents)
    print(f"ATIS slot F1 {slot_f1:.4f} (most frequent tag per word {baseline_f1:.4f}); "
          f"intent accuracy {intent_accuracy:.4f} (majority {majority_accuracy:.4f})")
    assert slot_f1 > baseline_f1 + 0.15
    assert intent_accuracy > majority_accuracy + 0.04
