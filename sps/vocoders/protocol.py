"""The vocoder protocol: what the stages, :class:`~sps.synthesis.vocoding.VocoderRunner`
and :class:`~sps.synthesis.Voice` may use of a vocoder, declared once.

Every class of the registry (:data:`sps.vocoders.VOCODERS`) derives from
:class:`Vocoder`. A capability is a class or instance attribute with a default here, so
callers read it directly instead of probing signatures or attributes:

=====================  =========================================================
``trainable``          has weights to train (False: a classical vocoder, built
                       from its config by ``sps vocode``)
``reads_features``     the constructor takes ``features``: the layout of the
                       conditioning (``Conditioning.layout()``), e.g. to find the
                       mel-cepstrum for linear prediction
``takes_uniforms``     ``generate`` accepts pre-drawn ``uniforms`` [shape=(B, N)]:
                       utterances batched together draw exactly what they draw alone
``context_frames``     frames each training segment is extended by on the left
                       (state and history warm-up; not in the loss)
``preemphasis``        coefficient of the pre-emphasis of the audio the network
                       models (the one config place: ``model.preemphasis``)
``target_preemphasis`` the part of it the pipeline applies: training targets
                       pre-emphasised by the dataset, generated audio de-emphasised
                       by the caller (0 for vocoders that do both inside)
=====================  =========================================================

and the methods below (``set_conditioning``, ``observe_corpus``, ``prunable`` and
``generate_stream`` have working defaults).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import ClassVar, Iterator

import torch
from torch import Tensor, nn


class Vocoder(nn.Module):
    """Base of every vocoder: conditioning frames ``(B, T, C)`` -> waveform ``(B, T * hop)``.

    Subclasses set ``hop_length`` (samples per frame) and implement :meth:`generate`
    (and :meth:`loss` when ``trainable``).
    """

    trainable: ClassVar[bool] = True
    reads_features: ClassVar[bool] = False
    takes_uniforms: ClassVar[bool] = False
    hop_length: int
    cond_dim: int
    context_frames: int = 0
    preemphasis: float = 0.0

    @property
    def target_preemphasis(self) -> float:
        """Pre-emphasis the pipeline applies around the model (default: all of it)."""
        return float(self.preemphasis)

    def check_cond(self, cond: Tensor) -> Tensor:
        """``cond`` itself when it has shape ``(B, T, cond_dim)``, else a ValueError that says so."""
        if cond.dim() != 3 or cond.shape[-1] != self.cond_dim:
            raise ValueError(f"cond must have shape (B, T, {self.cond_dim}), got {tuple(cond.shape)}")
        return cond

    def set_conditioning(self, mean: Tensor, std: Tensor) -> None:
        """Receive the normalisation statistics of the conditioning (natural units =
        ``x * std + mean``); vocoders that read features in natural units keep them.
        Default: nothing to keep."""

    def observe_corpus(self, utterances) -> None:
        """Statistics of the natural training data the vocoder keeps for generation (the LPC
        vocoders' excitation colour): ``utterances`` yields ``(wav [shape=(N,)], cond
        [shape=(T, C)])`` NumPy pairs, normalised conditioning. Default: nothing to keep
        (the iterable is not read)."""

    def prunable(self) -> dict[str, nn.Parameter]:
        """Matrices that gradual pruning may sparsify (:mod:`sps.vocoders.pruning`);
        default none."""
        return {}

    def loss(self, wav: Tensor, cond: Tensor) -> Tensor:
        """Teacher-forced training loss.

        Parameters
        ----------
        wav : Tensor [shape=(B, N)], in [-1, 1] (pre-emphasised by ``target_preemphasis``)
        cond : Tensor [shape=(B, T, C)], ``N == T * hop_length``

        Returns
        -------
        Tensor [shape=()]
        """
        raise NotImplementedError(f"{type(self).__name__} has nothing to train")

    def generate(self, cond: Tensor, lengths: Tensor | None = None, temperature: float | None = None, *,
                 generator: torch.Generator | None = None, backend: str = "auto",
                 progress: bool | None = None, **options) -> Tensor:
        """Waveform of normalised conditioning ``cond`` [shape=(B, T, C)].

        ``lengths`` [shape=(B,)] frames per utterance (samples past ``lengths[b] * hop``
        are zero); ``temperature`` None is the model's default; draws come from
        ``generator`` (or ``uniforms`` where ``takes_uniforms``); ``progress`` a tqdm bar
        (None: only on a terminal). Returns Tensor [shape=(B, T * hop_length)] in [-1, 1]
        (still pre-emphasised by ``target_preemphasis``).
        """
        raise NotImplementedError

    def generate_stream(self, cond: Tensor, *, chunk_samples: int = 4000, **options) -> Iterator[Tensor]:
        """The waveform of :meth:`generate` in consecutive pieces [shape=(B, n)] whose
        concatenation equals it; default: one piece."""
        yield self.generate(cond, **options)


@contextmanager
def evaluating(module: nn.Module):
    """Evaluation mode for a block; the module's previous mode is restored after it."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def frame_lengths(lengths, cond: Tensor) -> list[int]:
    """Valid frames of each utterance of ``cond`` [shape=(B, T, C)]: ``lengths`` (a sequence
    or Tensor [shape=(B,)]) checked to lie in ``1 .. T``, or all ``T`` when None."""
    B, T = cond.shape[:2]
    out = [T] * B if lengths is None else [int(n) for n in torch.as_tensor(lengths).reshape(-1).tolist()]
    if len(out) != B or min(out) < 1 or max(out) > T:
        raise ValueError(f"lengths {out} do not fit cond of shape {tuple(cond.shape)}")
    return out


def bf16_precision(precision: str) -> bool:
    """Whether generation ``precision`` (``"float32"`` or ``"bfloat16"``) rounds the
    networks' matrices to bfloat16; any other value is a ValueError."""
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    return precision == "bfloat16"


__all__ = ["Vocoder", "bf16_precision", "evaluating", "frame_lengths"]
