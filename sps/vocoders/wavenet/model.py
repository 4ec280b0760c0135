"""The WaveNet network (DeepVoice / nv-wavenet variant) and its nv-wavenet weight layout.

Symbols: ``A`` output classes (256 mu-law levels), ``R`` residual channels, ``S`` skip
channels, ``L`` layers, ``B`` batch, ``T`` frames (5 ms), ``N = T * hop_length``
samples, ``C`` conditioning features per frame, ``U`` upsampled conditioning channels.

For the sample ``y[t]`` (a mu-law class) the network sees the two previous samples and
the conditioning at ``t``::

    x_0[t]   = act(E_prev[y[t-2]] + E_curr[y[t-1]])          act = tanh or identity; y[<0] = A/2
    h_l[t]   = W_prev,l x_l[t-d_l] + W_curr,l x_l[t] + b_l + c_l[t]          (2R)
    z_l[t]   = tanh(h_l[t][:R]) * sigmoid(h_l[t][R:])                        (R)
    x_l+1[t] = x_l[t] + W_res,l z_l[t] + b_res,l                             (R; not for the last layer)
    s[t]     = sum_l (W_skip,l z_l[t] + b_skip,l)                            (S)
    p(y[t])  = softmax(W_end relu(W_out relu(s[t])))                         (A)

with dilations ``d_l = 1, 2, 4, ..., max_dilation, 1, 2, ...`` and ``x_l[t] = 0`` for
``t < 0``. ``c_l`` is the conditioning: the frame features go through a kernel-3
convolution and tanh, are upsampled to the sample rate (learned transposed
convolutions, or repetition) and projected by one 1x1 convolution to ``2R`` channels
per layer.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sps.dsp import mu_law_encode

from ..protocol import Vocoder
from .generate import generate as _generate


def dilations(layers: int, max_dilation: int) -> list[int]:
    """Dilation of each layer: powers of two up to ``max_dilation``, repeating (nv-wavenet)."""
    cycle = int(math.floor(math.log2(max_dilation))) + 1
    return [2 ** (i % cycle) for i in range(layers)]


class Upsampler(nn.Module):
    """Frame features -> per-sample conditioning.

    A kernel-3 convolution over frames (with tanh), then either learned transposed
    convolutions with strides ``scales`` (product ``hop_length``) or plain repetition
    (``scales`` empty).

    Parameters
    ----------
    cond_dim : int
        Features per frame ``C``.
    channels : int
        Output channels ``U``.
    hop_length : int
        Samples per frame.
    scales : sequence of int
        Strides of the transposed convolutions; empty for repetition.
    """

    def __init__(self, cond_dim: int, channels: int, hop_length: int, scales=(4, 4, 5)):
        super().__init__()
        scales = [int(s) for s in (scales or [])]
        if scales and math.prod(scales) != hop_length:
            raise ValueError(f"upsample_scales {scales} multiply to {math.prod(scales)}, "
                             f"need hop_length {hop_length}")
        self.hop_length, self.scales = hop_length, scales
        self.pre = nn.Conv1d(cond_dim, channels, 3, padding=1)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(channels, channels, 2 * s, stride=s, padding=s // 2) for s in scales)

    def forward(self, cond: Tensor) -> Tensor:
        """cond : Tensor [shape=(B, T, C)] -> Tensor [shape=(B, U, T * hop_length)]."""
        x = torch.tanh(self.pre(cond.transpose(1, 2)))
        if not self.scales:
            return x.repeat_interleave(self.hop_length, dim=2)
        for up, s in zip(self.ups, self.scales):
            x = up(x)[..., :x.shape[-1] * s]
        return x


class GatedStack(nn.Module):
    """What the plain and the LPC WaveNet share: the gated residual layers with their skip
    and output layers (:meth:`stack`), and the conditioning network (:meth:`conditioning`).
    Each adds its own layer-0 input (:meth:`input_embeddings`); sizes as :class:`WaveNet`.
    """

    def __init__(self, cond_dim: int, *, hop_length: int, out_channels: int, residual_channels: int,
                 skip_channels: int, layers: int, max_dilation: int, cond_channels: int, upsample_scales,
                 use_embed_tanh: bool):
        super().__init__()
        A, R, S, L = out_channels, residual_channels, skip_channels, layers
        if min(A, R, S, L, max_dilation, hop_length) < 1:
            raise ValueError(f"WaveNet sizes must be positive, got A={A} R={R} S={S} L={L} "
                             f"max_dilation={max_dilation} hop_length={hop_length}")
        self.cond_dim, self.hop_length = cond_dim, hop_length
        self.A, self.R, self.S, self.L = A, R, S, L
        self.max_dilation, self.use_embed_tanh = max_dilation, bool(use_embed_tanh)
        self.dilations = dilations(L, max_dilation)
        self.init_inputs()
        self.dilate = nn.ModuleList(nn.Conv1d(R, 2 * R, 2, dilation=d) for d in self.dilations)
        # the last layer's residual output is never used (nv-wavenet has L - 1 of them)
        self.res = nn.ModuleList(nn.Conv1d(R, R, 1) for _ in range(L - 1))
        self.skip = nn.ModuleList(nn.Conv1d(R, S, 1) for _ in range(L))
        self.conv_out = nn.Conv1d(S, A, 1, bias=False)
        self.conv_end = nn.Conv1d(A, A, 1, bias=False)
        self.upsample = Upsampler(cond_dim, cond_channels, hop_length, upsample_scales)
        self.cond_proj = nn.Conv1d(cond_channels, 2 * R * L, 1)

    def init_inputs(self) -> None:
        """Create the layer-0 input parameters (called before the layers are built)."""

    def input_embeddings(self) -> dict[str, Tensor]:
        """The tables the generators of :mod:`.generate` embed sampled classes with (none
        here; the plain WaveNet's ``Ep`` / ``Ec``)."""
        return {}

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output (including the two embedded samples)."""
        return sum(self.dilations) + 2

    def conditioning(self, cond: Tensor) -> Tensor:
        """Per-layer conditioning.

        Parameters
        ----------
        cond : Tensor [shape=(B, T, C)]

        Returns
        -------
        Tensor [shape=(B, N, L * 2R)]
            Channel ``l * 2R + k`` is channel ``k`` of ``c_l``.
        """
        if cond.dim() != 3 or cond.shape[-1] != self.cond_dim:
            raise ValueError(f"cond must have shape (B, T, {self.cond_dim}), got {tuple(cond.shape)}")
        return F.linear(self.upsample(cond).transpose(1, 2), self.cond_proj.weight[:, :, 0], self.cond_proj.bias)

    def stack(self, x: Tensor, c: Tensor) -> Tensor:
        """The gated residual layers and the output layers on a whole sequence.

        Parameters
        ----------
        x : Tensor [shape=(B, N, R)]
            Layer-0 input (the embedded samples), channels last.
        c : Tensor [shape=(B, N, L * 2R)]
            Per-layer conditioning (:meth:`conditioning`).

        Returns
        -------
        Tensor [shape=(B, N, A)], logits.
        """
        N = x.shape[1]
        skip = 0.0
        R = self.R
        for i, (conv, d, c_i) in enumerate(zip(self.dilate, self.dilations, c.split(2 * R, dim=-1))):
            # kernel-2 dilated causal convolution = products with x[t - d] and x[t]
            w = conv.weight
            h = F.linear(F.pad(x, (0, 0, d, 0))[:, :N], w[:, :, 0]) + F.linear(x, w[:, :, 1], conv.bias) + c_i
            z = torch.tanh(h[..., :R]) * torch.sigmoid(h[..., R:])
            skip = skip + F.linear(z, self.skip[i].weight[:, :, 0], self.skip[i].bias)
            if i < self.L - 1:
                x = x + F.linear(z, self.res[i].weight[:, :, 0], self.res[i].bias)
        out = F.relu(F.linear(F.relu(skip), self.conv_out.weight[:, :, 0]))
        return F.linear(out, self.conv_end.weight[:, :, 0])


class WaveNet(GatedStack, Vocoder):
    """WaveNet vocoder with the nv-wavenet layer structure.

    Parameters
    ----------
    cond_dim : int
        Conditioning features per frame ``C``.
    hop_length : int
        Samples per frame (80 at 16 kHz, 5 ms).
    out_channels : int
        ``A``, mu-law classes.
    residual_channels, skip_channels : int
        ``R`` and ``S``.
    layers : int
        ``L``.
    max_dilation : int
        Dilations double from 1 up to this, then repeat.
    cond_channels : int
        ``U``, channels of the upsampled conditioning.
    upsample_scales : sequence of int
        Transposed-convolution strides (product ``hop_length``); empty: repetition.
    use_embed_tanh : bool
        tanh on the summed sample embeddings.
    preemphasis : float
        The network models audio pre-emphasised by this (``x[t] - p x[t-1]``; 0: off):
        the training data is pre-emphasised and generated audio de-emphasised around
        the model (:attr:`~sps.vocoders.protocol.Vocoder.target_preemphasis`).
    """

    takes_uniforms = True

    def __init__(self, cond_dim: int, *, hop_length: int = 80, out_channels: int = 256,
                 residual_channels: int = 64, skip_channels: int = 256, layers: int = 20,
                 max_dilation: int = 512, cond_channels: int = 64, upsample_scales=(4, 4, 5),
                 use_embed_tanh: bool = True, preemphasis: float = 0.0):
        if not 0.0 <= preemphasis < 1.0:
            raise ValueError(f"preemphasis must be in [0, 1), got {preemphasis}")
        super().__init__(cond_dim, hop_length=hop_length, out_channels=out_channels,
                         residual_channels=residual_channels, skip_channels=skip_channels, layers=layers,
                         max_dilation=max_dilation, cond_channels=cond_channels, upsample_scales=upsample_scales,
                         use_embed_tanh=use_embed_tanh)
        self.preemphasis = float(preemphasis)

    def init_inputs(self) -> None:
        """The two sample embeddings ``E_prev``, ``E_curr`` [shape=(A, R)]."""
        self.embed_prev = nn.Parameter(torch.randn(self.A, self.R) * 0.3)
        self.embed_curr = nn.Parameter(torch.randn(self.A, self.R) * 0.3)

    def input_embeddings(self) -> dict[str, Tensor]:
        return {"Ep": self.embed_prev, "Ec": self.embed_curr}

    # ------------------------------------------------------------------ full sequence
    def embed(self, prev: Tensor, curr: Tensor) -> Tensor:
        """Classes ``y[t-2]``, ``y[t-1]`` [shape=(...)] -> layer-0 input [shape=(..., R)]."""
        x = self.embed_prev[prev] + self.embed_curr[curr]
        return torch.tanh(x) if self.use_embed_tanh else x

    def logits(self, y: Tensor, cond: Tensor) -> Tensor:
        """Teacher-forced logits, time-major: [shape=(B, N, A)] (see :meth:`forward`)."""
        B, N = y.shape
        if N != cond.shape[1] * self.hop_length:
            raise ValueError(f"{N} samples do not match {cond.shape[1]} frames x hop {self.hop_length}")
        start = self.A // 2
        prev = F.pad(y, (2, 0), value=start)[:, :N]
        curr = F.pad(y, (1, 0), value=start)[:, :N]
        return self.stack(self.embed(prev, curr), self.conditioning(cond))

    def forward(self, y: Tensor, cond: Tensor) -> Tensor:
        """Teacher-forced logits.

        Parameters
        ----------
        y : Tensor [shape=(B, N), dtype=long]
            Target classes; position ``t`` is predicted from ``y[:, :t]``.
        cond : Tensor [shape=(B, T, C)] with ``N == T * hop_length``.

        Returns
        -------
        Tensor [shape=(B, A, N)]
            Logits of ``p(y[t] | y[<t], cond)``.
        """
        return self.logits(y, cond).transpose(1, 2)

    def loss(self, wav: Tensor, cond: Tensor) -> Tensor:
        """Cross-entropy of the mu-law classes of ``wav`` (teacher forcing).

        Parameters
        ----------
        wav : Tensor [shape=(B, N)], float in [-1, 1].
        cond : Tensor [shape=(B, T, C)], ``N == T * hop_length``.

        Returns
        -------
        Tensor [shape=()], nats per sample.
        """
        y = mu_law_encode(wav, self.A)
        return F.cross_entropy(self.logits(y, cond).reshape(-1, self.A), y.reshape(-1))

    # ------------------------------------------------------------------ generation
    generate = _generate        # :func:`sps.vocoders.wavenet.generate.generate`, with the model as ``self``

    # ------------------------------------------------------------------ nv-wavenet layout
    def to_nv_wavenet(self) -> tuple[dict, Callable[[Tensor], Tensor]]:
        """Weights in nv-wavenet's layout and the function that builds its ``cond_input``.

        Returns
        -------
        weights : dict
            ``embedding_prev``, ``embedding_curr`` (A, R); ``conv_out_weight`` (A, S, 1);
            ``conv_end_weight`` (A, A, 1); ``dilate_weights`` L x (2R, R, 2) where
            ``[..., 0]`` multiplies ``x[t - d]`` and ``[..., 1]`` multiplies ``x[t]``;
            ``dilate_biases`` L x (2R,); ``max_dilation``; ``res_weights`` (L-1) x
            (R, R, 1); ``res_biases`` (L-1) x (R,); ``skip_weights`` L x (S, R, 1);
            ``skip_biases`` L x (S,); ``use_embed_tanh``. Tensors are detached copies.
        cond_input : callable
            ``cond (B, T, C) -> Tensor [shape=(2R, B, L, N)]`` (see :meth:`nv_wavenet_cond_input`).
        """
        single, lists = self._nv_parameters()
        w = {key: p.detach().clone() for key, p in single.items()}
        w.update({key: [p.detach().clone() for p in params] for key, params in lists.items()})
        w.update(max_dilation=self.max_dilation, use_embed_tanh=self.use_embed_tanh)
        return w, self.nv_wavenet_cond_input

    def _nv_parameters(self) -> tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
        """nv-wavenet's names of this model's parameters: single tensors and per-layer lists."""
        single = {"embedding_prev": self.embed_prev, "embedding_curr": self.embed_curr,
                  "conv_out_weight": self.conv_out.weight, "conv_end_weight": self.conv_end.weight}
        lists = {f"{kind}_{plural}": [getattr(m, attr) for m in mods]
                 for kind, mods in (("dilate", self.dilate), ("res", self.res), ("skip", self.skip))
                 for attr, plural in (("weight", "weights"), ("bias", "biases"))}
        return single, lists

    @torch.no_grad()
    def nv_wavenet_cond_input(self, cond: Tensor) -> Tensor:
        """nv-wavenet's ``cond_input``: cond (B, T, C) -> Tensor [shape=(2R, B, L, N)].

        The conditioning projection's bias is included; the dilated convolutions'
        biases are not (they are ``dilate_biases``).
        """
        c = self.conditioning(cond)
        B, N, _ = c.shape
        return c.view(B, N, self.L, 2 * self.R).permute(3, 0, 2, 1).contiguous()

    @torch.no_grad()
    def load_nv_wavenet(self, weights: dict) -> "WaveNet":
        """Copy nv-wavenet-layout weights (as from :meth:`to_nv_wavenet`) into this model.

        ``res_weights``/``res_biases`` may hold L - 1 or L entries (a trailing unused
        residual layer is ignored). The conditioning network is left unchanged.
        """
        if int(weights["max_dilation"]) != self.max_dilation:
            raise ValueError(f"nv-wavenet max_dilation {weights['max_dilation']} != {self.max_dilation}")
        single, lists = self._nv_parameters()
        loads = []                                  # everything is checked before anything is copied
        for key, params in [(k, [p]) for k, p in single.items()] + list(lists.items()):
            items = [weights[key]] if key in single else list(weights[key])
            if len(items) < len(params):
                raise ValueError(f"nv-wavenet {key}: {len(items)} entries, expected {len(params)}")
            for p, t in zip(params, items):
                t = torch.as_tensor(t)
                if t.numel() != p.numel() or (key in single and tuple(t.shape[:2]) != tuple(p.shape[:2])):
                    raise ValueError(f"nv-wavenet {key}: shape {tuple(t.shape)}, expected {tuple(p.shape)}")
                loads.append((p, t.reshape(p.shape)))
        for p, t in loads:
            p.copy_(t)
        self.use_embed_tanh = bool(weights["use_embed_tanh"])
        return self

    @classmethod
    def from_nv_wavenet(cls, weights: dict, cond_dim: int, **kwargs) -> "WaveNet":
        """A WaveNet whose sizes (A, R, S, L, max_dilation) are read from nv-wavenet weights.

        ``kwargs`` configure the conditioning network (``hop_length``,
        ``cond_channels``, ``upsample_scales``), which nv-wavenet does not store: load
        its state separately or train it.
        """
        A, R = torch.as_tensor(weights["embedding_curr"]).shape
        S = torch.as_tensor(weights["skip_weights"][0]).shape[0]
        L = len(weights["dilate_weights"])
        model = cls(cond_dim, out_channels=A, residual_channels=R, skip_channels=S, layers=L,
                    max_dilation=int(weights["max_dilation"]),
                    use_embed_tanh=bool(weights["use_embed_tanh"]), **kwargs)
        return model.load_nv_wavenet(weights)
