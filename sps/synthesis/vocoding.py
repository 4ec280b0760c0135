"""Static acoustic features -> waveforms with any vocoder: one path for ``sps vocode``,
``sps synth --text``, ``sps speak`` and :class:`sps.synthesis.Voice`.

:class:`VocoderRunner` holds a vocoder with what it needs: WORLD (no model), or a
vocoder of the registry (:mod:`sps.vocoders`: built from its ``model`` options, its
weights loaded) with the conditioning statistics, the sampling temperature and the
extra ``generate`` options of its config. Every utterance draws from its own
generator seeded with ``seed`` (the uniforms are drawn up front and passed to
``generate`` when the vocoder takes them (``takes_uniforms``), else the utterance runs
alone), so a
waveform does not depend on the utterances batched with it: a packed voice and the
experiment it came from give the same draws.
"""
from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import torch

from sps.dsp import deemphasis
from sps.vocoders import build_vocoder, legacy_options, world
from sps.vocoders.conditioning import Conditioning

logger = logging.getLogger(__name__)

#: the vocoder that needs no model
WORLD = "world"


class VocoderRunner:
    """A vocoder ready to turn static features into waveforms.

    Parameters
    ----------
    name : str
        What users call it (``world``, ``wavenet``, ``source_filter`` ...).
    spec : dict
        Stream spec of ``out_acoustic`` (WORLD analysis settings, sample rate, layout).
    model : Vocoder, optional
        A vocoder of the registry (:class:`sps.vocoders.protocol.Vocoder`; None: WORLD).
        What it generates is de-emphasised by its ``target_preemphasis``.
    conditioning : Conditioning, optional
        Normalisation of its conditioning (needed with ``model``).
    temperature : float, optional
        ``temperature`` passed to ``generate`` (None: the model's default).
    generate : dict, optional
        Further keyword arguments of the model's ``generate`` (the config's ``vocode.generate``).
    vuv_threshold : float
        WORLD's voicing threshold on the vuv stream.
    """

    def __init__(self, name: str, spec: dict, *, model=None, conditioning: Conditioning | None = None,
                 temperature: float | None = None, generate: dict | None = None, vuv_threshold: float = 0.5):
        if model is not None and conditioning is None:
            raise ValueError(f"vocoder {name}: a model needs its conditioning statistics")
        self.name, self.spec, self.model, self.cond = name, spec, model, conditioning
        self.temperature = temperature
        self.generate_options = dict(generate or {})
        self.generate_options.pop("progress", None)
        self.preemphasis = float(model.target_preemphasis) if model is not None else 0.0
        self.vuv_threshold = float(vuv_threshold)
        self.sample_rate = int(spec["sample_rate"])
        self.hop_length = int(round(self.sample_rate * float(spec["frame_shift_ms"]) / 1000.0))
        self._takes_uniforms = model is not None and model.takes_uniforms

    @classmethod
    def build(cls, name: str, spec: dict, entry: dict, conditioning: Conditioning) -> "VocoderRunner":
        """A registry vocoder from a packed entry: ``vocoder`` (registry name), ``model``
        (options), ``state_dict``, and optionally ``temperature`` and ``generate`` (a
        top-level ``preemphasis`` of older files moves into the options)."""
        vocoder = entry["vocoder"]
        if int(entry.get("cond_dim", conditioning.dim)) != conditioning.dim:
            raise ValueError(f"vocoder {name}: made for {entry['cond_dim']} conditioning features, the voice "
                             f"has {conditioning.dim}")
        model = build_vocoder(vocoder, legacy_options(entry), conditioning.dim)
        try:
            model.load_state_dict(entry.get("state_dict") or {})
        except RuntimeError as err:   # missing, unexpected or mis-shaped tensors
            raise ValueError(f"vocoder {name} ({vocoder}): the weights do not fit the model "
                             f"({' '.join(str(err).split())[:300]})") from None
        return cls(name, spec, model=model.eval(), conditioning=conditioning, temperature=entry.get("temperature"),
                   generate=entry.get("generate"), vuv_threshold=entry.get("vuv_threshold", 0.5))

    @property
    def trainable(self) -> bool:
        """Whether this vocoder has trained weights (a neural vocoder)."""
        return self.model is not None and self.model.trainable

    # ------------------------------------------------------------------ generation
    def _finish(self, wav: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(wav, dtype=np.float64), -1.0, 1.0)

    def _generate(self, conds: list[np.ndarray], seed: int) -> list[np.ndarray]:
        """One ``generate`` call for utterances of normalised conditioning ``(T_b, C)``."""
        hop = self.hop_length
        lengths = torch.tensor([len(c) for c in conds])
        T = int(lengths.max())
        batch = torch.zeros(len(conds), T, self.cond.dim)
        for b, c in enumerate(conds):
            batch[b, :len(c)] = torch.from_numpy(c)
            batch[b, len(c):] = torch.from_numpy(c[-1:])   # padding repeats the last frame
        kwargs = dict(self.generate_options)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self._takes_uniforms:
            u = torch.zeros(len(conds), T * hop)
            for b, c in enumerate(conds):
                u[b, :len(c) * hop] = torch.rand(len(c) * hop, generator=torch.Generator().manual_seed(seed))
            kwargs["uniforms"] = u
        else:
            if len(conds) != 1:
                raise ValueError("a vocoder without 'uniforms' generates one utterance per call")
            kwargs["generator"] = torch.Generator().manual_seed(seed)
        device = next(iter(self.model.parameters()), torch.empty(0)).device
        with torch.no_grad():
            wav = self.model.generate(batch.to(device), lengths=lengths.to(device), **kwargs)
        wav = wav.float().cpu()
        if self.preemphasis:
            wav = deemphasis(wav.double(), self.preemphasis)
        wav = wav.double().numpy()
        return [wav[b, :len(c) * hop] for b, c in enumerate(conds)]

    def waveforms(self, statics: list[np.ndarray], seed: int = 0, batch_size: int = 8) -> list[np.ndarray]:
        """Waveforms (float64 in [-1, 1]) of static features ``[mgc | lf0 | vuv | bap]``.

        Parameters
        ----------
        statics : list of ndarray [shape=(T_b, S)]
            Natural units (or the full ``out_acoustic`` layout: its static columns are used).
        seed : int
            Seed of every utterance's draws.
        batch_size : int
            Utterances per ``generate`` call (neural vocoders; sorted by length). The
            waveforms do not depend on it.

        Returns
        -------
        list of ndarray [shape=(T_b * hop,)]
        """
        if self.model is None:
            return [self._finish(world.synthesize(s, self.spec, vuv_threshold=self.vuv_threshold)) for s in statics]
        conds = [self.cond(np.asarray(s), f"utterance {i}") for i, s in enumerate(statics)]
        for i, c in enumerate(conds):
            if len(c) == 0:
                raise ValueError(f"utterance {i}: no frames to vocode")
        order = sorted(range(len(conds)), key=lambda i: len(conds[i]))
        bs = max(1, int(batch_size)) if self._takes_uniforms else 1
        out: list[np.ndarray | None] = [None] * len(conds)
        for start in range(0, len(order), bs):
            group = order[start:start + bs]
            for i, wav in zip(group, self._generate([conds[i] for i in group], seed)):
                out[i] = self._finish(wav)
        return out

    def stream(self, static: np.ndarray, seed: int = 0, chunk_samples: int = 4000) -> Iterator[np.ndarray]:
        """The waveform of one utterance in pieces whose concatenation is
        ``waveforms([static], seed)[0]``: chunk by chunk when the vocoder can generate so
        (its ``generate_stream``; one piece for WORLD, for vocoders that draw from a
        generator rather than pre-drawn uniforms, and where the caller de-emphasises)."""
        if self.model is None or not self._takes_uniforms or self.preemphasis:
            yield self.waveforms([static], seed)[0]
            return
        cond = torch.from_numpy(self.cond(np.asarray(static)))[None]
        kwargs = dict(self.generate_options)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        u = torch.rand(1, len(static) * self.hop_length, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            for piece in self.model.generate_stream(cond, uniforms=u, chunk_samples=chunk_samples, **kwargs):
                yield self._finish(piece[0].double().cpu().numpy())


__all__ = ["VocoderRunner", "WORLD"]
