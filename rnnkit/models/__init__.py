"""Models for the four ways to use a recurrent network, and recursive networks over trees.

Every model is a ``torch.nn.Module`` that takes tensors (token ids, features, lengths) and a recurrent
encoder of any cell of ``rnnkit.cells``: ``encoder=EncoderConfig("gru", hidden_size=64)``, or a built
``rnnkit.Recurrent``; given its targets (``labels=``, ``tags=``, ``targets=``) ``forward`` returns
``(output, loss)``. Readers and vocabularies live in ``rnnkit.data``, training in ``rnnkit.train``.

* sequence → class: ``SequenceClassifier`` (final state, mean / max / attention pooling)
* synchronized sequence → sequence: ``SequenceTagger`` (+ ``LinearChainCRF``, character features,
  joint intent head)
* encoder-decoder: ``Seq2Seq`` with ``Attention``, ``greedy_decode`` and ``beam_search``
* generation: ``LanguageModel`` and ``generate``
* trees: ``RecursiveNN``, ``BinaryTreeLSTM``, ``TreeClassifier``
* time series: ``SequenceRegressor`` (and ``SequenceClassifier`` on float features)
"""
from .attention import Attention
from .char_features import CharacterWordEncoder
from .classifier import SequenceClassifier
from .crf import LinearChainCRF
from .decoding import Hypothesis, beam_search, greedy_decode
from .encoder import EncoderConfig, RecurrentEncoder, length_mask
from .language_model import LanguageModel, detach_state
from .pooling import AttentionPooling, Pooling
from .regressor import SequenceRegressor
from .sampling import generate
from .seq2seq import Seq2Seq
from .tagger import SequenceTagger
from .tree import BinaryTreeLSTM, RecursiveNN, TreeClassifier

__all__ = ["EncoderConfig", "RecurrentEncoder", "length_mask", "SequenceClassifier", "Pooling", "AttentionPooling",
           "SequenceTagger", "LinearChainCRF", "CharacterWordEncoder", "Seq2Seq", "Attention",
           "Hypothesis", "greedy_decode", "beam_search", "LanguageModel", "detach_state", "generate",
           "RecursiveNN", "BinaryTreeLSTM", "TreeClassifier", "SequenceRegressor"]
