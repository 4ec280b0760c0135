"""WaveRNN (Kalchbrenner et al., 2018) conditioned on per-frame acoustic features.

A 16-bit sample ``v`` is split into a coarse byte ``c = v // 256`` and a fine byte
``f = v % 256``, each predicted by its own 256-way softmax. One GRU-style cell of
hidden size ``H`` holds both predictors: the first ``H/2`` units (the coarse half)
see ``x_t = [c_{t-1}, f_{t-1}]``, the last ``H/2`` (the fine half) additionally see
the current coarse byte ``c_t``. The mask lives in the input matrix ``I``; the
recurrent matrix ``R`` acts on the whole previous state, so one product ``R h_{t-1}``
serves both halves at generation time.

Gate layout (shared by the training forward, the PyTorch generator and the C
kernel): rows of ``I``, ``R`` and the bias are ``[r | u | e]`` (reset, update,
candidate), each ``H`` rows, each split ``[coarse (H/2) | fine (H/2)]``. That is the
row order of :func:`torch.gru`. The teacher-forced forward computes the input
projections of the whole sequence in one product and runs only the recurrence
step by step (:mod:`.rnn`: cuDNN on CUDA, a C kernel with its own backward pass
on CPU)::

    r = sigmoid(R_r h + I_r x + b_r)
    u = sigmoid(R_u h + I_u x + b_u)
    e = tanh(r * (R_e h) + I_e x + b_e)
    h = u * h_prev + (1 - u) * e
    P(c_t) = softmax(O2 relu(O1 h[:H/2]))      P(f_t) = softmax(O4 relu(O3 h[H/2:]))

Conditioning: a small convolution stack maps the normalised acoustic features
``(B, T, C)`` to ``(B, T, D)``; their projection ``I_cond`` (``3H x D``) is linearly
interpolated to the sample rate and added to the input projections.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..protocol import Vocoder
from ..pruning import block_mask
from . import generate as _gen
from .ops import byte_to_input, frame_network, pad_frames, split_16bit, upsample
from .rnn import gru_aten, gru_sequence

N_CLASSES = 256


class WaveRNN(Vocoder):
    """Dual-softmax WaveRNN vocoder.

    Parameters
    ----------
    cond_dim : int
        Number of conditioning features ``C`` per frame.
    hidden : int
        GRU size ``H`` (even); the coarse and fine halves have ``H/2`` units each.
    cond_channels : int
        Width ``D`` of the conditioning network.
    cond_kernel : int
        Kernel size (frames, odd) of the two conditioning convolutions.
    hop_length : int
        Samples per conditioning frame (80 at 16 kHz, 5 ms).
    preemphasis : float
        The network models audio pre-emphasised by this (0: off), applied around the
        model (:attr:`~sps.vocoders.protocol.Vocoder.target_preemphasis`).
    """

    def __init__(self, cond_dim: int, hidden: int = 896, cond_channels: int = 128,
                 cond_kernel: int = 5, hop_length: int = 80, preemphasis: float = 0.0):
        super().__init__()
        if not 0.0 <= preemphasis < 1.0:
            raise ValueError(f"preemphasis must be in [0, 1), got {preemphasis}")
        self.preemphasis = float(preemphasis)
        if hidden % 2 or hidden <= 0:
            raise ValueError(f"WaveRNN hidden size must be a positive even number, got {hidden}")
        self.cond_dim, self.hidden, self.hop_length = cond_dim, hidden, hop_length
        H, H2, D = hidden, hidden // 2, cond_channels
        self.cond_net = frame_network(cond_dim, D, cond_kernel)
        bound = H ** -0.5
        self.I = nn.Parameter(torch.empty(3 * H, 3).uniform_(-bound, bound))
        self.I_cond = nn.Parameter(torch.empty(3 * H, D).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(3 * H))
        self.R = nn.Parameter(torch.empty(3 * H, H).uniform_(-bound, bound))
        self.O1, self.O2 = nn.Linear(H2, H2), nn.Linear(H2, N_CLASSES)
        self.O3, self.O4 = nn.Linear(H2, H2), nn.Linear(H2, N_CLASSES)
        mask = torch.ones(3 * H, 3)
        for g in range(3):  # coarse rows of each gate do not see c_t
            mask[g * H:g * H + H2, 2] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    # ------------------------------------------------------------------ training
    def conditioning(self, cond: Tensor) -> Tensor:
        """Conditioning network: ``cond (B, T, C)`` -> features ``(B, T, D)``."""
        return self.cond_net(self.check_cond(cond).transpose(1, 2)).transpose(1, 2)

    def rnn(self, x: Tensor, cond_up: Tensor) -> Tensor:
        """Teacher-forced recurrence.

        Parameters
        ----------
        x : Tensor [shape=(B, N, 3)]
            Scaled inputs ``[c_{t-1}, f_{t-1}, c_t]`` in [-1, 1].
        cond_up : Tensor [shape=(B, N, D)]
            Conditioning features at the sample rate.

        Returns
        -------
        Tensor [shape=(B, N, H)]
            Hidden states; ``[..., :H/2]`` coarse half, ``[..., H/2:]`` fine half.
        """
        w_ih = torch.cat([self.I * self.mask, self.I_cond], 1)
        inp = torch.cat([x, cond_up], -1)
        if x.is_cuda:   # cuDNN runs the whole recurrence (forward and backward) fused
            return gru_aten(inp, w_ih, self.bias, self.R, self.training)
        return gru_sequence(F.linear(inp, w_ih, self.bias), self.R)

    def heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Output layers: hidden states ``(..., H)`` -> coarse, fine logits ``(..., 256)``."""
        H2 = self.hidden // 2
        return (self.O2(F.relu(self.O1(h[..., :H2]))),
                self.O4(F.relu(self.O3(h[..., H2:]))))

    def logits(self, wav: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits of every sample of ``wav``.

        Parameters
        ----------
        wav : Tensor [shape=(B, N)]
            Waveform in [-1, 1]; ``N == T * hop_length``.
        cond : Tensor [shape=(B, T, C)]
            Normalised conditioning features.

        Returns
        -------
        coarse, fine : Tensor [shape=(B, N, 256)]
            Unnormalised log-probabilities of ``c_t`` and ``f_t`` given the past
            (and, for the fine byte, ``c_t``). The state starts at zero and the
            sample before ``wav[:, 0]`` is taken as silence.
        """
        B, N = wav.shape
        if cond.shape[0] != B or N != cond.shape[1] * self.hop_length:
            raise ValueError(f"wav {tuple(wav.shape)} and cond {tuple(cond.shape)} do not match: "
                             f"need N == T * hop_length ({self.hop_length})")
        c, f = split_16bit(wav)
        c_prev = F.pad(c[:, :-1], (1, 0), value=128)
        f_prev = F.pad(f[:, :-1], (1, 0), value=0)
        x = byte_to_input(torch.stack([c_prev, f_prev, c], -1))
        cond_up = upsample(pad_frames(self.conditioning(cond)), self.hop_length)
        return self.heads(self.rnn(x, cond_up))

    def loss(self, wav: Tensor, cond: Tensor) -> Tensor:
        """Cross-entropy of the coarse plus the fine byte (nats per sample, mean)."""
        lc, lf = self.logits(wav, cond)
        c, f = split_16bit(wav)
        return (F.cross_entropy(lc.reshape(-1, N_CLASSES), c.reshape(-1))
                + F.cross_entropy(lf.reshape(-1, N_CLASSES), f.reshape(-1)))

    # ---------------------------------------------------------------- generation
    def cond_projection(self, cond: Tensor) -> Tensor:
        """Per-frame input projections ``I_cond @ features`` -> ``(B, T, 3H)``."""
        return self.conditioning(cond) @ self.I_cond.t()

    @torch.no_grad()
    def prunable(self) -> dict[str, nn.Parameter]:
        """The matrices gradual pruning may sparsify (:mod:`sps.vocoders.pruning`):
        the recurrent matrix and the four output layers, all read by the generation
        kernels in block-sparse form."""
        return {"R": self.R, "O1": self.O1.weight, "O2": self.O2.weight,
                "O3": self.O3.weight, "O4": self.O4.weight}

    generate = _gen.generate    # :func:`sps.vocoders.wavernn.generate.generate`, with the model as ``self``


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, block: tuple[int, int] = (1, 1)) -> nn.Module:
    """Zero the smallest blocks of the model's prunable matrices in place (one shot).

    Each matrix of ``model.prunable()`` keeps its ``1 - sparsity`` fraction of
    ``block``-shaped blocks of largest L2 norm (``(1, 1)``: single weights by ``|w|``).
    Gradual pruning during training (:mod:`sps.vocoders.pruning`) costs far less
    likelihood at the same sparsity. Returns the model.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    with torch.no_grad():
        for w in model.prunable().values():
            w.mul_(block_mask(w, sparsity, block))
    return model
