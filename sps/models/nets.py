"""Duration and acoustic networks: feed-forward DNN, (bi)LSTM and residual 1-D CNN.

All map a padded batch of input vectors to output vectors step by step (acoustic
model: frame-level linguistic features -> acoustic features; duration model:
phone-level linguistic features -> frames per phone or per state):
``x [shape=(B, T, D_in)] -> y [shape=(B, T, D_out)]``. The recurrent and the
convolutional networks take the sequence lengths, so padding never leaks into the
real frames: a batched result equals the stack of the single-sequence results.
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
    type: Literal["dnn", "lstm", "conv"] = "dnn"
    hidden_dim: int = 256         # units per feed-forward layer (conv: channels too)
    num_layers: int = 3           # dnn: hidden layers; lstm: LSTM layers; conv: residual conv blocks
    activation: Literal["tanh", "relu", "sigmoid", "gelu"] = "tanh"
    dropout: float = 0.0
    lstm_dim: int = 256           # lstm: units per direction
    bidirectional: bool = True    # lstm
    pre_layers: int = 1           # lstm, conv: feed-forward layers before the LSTM / conv stack
    kernel_size: int = 5          # conv: taps per convolution (odd)
    dilations: tuple[int, ...] | None = None  # conv: dilation of each block (None: all 1)

    def __post_init__(self):
        if not 1 <= min(self.hidden_dim, self.lstm_dim) <= max(self.hidden_dim, self.lstm_dim) <= 1 << 16 \
                or not 0 <= min(self.num_layers, self.pre_layers) <= max(self.num_layers, self.pre_layers) <= 1000:
            raise ValueError("hidden_dim and lstm_dim must be in [1, 65536], num_layers and pre_layers in [0, 1000]")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0 or self.kernel_size > 1001:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")
        if self.dilations is not None:
            if len(self.dilations) != self.num_layers:
                raise ValueError(f"dilations has {len(self.dilations)} entries, num_layers is {self.num_layers}")
            if min(self.dilations, default=1) < 1:
                raise ValueError(f"dilations must be >= 1, got {list(self.dilations)}")


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


def _valid_mask(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
    """[shape=(B, 1, T)] 1.0 on the valid steps of ``x`` [shape=(B, T, D)] (None: all valid)."""
    if lengths is None:
        return None
    t = torch.arange(x.shape[1], device=x.device)
    return (t[None, :] < lengths.to(x.device)[:, None]).unsqueeze(1).to(x.dtype)


class ConvNet(nn.Module):
    """Feed-forward layers, then residual 1-D convolution blocks over time, then a linear output.

    Block ``i`` computes ``h <- h + Dropout(act(Conv1d_i(LayerNorm(h) * mask)))`` with
    ``kernel_size`` taps spaced ``dilations[i]`` steps apart ("same" zero padding). The
    mask zeroes the padding before every convolution, so each sequence of a batch
    sees zeros beyond its end exactly as when it is alone. Unlike an LSTM every time
    step is computed at once (large matrix products), which is much faster on a CPU;
    the receptive field is ``1 + (kernel_size - 1) * sum(dilations)`` steps.

    Parameters
    ----------
    in_dim, out_dim : int
    hidden_dim : int
        Units of the feed-forward layers and channels of the convolutions.
    pre_layers : int
        Feed-forward layers before the convolutions (0: one linear projection).
    num_layers : int
        Residual convolution blocks.
    kernel_size : int
        Odd number of taps.
    dilations : sequence of int, optional
        Dilation of each block (None: 1 for all).
    activation : str
    dropout : float
        After the feed-forward layers and inside every block.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 256, pre_layers: int = 1,
                 num_layers: int = 4, kernel_size: int = 5, dilations: tuple[int, ...] | None = None,
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        dilations = tuple(dilations) if dilations is not None else (1,) * num_layers
        if len(dilations) != num_layers or kernel_size % 2 == 0:
            raise ValueError(f"ConvNet: need odd kernel_size and one dilation per block, got "
                             f"kernel_size={kernel_size}, dilations={list(dilations)}, num_layers={num_layers}")
        self.pre = (_ff_stack(in_dim, hidden_dim, pre_layers, activation, dropout) if pre_layers > 0
                    else nn.Linear(in_dim, hidden_dim))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) for _ in dilations)
        self.convs = nn.ModuleList(nn.Conv1d(hidden_dim, hidden_dim, kernel_size, dilation=d,
                                             padding=d * (kernel_size - 1) // 2) for d in dilations)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [shape=(B, T, D_in)], lengths [shape=(B,)] steps -> [shape=(B, T, D_out)]."""
        mask = _valid_mask(x, lengths)
        h = self.pre(x).transpose(1, 2)                      # (B, H, T)
        for norm, conv in zip(self.norms, self.convs):
            z = norm(h.transpose(1, 2)).transpose(1, 2)
            if mask is not None:
                z = z * mask
            h = h + self.drop(self.act(conv(z)))
        return self.out(h.transpose(1, 2))


def build_model(cfg: ModelConfig | dict | None, in_dim: int, out_dim: int) -> nn.Module:
    """A network from a ``model`` config section (:class:`ModelConfig` or its mapping).

    Parameters
    ----------
    cfg : ModelConfig or dict
        ``type`` ("dnn" | "lstm" | "conv") and that type's options.
    in_dim, out_dim : int
    """
    c = cfg if isinstance(cfg, ModelConfig) else bind(ModelConfig, cfg, "model")
    common = dict(hidden_dim=c.hidden_dim, activation=c.activation, dropout=c.dropout)
    if c.type == "dnn":
        return FeedForward(in_dim, out_dim, num_layers=c.num_layers, **common)
    if c.type == "conv":
        return ConvNet(in_dim, out_dim, pre_layers=c.pre_layers, num_layers=c.num_layers,
                       kernel_size=c.kernel_size, dilations=c.dilations, **common)
    return RecurrentNet(in_dim, out_dim, pre_layers=c.pre_layers, lstm_dim=c.lstm_dim,
                        num_layers=c.num_layers, bidirectional=c.bidirectional, **common)
