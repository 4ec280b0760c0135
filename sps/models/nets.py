"""Duration and acoustic networks: feed-forward DNN and (bi)LSTM, built from a config.

Both map a padded batch of input vectors to output vectors frame by frame (acoustic
model: frame-level linguistic features -> acoustic features; duration model:
phone-level linguistic features -> frames per phone or per state):
``x [shape=(B, T, D_in)] -> y [shape=(B, T, D_out)]``. The recurrent network takes
the sequence lengths so padding never leaks into the real frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sps.config import bind

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


@dataclass(frozen=True)
class ModelConfig:
    """Network options (section ``model`` of a train config)."""
    type: Literal["dnn", "lstm"] = "dnn"
    hidden_dim: int = 256         # units per feed-forward layer
    num_layers: int = 3           # dnn: hidden layers; lstm: LSTM layers
    activation: Literal["tanh", "relu", "sigmoid", "gelu"] = "tanh"
    dropout: float = 0.0
    lstm_dim: int = 256           # lstm: units per direction
    bidirectional: bool = True    # lstm
    pre_layers: int = 1           # lstm: feed-forward layers before the LSTM stack

    def __post_init__(self):
        if min(self.hidden_dim, self.lstm_dim) < 1 or self.num_layers < 0 or self.pre_layers < 0:
            raise ValueError("hidden_dim and lstm_dim must be >= 1, num_layers and pre_layers >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _ff_stack(in_dim: int, hidden_dim: int, num_layers: int, activation: str, dropout: float) -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class FeedForward(nn.Module):
    """Frame-wise DNN: ``num_layers`` hidden layers of ``hidden_dim`` units, linear output.

    Parameters
    ----------
    in_dim, out_dim : int
        Input and output dimensions.
    hidden_dim, num_layers : int
    activation : str
        ``tanh`` (Merlin's choice), ``relu``, ``sigmoid`` or ``gelu``.
    dropout : float
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 256, num_layers: int = 3,
                 activation: str = "tanh", dropout: float = 0.0):
        super().__init__()
        self.body = _ff_stack(in_dim, hidden_dim, num_layers, activation, dropout)
        self.out = nn.Linear(hidden_dim if num_layers > 0 else in_dim, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [shape=(B, T, D_in)] -> [shape=(B, T, D_out)] (``lengths`` unused)."""
        return self.out(self.body(x))


class RecurrentNet(nn.Module):
    """Feed-forward layers, then a (bi)LSTM stack, then a linear output layer.

    Parameters
    ----------
    in_dim, out_dim : int
    hidden_dim : int
        Units of the feed-forward layers before the LSTM.
    pre_layers : int
        Number of those layers (0: the LSTM reads the inputs).
    lstm_dim : int
        LSTM units per direction.
    num_layers : int
        LSTM layers.
    bidirectional : bool
    activation : str
    dropout : float
        After the feed-forward layers and between LSTM layers.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 256, pre_layers: int = 1,
                 lstm_dim: int = 256, num_layers: int = 2, bidirectional: bool = True,
                 activation: str = "tanh", dropout: float = 0.0):
        super().__init__()
        self.pre = _ff_stack(in_dim, hidden_dim, pre_layers, activation, dropout)
        self.lstm = nn.LSTM(hidden_dim if pre_layers > 0 else in_dim, lstm_dim, num_layers=num_layers,
                            batch_first=True, bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.out = nn.Linear(lstm_dim * (2 if bidirectional else 1), out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [shape=(B, T, D_in)], lengths [shape=(B,)] frames -> [shape=(B, T, D_out)].

        Frames at or beyond ``lengths[b]`` are outputs of the linear layer on zeros.
        """
        h = self.pre(x)
        if lengths is None:
            h, _ = self.lstm(h)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return self.out(h)


def build_model(cfg: ModelConfig | dict | None, in_dim: int, out_dim: int) -> nn.Module:
    """A network from a ``model`` config section (:class:`ModelConfig` or its mapping).

    Parameters
    ----------
    cfg : ModelConfig or dict
        ``type`` ("dnn" | "lstm") and that type's options.
    in_dim, out_dim : int
    """
    c = cfg if isinstance(cfg, ModelConfig) else bind(ModelConfig, cfg, "model")
    common = dict(hidden_dim=c.hidden_dim, activation=c.activation, dropout=c.dropout)
    if c.type == "dnn":
        return FeedForward(in_dim, out_dim, num_layers=c.num_layers, **common)
    return RecurrentNet(in_dim, out_dim, pre_layers=c.pre_layers, lstm_dim=c.lstm_dim,
                        num_layers=c.num_layers, bidirectional=c.bidirectional, **common)
