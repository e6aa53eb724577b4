"""PyTorch's word_language_model example, trimmed to run in a test, with the namespace that holds
the recurrent modules as a parameter (``rnn_modules``: ``torch.nn`` or ``rnnkit``) so that the same
code trains, saves and reloads a model with torch.nn.LSTM/GRU/RNN or with rnnkit's drop-ins.

Derived from pytorch/examples at commit 28d16ffaa50702f18cae7eba7c67bf03794770cd:
word_language_model/main.py, word_language_model/model.py (RNNModel) and word_language_model/data.py,
re-typed and trimmed:

    Copyright (c) 2017, Pytorch contributors. All rights reserved. BSD 3-Clause License:
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

What is kept, as upstream writes it: ``Dictionary`` and ``Corpus`` (train/valid/test.txt read from a
folder), ``batchify``, ``get_batch``, ``repackage_hidden`` (the detach between batches), ``RNNModel``
(dropout, embedding, the recurrent module, decoder, optional tied weights, log-softmax, ``init_hidden``),
the NLL loss, ``clip_grad_norm_``, the manual SGD step ``p.data.add_(p.grad, alpha=-lr)``, the epoch
loop that saves the whole model with ``torch.save(model, f)`` when the validation loss improves and
divides lr by 4 when it does not, and the end: ``torch.load`` of the saved model (weights only, with
upstream's list of torch.nn classes as safe globals and nothing about rnnkit), ``flatten_parameters()``
and the test loss. The one change: ``getattr(nn, rnn_type)`` / ``nn.RNN`` take ``rnn_modules``
instead of ``nn``. Trimmed: argparse (a Namespace of the same names, small sizes), device choice,
printing and timing, the Transformer, the AdamW option, ONNX export; ``main`` returns the reloaded
model and the losses. Upstream's ``torch.load(f)`` relies on torch's default ``weights_only=True``;
here it is spelt out.
"""
from __future__ import annotations

import os
from argparse import Namespace
from io import open

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- data.py -----------------------------------------------------------------------------------------
class Dictionary(object):
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus(object):
    def __init__(self, path):
        self.dictionary = Dictionary()
        self.train = self.tokenize(os.path.join(path, 'train.txt'))
        self.valid = self.tokenize(os.path.join(path, 'valid.txt'))
        self.test = self.tokenize(os.path.join(path, 'test.txt'))

    def tokenize(self, path):
        """Tokenizes a text file."""
        assert os.path.exists(path)
        with open(path, 'r', encoding="utf8") as f:
            for line in f:
                for word in line.split() + ['<eos>']:
                    self.dictionary.add_word(word)
        with open(path, 'r', encoding="utf8") as f:
            idss = []
            for line in f:
                ids = [self.dictionary.word2idx[word] for word in line.split() + ['<eos>']]
                idss.append(torch.tensor(ids).type(torch.int64))
            ids = torch.cat(idss)
        return ids


# --- model.py ------------------------------------------------------------------------------------------
class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False, rnn_modules=nn):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ['LSTM', 'GRU']:
            self.rnn = getattr(rnn_modules, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            try:
                nonlinearity = {'RNN_TANH': 'tanh', 'RNN_RELU': 'relu'}[rnn_type]
            except KeyError as e:
                raise ValueError("""An invalid option for `--model` was supplied,
                                 options are ['LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU']""") from e
            self.rnn = rnn_modules.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

        # Optionally tie weights (Press & Wolf 2016; Inan et al. 2016)
        if tie_weights:
            if nhid != ninp:
                raise ValueError('When using the tied flag, nhid must be equal to emsize')
            self.decoder.weight = self.encoder.weight

        self.init_weights()

        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == 'LSTM':
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        else:
            return weight.new_zeros(self.nlayers, bsz, self.nhid)


# --- main.py -------------------------------------------------------------------------------------------
DEFAULTS = dict(model='LSTM', emsize=16, nhid=16, nlayers=2, lr=20, clip=0.25, epochs=2, batch_size=4,
                bptt=8, dropout=0.2, tied=False, seed=1111, save='model.pt')


def main(data: str, rnn_modules=nn, **options):
    """Train, save, reload and test as main.py does; returns (reloaded model, validation losses per
    epoch, test loss). ``options`` override ``DEFAULTS`` (main.py's arguments, made small)."""
    args = Namespace(data=data, **{**DEFAULTS, **options})
    torch.manual_seed(args.seed)
    device = torch.device("cpu")

    corpus = Corpus(args.data)

    def batchify(data, bsz):
        # Work out how cleanly we can divide the dataset into bsz parts.
        nbatch = data.size(0) // bsz
        # Trim off any extra elements that wouldn't cleanly fit (remainders).
        data = data.narrow(0, 0, nbatch * bsz)
        # Evenly divide the data across the bsz batches.
        data = data.view(bsz, -1).t().contiguous()
        return data.to(device)

    eval_batch_size = 2
    train_data = batchify(corpus.train, args.batch_size)
    val_data = batchify(corpus.valid, eval_batch_size)
    test_data = batchify(corpus.test, eval_batch_size)

    ntokens = len(corpus.dictionary)
    model = RNNModel(args.model, ntokens, args.emsize, args.nhid, args.nlayers, args.dropout, args.tied,
                     rnn_modules=rnn_modules).to(device)
    criterion = nn.NLLLoss()

    def repackage_hidden(h):
        """Wraps hidden states in new Tensors, to detach them from their history."""
        if isinstance(h, torch.Tensor):
            return h.detach()
        else:
            return tuple(repackage_hidden(v) for v in h)

    def get_batch(source, i):
        seq_len = min(args.bptt, len(source) - 1 - i)
        data = source[i:i+seq_len]
        target = source[i+1:i+1+seq_len].view(-1)
        return data, target

    def evaluate(data_source):
        # Turn on evaluation mode which disables dropout.
        model.eval()
        total_loss = 0.
        hidden = model.init_hidden(eval_batch_size)
        with torch.no_grad():
            for i in range(0, data_source.size(0) - 1, args.bptt):
                data, targets = get_batch(data_source, i)
                output, hidden = model(data, hidden)
                hidden = repackage_hidden(hidden)
                total_loss += len(data) * criterion(output, targets).item()
        return total_loss / (len(data_source) - 1)

    def train():
        # Turn on training mode which enables dropout.
        model.train()
        hidden = model.init_hidden(args.batch_size)
        for batch, i in enumerate(range(0, train_data.size(0) - 1, args.bptt)):
            data, targets = get_batch(train_data, i)
            # Starting each batch, we detach the hidden state from how it was previously produced.
            model.zero_grad()
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()

            # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs / LSTMs.
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)

    # Loop over epochs.
    lr = args.lr
    best_val_loss = None
    val_losses = []
    for epoch in range(1, args.epochs+1):
        train()
        val_loss = evaluate(val_data)
        val_losses.append(val_loss)
        # Save the model if the validation loss is the best we've seen so far.
        if not best_val_loss or val_loss < best_val_loss:
            with open(args.save, 'wb') as f:
                torch.save(model, f)
            best_val_loss = val_loss
        else:
            # Anneal the learning rate if no improvement has been seen in the validation dataset.
            lr /= 4.0

    # Load the best saved model.
    with open(args.save, 'rb') as f:
        safe_globals = [
            RNNModel,
            torch.nn.modules.dropout.Dropout,
            torch.nn.modules.linear.Linear,
            torch.nn.modules.rnn.GRU,
            torch.nn.modules.rnn.LSTM,
            torch.nn.modules.rnn.RNN,
            torch.nn.modules.sparse.Embedding,
        ]
        with torch.serialization.safe_globals(safe_globals):
            model = torch.load(f, weights_only=True)
        # after load the rnn params are not a continuous chunk of memory
        # this makes them a continuous chunk, and will speed up forward pass
        model.rnn.flatten_parameters()

    # Run on test data.
    test_loss = evaluate(test_data)
    return model, val_losses, test_loss
