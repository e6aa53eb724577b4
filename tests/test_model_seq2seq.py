"""Seq2Seq and its decoding: the equations against torch.nn, padding changes nothing, teacher forcing
equals stepping by hand, beam search against greedy search and against exhaustive enumeration."""
import collections
import itertools
import math
import random

import pytest
import torch
from torch import nn

from rnnkit.cells import available
from rnnkit.models.decoding import beam_search, greedy_decode
from rnnkit.models.encoder import EncoderConfig
from rnnkit.models.seq2seq import Seq2Seq

pytestmark = pytest.mark.usefixtures("one_thread")

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SOURCE_VOCAB, TARGET_VOCAB = 8, 9


def tiny_model(seed=0, cell="gru", attention="bahdanau", target_vocab=TARGET_VOCAB, num_layers=1,
               bidirectional=None, **options):
    torch.manual_seed(seed)
    bidirectional = attention != "luong-dot" if bidirectional is None else bidirectional
    encoder = EncoderConfig(cell, 6, num_layers=num_layers, bidirectional=bidirectional)
    return Seq2Seq(SOURCE_VOCAB, target_vocab, 5, encoder=encoder, attention=attention, bos_index=BOS,
                   eos_index=EOS, padding_idx=PAD, **options).double()


def gru(hidden_size):
    """A bidirectional GRU encoder (Seq2Seq's default, smaller)."""
    return EncoderConfig("gru", hidden_size, bidirectional=True)


def batch(seed=0, target_vocab=TARGET_VOCAB):
    """Three sentences of lengths 5, 2, 3 (padded with PAD), targets of lengths 4, 2, 3."""
    generator = torch.Generator().manual_seed(seed)
    source_lengths = torch.tensor([5, 2, 3])
    target_lengths = torch.tensor([4, 2, 3])
    source = torch.randint(4, SOURCE_VOCAB, (3, 5), generator=generator)
    source[torch.arange(5) >= source_lengths.unsqueeze(1)] = PAD
    target_out = torch.randint(4, target_vocab, (3, 4), generator=generator)
    target_out[torch.arange(4).unsqueeze(0) == (target_lengths - 1).unsqueeze(1)] = EOS
    target_out[torch.arange(4) >= target_lengths.unsqueeze(1)] = PAD
    target_in = torch.cat([torch.full((3, 1), BOS), target_out[:, :-1]], dim=1)
    target_in[target_in == EOS] = PAD
    return source, source_lengths, target_in, target_out


# ----- the model ----------------------------------------------------------------------------------
def test_one_sentence_follows_the_equations_with_torch_gru_cells():
    """Encoder, bridge, decoder with input feeding, Luong general attention and output, written out
    with torch.nn.GRU / GRUCell holding the model's weights."""
    model = tiny_model(3, attention="luong-general", bidirectional=False)
    source, source_lengths, target_in, _ = batch()
    logits, weights = model(source, source_lengths, target_in)

    def gru_like(module, cell):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            suffix = "_l0" if isinstance(module, nn.GRU) else ""
            getattr(module, name + suffix).data.copy_(getattr(cell, name))
        return module

    encoder_gru = gru_like(nn.GRU(5, 6, batch_first=True).double(), model.encoder.rnn.cells[0])
    decoder_gru = gru_like(nn.GRUCell(11, 6).double(), model.decoder_cells[0])
    with torch.no_grad():
        for b, n in enumerate(source_lengths.tolist()):
            keys, h_last = encoder_gru(model.source_embedding(source[b:b + 1, :n]))  # (1, n, 6), (1, 1, 6)
            keys, h = keys[0], torch.tanh(model.bridge[0](h_last[0, 0]))           # (n, 6), (6,)
            fed = torch.zeros(6, dtype=torch.float64)
            for t, token in enumerate(target_in[b].tolist()):
                x = torch.cat([model.target_embedding.weight[token], fed])          # (11,)
                h = decoder_gru(x.unsqueeze(0), h.unsqueeze(0))[0]                   # (6,)
                scores = keys @ (model.attention.bilinear.weight.T @ h)              # h^T W_a k_s, (n,)
                a = torch.softmax(scores, dim=0)
                context = a @ keys
                fed = torch.tanh(model.combine.weight @ torch.cat([context, h]))
                expected = model.output.weight @ fed + model.output.bias
                torch.testing.assert_close(logits[b, t], expected)
                torch.testing.assert_close(weights[b, t, :n], a)
                assert torch.all(weights[b, t, n:] == 0)


@pytest.mark.parametrize("attention", ["bahdanau", "luong-dot", "luong-general", "none"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "jordan"])
def test_padding_the_source_changes_nothing(cell, attention):
    model = tiny_model(1, cell, attention, num_layers=2)
    source, source_lengths, target_in, _ = batch()
    logits, weights = model(source, source_lengths, target_in)
    padded = torch.cat([source, torch.full((3, 4), PAD)], dim=1)                  # (B, S + 4)
    logits_padded, weights_padded = model(padded, source_lengths, target_in)
    torch.testing.assert_close(logits_padded, logits)
    for b, n in enumerate(source_lengths.tolist()):                               # each sentence alone
        alone, alone_weights = model(source[b:b + 1, :n], source_lengths[b:b + 1], target_in[b:b + 1])
        torch.testing.assert_close(alone[0], logits[b])
        if weights is not None:
            torch.testing.assert_close(alone_weights[0], weights[b, :, :n])
            torch.testing.assert_close(weights_padded[..., :5], weights)
            assert torch.all(weights_padded[..., 5:] == 0)


@pytest.mark.parametrize("attention", ["bahdanau", "luong-dot", "luong-general"])
def test_attention_rows_sum_to_one_and_are_zero_on_padding(attention):
    model = tiny_model(2, attention=attention)
    source, source_lengths, target_in, _ = batch()
    _, weights = model(source, source_lengths, target_in)
    assert weights.shape == (3, 4, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, dtype=torch.float64))
    valid = torch.arange(5) < source_lengths.unsqueeze(1)                        # (B, S)
    assert torch.all(weights.masked_select(~valid.unsqueeze(1)) == 0)


@pytest.mark.parametrize("input_feeding", [True, False])
def test_teacher_forced_forward_equals_stepping_decode_step_by_hand(input_feeding):
    model = tiny_model(4, "gru", "luong-general", num_layers=2, input_feeding=input_feeding)
    source, source_lengths, target_in, _ = batch()
    logits, weights = model(source, source_lengths, target_in)
    memory, state = model.encode(source, source_lengths)
    for t in range(target_in.shape[1]):
        step_logits, state, step_weights = model.decode_step(target_in[:, t], state, memory)
        torch.testing.assert_close(logits[:, t], step_logits)
        torch.testing.assert_close(weights[:, t], step_weights)
    assert (state.attentional is not None) == input_feeding


def test_no_teacher_forcing_reads_its_own_argmax():
    model = tiny_model(5)
    source, source_lengths, target_in, _ = batch()
    torch.manual_seed(0)
    free_logits, _ = model(source, source_lengths, target_in, teacher_forcing=0.0)
    own_tokens = torch.cat([target_in[:, :1], free_logits.argmax(-1)[:, :-1]], dim=1)   # (B, T)
    forced_logits, _ = model(source, source_lengths, own_tokens)
    torch.testing.assert_close(free_logits, forced_logits)
    assert not torch.equal(own_tokens, target_in)


def test_loss_is_the_masked_label_smoothed_cross_entropy():
    model = tiny_model(6)
    source, source_lengths, target_in, target_out = batch()
    logits, _ = model(source, source_lengths, target_in)
    epsilon, terms = 0.1, []
    for b, t in itertools.product(range(3), range(4)):
        y = int(target_out[b, t])
        if y == PAD:
            continue
        log_p = torch.log_softmax(logits[b, t], dim=0)
        terms.append((1 - epsilon) * -log_p[y] + epsilon * -log_p.mean())
    assert len(terms) == 9
    torch.testing.assert_close(model.loss(logits, target_out, label_smoothing=epsilon), sum(terms) / 9)
    torch.testing.assert_close(model.loss(logits, target_out, label_smoothing=epsilon, reduction="sum"),
                               sum(terms))


def test_gradcheck_of_the_loss_in_float64():
    torch.manual_seed(7)
    model = Seq2Seq(SOURCE_VOCAB, TARGET_VOCAB, 3, encoder=gru(3), attention="bahdanau", bos_index=BOS,
                    eos_index=EOS).double()
    source, source_lengths, target_in, target_out = batch()
    names = ["encoder.rnn.cells.0.weight_hh", "bridge.0.weight", "decoder_cells.0.weight_ih",
             "attention.query_projection.weight", "attention.score.weight", "combine.weight"]
    chosen = tuple(dict(model.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)

    def loss(*tensors):
        logits, _ = torch.func.functional_call(model, dict(zip(names, tensors)),
                                               (source, source_lengths, target_in))
        return model.loss(logits, target_out, label_smoothing=0.1)

    assert torch.autograd.gradcheck(loss, chosen)


@pytest.mark.parametrize("cell", available())
def test_every_cell_runs_forward_and_backward(cell):
    model = tiny_model(8, cell, "bahdanau", num_layers=2)
    source, source_lengths, target_in, target_out = batch()
    logits, weights = model(source, source_lengths, target_in)
    assert logits.shape == (3, 4, TARGET_VOCAB) and weights.shape == (3, 4, 5)
    model.loss(logits, target_out).backward()
    assert model.bridge[0].weight.grad.abs().sum() > 0
    assert model.source_embedding.weight.grad[source[0, 0]].abs().sum() > 0


def test_tied_target_embeddings_share_one_matrix():
    torch.manual_seed(0)
    model = Seq2Seq(8, 9, 6, encoder=gru(6), bos_index=BOS, eos_index=EOS, tie_target_embeddings=True)
    assert model.output.weight is model.target_embedding.weight
    with pytest.raises(ValueError, match="O=6 to equal embedding_dim=5"):
        Seq2Seq(8, 9, 5, encoder=gru(6), bos_index=BOS, eos_index=EOS, tie_target_embeddings=True)


def test_errors_name_the_argument_and_what_came_in():
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2Seq(8, 9, 5, encoder=gru(6), attention="concat", bos_index=BOS, eos_index=EOS)
    with pytest.raises(ValueError, match=r"encoder's output size \(12\) must equal the decoder's \(6\): "
                                         r"use an encoder with bidirectional=False"):
        Seq2Seq(8, 9, 5, encoder=gru(6), attention="luong-dot", bos_index=BOS, eos_index=EOS)
    with pytest.raises(ValueError, match=r"eos_index must be a target id in \[0, target_vocab_size=9\), got 9"):
        Seq2Seq(8, 9, 5, encoder=gru(6), bos_index=BOS, eos_index=9)
    model = tiny_model()
    source, source_lengths, target_in, _ = batch()
    with pytest.raises(ValueError, match=r"source_lengths must lie in \[1, S=5\], got \[6, 2, 3\]"):
        model(source, torch.tensor([6, 2, 3]), target_in)
    with pytest.raises(ValueError, match=r"target_in must have shape \(B=3, T\), got \(2, 4\)"):
        model(source, source_lengths, target_in[:2])
    with pytest.raises(ValueError, match="teacher_forcing must be a probability"):
        model(source, source_lengths, target_in, teacher_forcing=1.5)


# ----- decoding ----------------------------------------------------------------------------------
def sequence_log_prob(model, source, length, tokens, finished):
    """log P(Y | X) of one output by teacher forcing through forward (not through decoding)."""
    target_in = torch.tensor([[BOS] + tokens])
    with torch.no_grad():
        logits, _ = model(source[:, :length], torch.tensor([length]), target_in)
    log_p = torch.log_softmax(logits[0], dim=-1)                                  # (|Y| + 1, V)
    steps = tokens + [EOS] if finished else tokens
    return float(sum(log_p[t, y] for t, y in enumerate(steps)))


@pytest.mark.parametrize("attention", ["bahdanau", "none"])
def test_greedy_scores_are_the_log_probability_of_its_output(attention):
    model = tiny_model(9, attention=attention).eval()
    source, source_lengths, _, _ = batch()
    for b, hypothesis in enumerate(greedy_decode(model, source, source_lengths, max_length=6)):
        n = int(source_lengths[b])
        expected = sequence_log_prob(model, source[b:b + 1], n, hypothesis.tokens, hypothesis.finished)
        assert hypothesis.log_prob == pytest.approx(expected, abs=1e-9)
        assert hypothesis.finished or len(hypothesis.tokens) == 6
        assert all(token not in (PAD, BOS, EOS) for token in hypothesis.tokens)
        if attention == "none":
            assert hypothesis.attention is None
        else:
            steps = len(hypothesis.tokens) + hypothesis.finished
            assert hypothesis.attention.shape == (steps, n)
            torch.testing.assert_close(hypothesis.attention.sum(-1), torch.ones(steps, dtype=torch.float64))


@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("seed", range(4))
def test_beam_of_one_equals_greedy(seed, alpha):
    model = tiny_model(seed, attention=["bahdanau", "luong-general"][seed % 2], target_vocab=6)
    source, source_lengths, _, _ = batch(seed)
    greedy = greedy_decode(model, source, source_lengths, max_length=7)
    beam = beam_search(model, source, source_lengths, beam_size=1, max_length=7, length_penalty=alpha)
    for g, h in zip(greedy, beam):
        assert h.tokens == g.tokens and h.finished == g.finished
        assert h.log_prob == pytest.approx(g.log_prob, abs=1e-9)
        steps = len(g.tokens) + g.finished
        assert h.score == pytest.approx(g.log_prob / ((5 + steps) / 6) ** alpha, abs=1e-9)
        torch.testing.assert_close(h.attention, g.attention)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_a_beam_wide_enough_finds_the_best_of_every_possible_output(alpha):
    """Four choosable ids (UNK, 4, 5, EOS) and at most 3 steps: 13 outputs end with EOS and 27 are
    cut off at the limit; all are scored by teacher forcing and ranked by Wu et al.'s formula here."""
    model = tiny_model(10, attention="luong-general", target_vocab=6).eval()
    source, source_lengths, _, _ = batch()
    beam = beam_search(model, source, source_lengths, beam_size=40, max_length=3, length_penalty=alpha)
    for b, found in enumerate(beam):
        n = int(source_lengths[b])
        real = [UNK, 4, 5]                                # every id but PAD, BOS and EOS
        candidates = [(list(p), True) for m in range(3) for p in itertools.product(real, repeat=m)]
        candidates += [(list(p), False) for p in itertools.product(real, repeat=3)]
        assert len(candidates) == 13 + 27
        scored = []
        for tokens, finished in candidates:
            log_prob = sequence_log_prob(model, source[b:b + 1], n, tokens, finished)
            steps = len(tokens) + finished
            scored.append((log_prob / ((5 + steps) / 6) ** alpha, tokens, finished))
        best_score, best_tokens, best_finished = max(scored, key=lambda s: s[0])
        assert found.tokens == best_tokens and found.finished == best_finished
        assert found.score == pytest.approx(best_score, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_beam_search_scores_at_least_as_well_as_greedy(seed):
    """Not a theorem (greedy's prefix can fall out of the beam), but on these random models the
    wider search finds outputs at least as probable, and usually more."""
    model = tiny_model(20 + seed, attention="bahdanau")
    source, source_lengths, _, _ = batch(seed)
    greedy = greedy_decode(model, source, source_lengths, max_length=8)
    beam = beam_search(model, source, source_lengths, beam_size=5, max_length=8)
    for b, (g, h) in enumerate(zip(greedy, beam)):
        assert h.log_prob >= g.log_prob - 1e-9
        n = int(source_lengths[b])
        expected = sequence_log_prob(model, source[b:b + 1], n, h.tokens, h.finished)
        assert h.log_prob == pytest.approx(expected, abs=1e-9)


def test_decoding_restores_training_mode_and_checks_its_arguments():
    model = tiny_model(11, dropout=0.3)
    source, source_lengths, _, _ = batch()
    beam_search(model, source, source_lengths, beam_size=2, max_length=3)
    assert model.training
    with pytest.raises(ValueError, match="beam_size must be a positive int, got 0"):
        beam_search(model, source, source_lengths, beam_size=0, max_length=3)
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        greedy_decode(model, source, source_lengths, max_length=0)


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_a_step_limit_per_sentence_decodes_each_sentence_as_it_would_alone(search):
    model = tiny_model(5, target_vocab=7)                    # few tokens: EOS comes late or never
    source, source_lengths, _, _ = batch()
    limits = [2, 6, 3]

    def decode(src, lengths, limit):
        if search == "greedy":
            return greedy_decode(model, src, lengths, limit)
        return beam_search(model, src, lengths, beam_size=2, max_length=limit, length_penalty=0.6)

    together = decode(source, source_lengths, limits)
    for b, limit in enumerate(limits):
        n = int(source_lengths[b])
        alone = decode(source[b:b + 1, :n], source_lengths[b:b + 1], limit)[0]
        assert together[b].tokens == alone.tokens and len(together[b].tokens) <= limit
        assert together[b].score == pytest.approx(alone.score, abs=1e-9)
    with pytest.raises(ValueError, match="or one per sentence"):
        decode(source, source_lengths, [2, 3])


# ----- the model learns --------------------------------------------------------------------------
def train(model, batches, epochs, lr):
    """Adam over (source, lengths, target_in, target_out) batches, gradients clipped at norm 1."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        model.train()
        for source, source_lengths, target_in, target_out in batches(epoch):
            logits, _ = model(source, source_lengths, target_in)
            loss = model.loss(logits, target_out)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    return model.eval()


def reversal_examples(count, generator, vocab=12, max_length=7):
    """Random sequences over ids 4..vocab-1 (past the specials) of lengths 3..max_length, reversed."""
    lengths = torch.randint(3, max_length + 1, (count,), generator=generator)
    source = torch.randint(4, vocab, (count, max_length), generator=generator)
    source[torch.arange(max_length) >= lengths.unsqueeze(1)] = PAD
    reversed_ = [row[:n].flip(0).tolist() for row, n in zip(source, lengths.tolist())]
    target_in = torch.full((count, max_length + 1), PAD)
    target_out = torch.full((count, max_length + 1), PAD)
    for i, tokens in enumerate(reversed_):
        target_in[i, :len(tokens) + 1] = torch.tensor([BOS] + tokens)
        target_out[i, :len(tokens) + 1] = torch.tensor(tokens + [EOS])
    return source, lengths, target_in, target_out, reversed_


@pytest.mark.slow
def test_attention_learns_to_reverse_sequences_and_looks_at_the_mirrored_token():
    generator = torch.Generator().manual_seed(0)
    train_set, dev_set = reversal_examples(1600, generator), reversal_examples(200, generator)
    torch.manual_seed(0)
    model = Seq2Seq(12, 12, 16, encoder=gru(32), attention="luong-general", bos_index=BOS, eos_index=EOS)

    def batches(epoch):
        order = torch.randperm(1600, generator=torch.Generator().manual_seed(epoch))
        return [tuple(t[order[i:i + 64]] for t in train_set[:4]) for i in range(0, 1600, 64)]

    train(model, batches, epochs=6, lr=0.01)
    source, lengths, _, _, expected = dev_set
    hypotheses = greedy_decode(model, source, lengths, max_length=9)
    exact = sum(h.tokens == e for h, e in zip(hypotheses, expected)) / len(expected)
    mirrored = [int(h.attention[t].argmax()) == len(e) - 1 - t
                for h, e in zip(hypotheses, expected) for t in range(min(len(h.tokens), len(e)))]
    assert exact >= 0.8             # measured 0.925 (seeds 1, 2: 0.98, 0.91); attention="none": 0.41
    # the attention peaks on the mirrored source token at 978 of ~1,000 steps
    assert sum(mirrored) / len(mirrored) >= 0.8


@pytest.mark.slow
def test_translation_beats_a_unigram_model_on_held_out_tatoeba(shared_data):
    """English → French on the first 3,000 (short) Tatoeba pairs, 300 held out: the dev perplexity
    of a small GRU with attention after 3 epochs against the add-one unigram model of the training
    targets (EOS included in both, unknown dev words mapped to <unk> in both)."""
    from rnnkit.data.batching import bucket_batches, pad_batch
    from rnnkit.data.parallel import iter_pair_tsv
    from rnnkit.data.vocab import BOS as BOS_SYMBOL, EOS as EOS_SYMBOL, PAD as PAD_SYMBOL, UNK as UNK_SYMBOL
    from rnnkit.data.vocab import Vocabulary
    from rnnkit.metrics import perplexity

    path = shared_data("tatoeba_fra_eng/fra.txt.gz")
    pairs = list(itertools.islice(iter_pair_tsv(path, lowercase=True), 3000))
    random.Random(0).shuffle(pairs)
    dev, training = pairs[:300], pairs[300:]
    source_vocab = Vocabulary.build(pair.source for pair in training)
    target_vocab = Vocabulary.build((pair.target for pair in training),
                                    specials=(PAD_SYMBOL, UNK_SYMBOL, BOS_SYMBOL, EOS_SYMBOL))
    bos, eos = target_vocab.index[BOS_SYMBOL], target_vocab.index[EOS_SYMBOL]

    def tensors(chunk):
        source, source_lengths = pad_batch([source_vocab.encode(p.source) for p in chunk], PAD)
        targets = [target_vocab.encode(p.target) for p in chunk]
        target_in, _ = pad_batch([[bos] + t for t in targets], PAD)
        target_out, _ = pad_batch([t + [eos] for t in targets], PAD)
        return source, source_lengths, target_in, target_out

    def batches(epoch):
        indices = bucket_batches([len(p.source) for p in training], 64, seed=epoch)
        return [tensors([training[i] for i in batch]) for batch in indices]

    torch.manual_seed(0)
    model = Seq2Seq(len(source_vocab), len(target_vocab), 32, encoder=gru(64), attention="bahdanau",
                    bos_index=bos, eos_index=eos, padding_idx=PAD)
    train(model, batches, epochs=3, lr=0.01)
    source, source_lengths, target_in, target_out = tensors(dev)
    with torch.no_grad():
        total = model.loss(model(source, source_lengths, target_in)[0], target_out, reduction="sum")
    count = int((target_out != PAD).sum())
    model_perplexity = perplexity(total, count)

    counts = collections.Counter(t for p in training for t in target_vocab.encode(p.target) + [eos])
    seen, choices = sum(counts.values()), len(target_vocab) - 2            # every id but PAD and BOS
    unigram_nll = -sum(math.log((counts[t] + 1) / (seen + choices))
                       for p in dev for t in target_vocab.encode(p.target) + [eos])
    unigram_perplexity = perplexity(unigram_nll, count)
    # measured: 23 against 118
    assert model_perplexity < unigram_perplexity / 3, (model_perplexity, unigram_perplexity)
