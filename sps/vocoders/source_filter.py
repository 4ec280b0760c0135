"""A classical source-filter LPC vocoder: the floor every neural vocoder must beat.

No network and no training. Every frame's all-pole envelope and gain come from its
mel-cepstrum (:class:`~sps.vocoders.excitation.LinearPrediction`, order 16 by default,
on the pre-emphasised signal); the excitation is a pulse train at F0 in voiced frames
(one pulse per pitch period, placed by :func:`~sps.vocoders.excitation.pitch_source`) and
white noise in unvoiced frames; with ``mixed`` the voiced excitation is pulses and
noise in the power ratio the band aperiodicity gives. The excitation, scaled by the
frame gain, runs through the time-varying synthesis filter ``1 / A(z)``
(:func:`sps.dsp.lfilter`), and the result is de-emphasised.

It has the vocoder protocol's ``generate`` (and is registered as ``source_filter``), so
``sps vocode`` runs it with a config naming ``vocoder: source_filter``: the stage builds
it from the config (there is nothing to train).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from sps.dsp import deemphasis, lfilter
from sps.vocoders.protocol import Vocoder
from sps.vocoders.excitation import LinearPrediction, pitch_source, sample_frames


class SourceFilterVocoder(Vocoder):
    """Pulse/noise excitation through per-frame LPC synthesis filters.

    Parameters
    ----------
    cond_dim : int
        Conditioning features per frame ``C``.
    features : dict
        Conditioning layout (:meth:`sps.vocoders.conditioning.Conditioning.layout`; ``bap``
        ``[start, count]`` is needed for ``mixed``).
    hop_length : int
        Samples per frame.
    order, preemphasis : int, float
        Linear prediction settings.
    mixed : bool
        Voiced frames mix pulses and noise by the band aperiodicity (else pure pulses).
    """

    trainable = False
    reads_features = True
    target_preemphasis = 0.0     # de-emphasis happens inside

    def __init__(self, cond_dim: int, features: dict, hop_length: int = 80, order: int = 16,
                 preemphasis: float = 0.85, mixed: bool = True):
        super().__init__()
        self.cond_dim, self.hop_length = cond_dim, int(hop_length)
        self.lp = LinearPrediction(cond_dim, features, order=order, preemphasis=preemphasis)
        self.preemphasis = float(preemphasis)
        self.mixed = bool(mixed)
        self.bap = None
        if mixed:
            try:
                self.bap = [int(v) for v in features["bap"]]
            except (KeyError, TypeError, ValueError):
                raise ValueError("mixed excitation needs the bap stream in the conditioning "
                                 f"(features['bap'] = [start, count]), got {features!r}") from None

    def set_conditioning(self, mean, std) -> None:
        """The statistics the conditioning is normalised with (to de-normalise it)."""
        self.lp.set_conditioning(mean, std)

    def aperiodicity(self, cond: Tensor) -> Tensor:
        """Noise power fraction of every voiced frame ``(B, T)`` in [0, 1]: the mean band
        aperiodicity (dB amplitude, squared)."""
        start, count = self.bap
        bap_db = self.lp.natural(cond)[..., start:start + count].mean(-1)
        return (10.0 ** (bap_db / 10.0)).clamp(0.0, 1.0)

    @torch.no_grad()
    def generate(self, cond: Tensor, lengths: Tensor | list | None = None, temperature: float | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Synthesise ``(B, T * hop)`` waveforms in [-1, 1] from normalised ``cond (B, T, C)``
        (``temperature`` is accepted for the protocol and ignored)."""
        B, T, _ = cond.shape
        hop = self.hop_length
        cond = cond.float()
        a, gain = self.lp.frame_lpc(cond, return_gain=True)                    # (B, T, p), (B, T)
        voiced = self.lp.frame_voicing(cond)
        f = sample_frames(T, hop, cond.device)
        voiced_s = voiced[:, f]
        _, pulses = pitch_source(self.lp.frame_lag(cond), voiced, hop, torch.ones_like(gain))  # unit power
        noise = torch.randn(B, T * hop, generator=generator, dtype=torch.float64).to(cond.device)
        if self.mixed:
            ap = self.aperiodicity(cond)[:, f]
            voiced_exc = (1.0 - ap).sqrt() * pulses + ap.sqrt() * noise
        else:
            voiced_exc = pulses
        exc = torch.where(voiced_s, voiced_exc, noise) * gain.double()[:, f].sqrt()
        ones = torch.ones(B, T * hop, 1, dtype=torch.float64, device=cond.device)
        den = torch.cat([ones, a.double()[:, f]], -1)
        s = lfilter(exc[:, None], den[:, None], ones[:, None], time_varying=True, check_stability=False)[:, 0]
        wav = deemphasis(s, self.lp.preemphasis) if self.lp.preemphasis else s
        wav = wav.float().clamp(-1.0, 1.0)
        if lengths is not None:
            for i, n in enumerate(torch.as_tensor(lengths).tolist()):
                wav[i, int(n) * hop:] = 0.0
        return wav
