"""The recurrent encoder every model shares, and the one way a model is told which encoder to use.

A model takes its encoder as ``encoder=`` (as Flax's ``RNN(cell)`` takes a built cell, and nanoGPT's
model one ``GPTConfig``), in one of three forms:

* an ``EncoderConfig``: cell, hidden size, layers, direction, dropout between layers and the cell's
  options; the model builds it for the size of what it feeds the encoder (its embedding size, its
  features);
* a built ``rnnkit.Recurrent`` (any of its subclasses, e.g. the drop-in ``rnnkit.LSTM``), batch-first
  or not;
* a ``RecurrentEncoder`` around one.

A built layer must read exactly what the model feeds it (its ``input_size``); the model checks and
names both sizes. ``RecurrentEncoder`` runs the layer over a padded batch with the true lengths
(padding is never fed as data) and returns every step's output and a summary of each sequence.

The flat settings that models took before (``hidden_size=, cell=, num_layers=, bidirectional=`` and
the cell's options as keywords) still work for one release, with a ``DeprecationWarning``:
``encoder_from_flat`` turns them into the ``EncoderConfig`` they stand for, for every model.
"""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from ..cells import cell_class, cell_options as options_of_cell
from ..cells.base import RecurrentCell, check_positive_int
from ..layers import Recurrent
from ..layers.recurrent import check_bool, check_rate

# Recurrent's own keyword options (zoneout, input_dropout, ...), which EncoderConfig.options may hold
# beside the cell's; device and dtype are the whole model's (model.to(...)), not the encoder's.
LAYER_OPTIONS = tuple(name for name, p in inspect.signature(Recurrent.__init__).parameters.items()
                      if p.kind is p.KEYWORD_ONLY and name not in ("device", "dtype"))
# options that name something EncoderConfig or the model decides, and where to give it instead
_NOT_OPTIONS = {**{name: f"EncoderConfig's field {name}"
                   for name in ("cell", "hidden_size", "num_layers", "bidirectional", "dropout")},
                "input_size": "nowhere: the model gives it",
                "batch_first": "nowhere: the encoder reads batch-first input",
                "device": "nowhere: move the model with model.to(device)",
                "dtype": "nowhere: convert the model with model.to(dtype)"}
# the deprecated flat settings, in the order the models took them positionally (after their own)
FLAT_SETTINGS = ("hidden_size", "cell", "num_layers", "bidirectional")


@dataclass(frozen=True, repr=False)
class EncoderConfig:
    r"""What a model's recurrent encoder is: the model builds it for its own input size.

    Args:
        cell: a cell (``rnnkit.cells.resolve``): a registered name (``"lstm"``, ``"gru"``, ...),
            ``"package.module:ClassName"`` or a ``RecurrentCell`` subclass.
        hidden_size: H, the hidden size of every layer.
        num_layers: L, stacked layers.
        bidirectional: read each sequence both ways (D = 2).
        dropout: dropout on the outputs of every layer but the last (as torch.nn.LSTM's), in [0, 1];
            this is the one place of the rule that it acts only when ``num_layers > 1`` (with one
            layer it is ignored, without a warning).
        options: the cell's own options (``{"variant": "cifg"}``, ``{"nonlinearity": "relu"}``) and
            ``rnnkit.Recurrent``'s (``zoneout``, ``input_dropout``, ``recurrent_dropout``,
            ``learn_initial_state``, ``backend``, ``bptt``); kept read-only.

    The settings are checked here, before any model is built: types and ranges, the cell's name, and
    the option names (an option neither the cell nor ``Recurrent`` takes is a TypeError naming it);
    an option's value is checked when the layer is built.

    ``build(input_size)`` → a ``RecurrentEncoder``; ``layer(input_size)`` → the batch-first
    ``rnnkit.Recurrent`` inside it.

    >>> config = EncoderConfig("gru", hidden_size=32, num_layers=2, dropout=0.1)
    >>> encoder = config.build(input_size=16)
    >>> encoder.output_size
    32
    """

    cell: Union[str, type[RecurrentCell]] = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        cls = cell_class(self.cell)                     # TypeError / ValueError naming the cell
        check_positive_int("hidden_size", self.hidden_size)
        check_positive_int("num_layers", self.num_layers)
        check_bool("bidirectional", self.bidirectional)
        check_rate("dropout", self.dropout, closed=True)
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise TypeError(f"options must be a mapping of option names (str) to values, got {self.options!r}")
        for name in self.options:
            if name in _NOT_OPTIONS:
                raise ValueError(f"options must not hold {name!r}: give it in {_NOT_OPTIONS[name]}")
        takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
        accepted = options_of_cell(cls) + list(LAYER_OPTIONS)
        unknown = [name for name in self.options if name not in accepted]
        if unknown and not takes_any:
            raise TypeError(f"options: cell {self.cell!r} does not take option(s) {', '.join(map(repr, unknown))}; "
                            f"it takes: {', '.join(options_of_cell(cls)) or 'no options'}; rnnkit.Recurrent "
                            f"takes: {', '.join(LAYER_OPTIONS)}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def cell_options(self) -> dict[str, Any]:
        """The options that go to the cell itself (those of ``options`` that are not Recurrent's)."""
        return {name: value for name, value in self.options.items() if name not in LAYER_OPTIONS}

    def layer(self, input_size: int) -> Recurrent:
        """The batch-first ``rnnkit.Recurrent`` these settings describe, reading ``input_size`` features."""
        return Recurrent(self.cell, input_size, self.hidden_size, num_layers=self.num_layers,
                         bidirectional=self.bidirectional, batch_first=True,
                         dropout=self.dropout if self.num_layers > 1 else 0.0, **self.options)

    def build(self, input_size: int) -> RecurrentEncoder:
        """A ``RecurrentEncoder`` around ``layer(input_size)``."""
        return RecurrentEncoder(self.layer(input_size))

    def __repr__(self) -> str:
        """The call that builds this config, fields left at EncoderConfig's defaults left out."""
        given = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                 if f.name != "options" and getattr(self, f.name) != f.default]
        if self.options:
            given.append(f"options={dict(self.options)!r}")
        return f"EncoderConfig({', '.join(given)})"

    def __reduce__(self):
        # the read-only options (a mappingproxy) do not pickle: rebuild from a plain dict
        return (type(self), (self.cell, self.hidden_size, self.num_layers, self.bidirectional, self.dropout,
                             dict(self.options)))


class RecurrentEncoder(nn.Module):
    r"""Run a built ``rnnkit.Recurrent`` over a padded batch and summarise each sequence.

    Args:
        layer: the ``rnnkit.Recurrent`` to run (``EncoderConfig.build`` makes one; a user's own layer,
            or a drop-in such as ``rnnkit.LSTM``, is taken as it is). A layer built without
            ``batch_first=True`` is given its input time-major and its outputs are turned back:
            the encoder reads and returns batch-first tensors either way.

    The form ``RecurrentEncoder(input_size, hidden_size, cell, num_layers, bidirectional, dropout,
    **cell_options)`` of earlier releases still builds one, with a DeprecationWarning: use
    ``EncoderConfig(cell, hidden_size, ...).build(input_size)``.

    Call: ``outputs, summary, state = encoder(x, lengths)``

    * x: (B, T, I) padded batch; lengths: (B,) true lengths (None: all T).
    * outputs: (B, T, D·O), zero past each sequence's end.
    * summary: (B, D·O), the forward direction's output at each sequence's last step, concatenated
      with the backward direction's output at step 0 (which has read the whole sequence).
    * state: the final state as ``Recurrent`` returns it ((L·D, B, S) or a tuple of such).

    Attributes: ``rnn`` (the layer), ``input_size`` (I), ``output_size`` (D·O), ``num_directions`` (D).
    """

    def __init__(self, layer: Recurrent, *flat_settings, **flat_options) -> None:
        super().__init__()
        if not isinstance(layer, Recurrent):
            if isinstance(layer, bool) or not isinstance(layer, int) or not (flat_settings or flat_options):
                raise TypeError(f"RecurrentEncoder takes a built rnnkit.Recurrent (EncoderConfig(...).build("
                                f"input_size) makes one), got {type(layer).__name__} ({layer!r})")
            config = encoder_from_flat("RecurrentEncoder", None, EncoderConfig(), args=flat_settings,
                                       names=FLAT_SETTINGS + ("dropout",),
                                       options=flat_options, keyword=None)
            layer = config.layer(layer)
        elif flat_settings or flat_options:
            raise TypeError("RecurrentEncoder(layer) takes no other arguments: the layer holds its settings")
        self.rnn = layer
        self.input_size = layer.input_size
        self.num_directions = layer.num_directions
        self.output_size = layer.output_size

    def forward(self, x: Tensor, lengths: Tensor | None = None, state=None):
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        outputs, final_state = run_batch_first(self.rnn, x, state, lengths)        # (B, T, D·O)
        O = self.output_size // self.num_directions
        last = (lengths - 1).clamp(min=0).to(x.device)                             # (B,)
        forward_last = outputs[torch.arange(B, device=x.device), last, :O]         # (B, O)
        if self.num_directions == 1:
            return outputs, forward_last, final_state
        backward_first = outputs[:, 0, O:]                                         # (B, O)
        return outputs, torch.cat([forward_last, backward_first], dim=-1), final_state


EncoderLike = Union[EncoderConfig, Recurrent, RecurrentEncoder]


def run_batch_first(layer: Recurrent, x: Tensor, state=None, lengths: Tensor | None = None):
    """``layer(x, state, lengths=lengths)`` for a batch-first ``x`` (B, T, I), whatever the layer's own
    ``batch_first``: outputs (B, T, D·O) and the final state ((L·D, B, S), as ever)."""
    if layer.batch_first:
        return layer(x, state, lengths=lengths)
    outputs, final_state = layer(x.transpose(0, 1), state, lengths=lengths)       # (T, B, D·O)
    return outputs.transpose(0, 1), final_state                                    # (B, T, D·O)


def build_encoder(owner: str, encoder: EncoderLike, input_size: int, reads: str) -> RecurrentEncoder:
    """The ``RecurrentEncoder`` for ``encoder`` (see the module docstring) reading ``input_size``
    features: a config is built for it; a built layer must read exactly that many (ValueError naming
    ``owner``, both sizes and ``reads``, what the model feeds the encoder)."""
    if isinstance(encoder, EncoderConfig):
        return encoder.build(input_size)
    if isinstance(encoder, Recurrent):
        encoder = RecurrentEncoder(encoder)
    if not isinstance(encoder, RecurrentEncoder):
        raise TypeError(f"{owner}: encoder must be an EncoderConfig, an rnnkit.Recurrent or a RecurrentEncoder, "
                        f"got {type(encoder).__name__}")
    if encoder.input_size != input_size:
        raise ValueError(f"{owner}: the encoder's input_size is {encoder.input_size}, but the model feeds it "
                         f"{reads}: {input_size} features; build the layer with input_size={input_size}")
    return encoder


def encoder_from_flat(owner: str, encoder: EncoderLike | None, default: EncoderConfig, *, dropout: float = 0.0,
                      args: Sequence[Any] = (), names: Sequence[str] = (), options: Mapping[str, Any] | None = None,
                      renamed: Mapping[str, str] | None = None, keyword: str | None = "encoder") -> EncoderLike:
    """The encoder ``owner`` was asked for: ``encoder`` (None: ``default``), or the ``EncoderConfig``
    that the deprecated flat settings stand for, with a DeprecationWarning that shows it.

    The flat settings are what the models took before ``encoder=``: positional ``args`` for the
    parameters ``names`` (``hidden_size``, ``cell``, ...), and keyword ``options``: those names, old
    names mapped by ``renamed`` (``bidirectional_encoder`` → ``bidirectional``), and everything else
    as the cell's or Recurrent's options. The config reproduces the old model exactly: a field not
    given keeps ``default``'s (the model's own defaults), and the model's ``dropout`` also acts between
    stacked layers (``EncoderConfig.layer`` applies it only when ``num_layers > 1``, as the models did).
    ``keyword``: the argument that replaces them (None: the config is to be built by hand).
    """
    if len(args) > len(names):
        raise TypeError(f"{owner}() takes at most {len(names)} positional arguments after its own "
                        f"({', '.join(names)}, deprecated), got {len(args)}: pass the others by keyword")
    given = dict(zip(names, args))
    for name, value in (options or {}).items():
        if name in given:
            raise TypeError(f"{owner}() got multiple values for argument {name!r}")
        given[name] = value
    options = given
    if not options:
        return default if encoder is None else encoder
    if encoder is not None and encoder is not default:
        raise TypeError(f"{owner}() got {keyword}= and the flat encoder settings {', '.join(map(repr, options))}: "
                        f"give only {keyword}= (the cell's options go in EncoderConfig(options={{...}}))")
    settings = {(renamed or {}).get(name, name): value for name, value in options.items()}
    own = {f.name: settings.pop(f.name) for f in dataclasses.fields(EncoderConfig)
           if f.name != "options" and f.name in settings}
    config = dataclasses.replace(default, **{"dropout": dropout, **own}, options={**default.options, **settings})
    how = f"pass {keyword}={config!r}" if keyword else f"use {config!r}.build(input_size)"
    warnings.warn(f"{owner}({', '.join(f'{name}=...' for name in options)}) is deprecated: {how}",
                  DeprecationWarning, stacklevel=3)
    return config


def length_mask(lengths: Tensor, max_length: int) -> Tensor:
    """(B, T) booleans: True where step t is inside sequence b."""
    steps = torch.arange(max_length, device=lengths.device)                       # (T,)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)                              # (B, T)
