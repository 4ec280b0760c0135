"""LPC WaveRNN: a GRU that models the linear-prediction excitation (LPCNet-style).

The recurrent cell is WaveRNN's (one GRU of size ``H``, the recurrence in the fused C
kernel of :mod:`.rnn`), but it predicts the 8-bit mu-law excitation of
:mod:`sps.vocoders.excitation` instead of a 16-bit sample: its inputs are the four
mu-law quantised signals ``s[n-1], p[n], e[n-1], e[n-T0]`` (each through its own
embedding of the input projection, ``E_i`` of shape ``(256, 3H)``), plus the
conditioning; its output is one 256-way softmax over ``e[n]``::

    xi_n = sum_i E_i[q_i(n)] + I_cond c(n) + b
    h_n  = GRU(xi_n, h_{n-1})
    P(e_n) = softmax(O2 relu(O1 h_n))

and ``s[n] = p[n] + e[n]`` is de-emphasised into the waveform. Conditioning: two
convolutions over the normalised frame features (as WaveRNN), projected to ``3H`` and
linearly interpolated to the samples with frame ``k`` on sample ``k * hop`` (the WORLD
frame centres, as the LPC). Sampling and everything else that is not the network is the
LPC core's (:class:`~sps.vocoders.lpc.LPCVocoder`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sps.vocoders.excitation import INPUTS
from sps.vocoders.protocol import bf16_precision

from ..lpc import N_CLASSES, LPCVocoder, Source
from .ops import frame_network
from .rnn import gru_projected


class LPCWaveRNN(LPCVocoder):
    """GRU vocoder of the linear-prediction excitation.

    Parameters
    ----------
    cond_dim, features
        As :meth:`~sps.vocoders.lpc.LPCVocoder.init_lpc`.
    hidden : int
        GRU size ``H``.
    cond_channels, cond_kernel : int
        Width ``D`` and kernel size (frames, odd) of the conditioning network
        (:func:`~.ops.frame_network`, as the WaveRNN's).
    hop_length : int
        Samples per frame.
    order, preemphasis, lag_window_hz, context_frames, temperature, voiced_temperature,
    input_noise, pulses
        The LPC core's options (:meth:`~sps.vocoders.lpc.LPCVocoder.init_lpc`).
    pitch_phase : bool
        A pitch-phase input through ``phase_proj (3H, 2)``.

    Generation options: ``precision`` (``"float32"`` or ``"bfloat16"``: the recurrent and
    output matrices rounded to bfloat16, which the C kernel stores so, halving its memory
    traffic; arithmetic stays float32) and ``sparse`` (the C kernel's block-sparse layout;
    None: for pruned matrices).
    """

    native_kernel = "wavernn"
    generation_name = "LPC WaveRNN generation"
    legacy_keys = {"embed": "embed_inputs", "I_phase.weight": "phase_proj.weight"}   # before the LPC core

    def __init__(self, cond_dim: int, features: dict, hidden: int = 384, cond_channels: int = 128,
                 cond_kernel: int = 3, hop_length: int = 80, order: int = 16, preemphasis: float = 0.85,
                 lag_window_hz: float = 50.0, context_frames: int = 4, temperature: float = 1.0,
                 voiced_temperature: float = 0.7, input_noise: float = 0.0, pitch_phase: bool = False,
                 pulses: bool = False):
        super().__init__()
        if hidden < 2:
            raise ValueError(f"hidden must be >= 2, got {hidden}")
        self.cond_dim, self.hidden, self.hop_length = cond_dim, hidden, hop_length
        self.init_lpc(cond_dim, features, order=order, preemphasis=preemphasis, lag_window_hz=lag_window_hz,
                      context_frames=context_frames, temperature=temperature,
                      voiced_temperature=voiced_temperature, input_noise=input_noise, pulses=pulses)
        H, D = hidden, cond_channels
        self.cond_net = frame_network(cond_dim, D, cond_kernel)
        self.I_cond = nn.Linear(D, 3 * H)
        bound = H ** -0.5
        self.embed_inputs = nn.Parameter(torch.empty(len(INPUTS), N_CLASSES, 3 * H).uniform_(-bound, bound))
        self.R = nn.Parameter(torch.empty(3 * H, H).uniform_(-bound, bound))
        self.O1 = nn.Linear(H, N_CLASSES)
        self.O2 = nn.Linear(N_CLASSES, N_CLASSES)
        self.phase_proj = nn.Linear(2, 3 * H, bias=False) if pitch_phase else None

    # ------------------------------------------------------------------ the network
    def frame_projection(self, cond: Tensor) -> Tensor:
        """Conditioning network and input projection per frame: ``(B, T, C)`` -> ``(B, T, 3H)``."""
        return self.I_cond(self.cond_net(self.check_cond(cond).transpose(1, 2)).transpose(1, 2))

    def sample_projection(self, P: Tensor) -> Tensor:
        """Frame projections ``(B, T, G)`` -> per sample ``(B, T * hop, G)``, frame ``k`` on
        sample ``k * hop``, linear in between (held after the last frame)."""
        B, T, G = P.shape
        hop = self.hop_length
        n = torch.arange(T * hop, device=P.device)
        k0 = torch.div(n, hop, rounding_mode="floor")
        a = ((n - k0 * hop).float() / hop)[None, :, None]
        k1 = (k0 + 1).clamp_max(T - 1)
        return P[:, k0] + a * (P[:, k1] - P[:, k0])

    def head(self, h: Tensor) -> Tensor:
        """Hidden states ``(..., H)`` -> logits of the excitation class ``(..., 256)``."""
        return self.O2(F.relu(self.O1(h)))

    def network_logits(self, q: Tensor, phase: Tensor | None, cond: Tensor) -> Tensor:
        xi = self.sample_projection(self.frame_projection(cond))
        if phase is not None:
            xi = xi + self.phase_proj(phase)
        for i in range(q.shape[-1]):
            xi = xi + F.embedding(q[..., i], self.embed_inputs[i])
        return self.head(gru_projected(xi, self.R, self.training))

    def prunable(self) -> dict[str, nn.Parameter]:
        """The matrices gradual pruning may sparsify (:mod:`sps.vocoders.pruning`): the
        recurrent matrix and the two output layers (LPCNet prunes its GRU to 10 %)."""
        return {"R": self.R, "O1": self.O1.weight, "O2": self.O2.weight}

    def _weights_version(self) -> tuple:
        """Identifies the current weights (the C kernel's packed copy is rebuilt when they change)."""
        return tuple((p.data_ptr(), p._version) for p in (self.R, self.O1.weight, self.O2.weight,
                                                          self.embed_inputs, self.O1.bias, self.O2.bias))

    def reference_start(self, src: Source, precision: str = "float32", sparse: bool | None = None) -> dict:
        """(``sparse`` is a layout of the C kernel only.)"""
        bf16 = bf16_precision(precision)

        def mat(w):
            w = w.detach().float()
            return w.bfloat16().float() if bf16 else w
        P = self.frame_projection(src.cond).float()
        return {"P": P, "h": P.new_zeros(P.shape[0], self.hidden), "Rt": mat(self.R).t(),
                "O1": mat(self.O1.weight), "O2": mat(self.O2.weight)}

    def reference_step(self, st: dict, q: Tensor, phase: Tensor | None, n: int) -> Tensor:
        P, H, hop = st["P"], self.hidden, self.hop_length
        T = P.shape[1]
        k0 = n // hop
        frac = (n - k0 * hop) / hop
        k1 = min(k0 + 1, T - 1)
        x = P[:, k0] + frac * (P[:, k1] - P[:, k0])
        for i in range(q.shape[-1]):
            x = x + self.embed_inputs[i][q[:, i]]
        if phase is not None:
            x = x + phase @ self.phase_proj.weight.t()
        h = st["h"]
        gh = h @ st["Rt"]
        r = torch.sigmoid(gh[:, :H] + x[:, :H])
        z = torch.sigmoid(gh[:, H:2 * H] + x[:, H:2 * H])
        c = torch.tanh(r * gh[:, 2 * H:] + x[:, 2 * H:])
        st["h"] = h = z * h + (1 - z) * c
        return F.linear(F.relu(F.linear(h, st["O1"], self.O1.bias)), st["O2"], self.O2.bias)

    def native_pieces(self, src: Source, chunk: int | None, precision: str = "float32",
                      sparse: bool | None = None):
        from . import native
        yield from native.lpc_pieces(self, self.frame_projection(src.cond).float(), src, chunk,
                                     precision=precision, sparse=sparse)

    def generate(self, cond: Tensor, lengths=None, temperature: float | None = None, *,
                 voiced_temperature: float | None = None, generator: torch.Generator | None = None,
                 backend: str = "auto", uniforms: Tensor | None = None, return_excitation: bool = False,
                 colour: bool | None = None, precision: str = "float32", sparse: bool | None = None):
        """:meth:`LPCVocoder.generate <sps.vocoders.lpc.LPCVocoder.generate>` with this network's
        options (see the class)."""
        return super().generate(cond, lengths, temperature, voiced_temperature=voiced_temperature,
                                generator=generator, backend=backend, uniforms=uniforms,
                                return_excitation=return_excitation, colour=colour, precision=precision,
                                sparse=sparse)
