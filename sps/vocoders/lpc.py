"""The LPC vocoder core: everything of an LPC vocoder that is not its network.

An LPC vocoder (LPCNet, Valin & Skoglund 2019) lets DSP model the spectral envelope and
the pitch, and a network only the excitation (:mod:`sps.vocoders.excitation`). This
base class owns the part the networks share:

* the linear prediction of the features (:class:`~sps.vocoders.excitation.LinearPrediction`,
  the library's one LPC analysis), the pitch lag, pitch phase and pulse train;
* mu-law, pre-emphasis of the training waveform and de-emphasis of what it generates;
* sampling temperatures (voiced and unvoiced), ``lengths``, pre-drawn uniforms;
* the teacher-forced batch and the training loss;
* the sample loop of the PyTorch reference, backend dispatch, and streaming generation
  (:meth:`generate_stream`: pieces whose concatenation is :meth:`generate`'s waveform);
* the excitation-colour post-filter (:mod:`sps.vocoders.colour`) and the corpus colour it
  needs, measured from the training split (:meth:`observe_corpus`).

A network class derives from it, sets ``embed_inputs`` (Parameter [shape=(4, 256, G)]: one
embedding per mu-law input) and ``phase_proj`` (``nn.Linear(2, G, bias=False)`` or None), and
implements the methods under "what a network supplies" below: its teacher-forced logits,
one sample of its PyTorch reference and, optionally, its C kernel.
Its own generation options (the LPC WaveRNN's ``precision`` and ``sparse``, the LPC
WaveNet's ``threads``) are keywords of ``reference_start`` and ``native_pieces``, passed
through :meth:`generate`.
:class:`~sps.vocoders.wavenet.lpc.LPCWaveNet` and :class:`~sps.vocoders.wavernn.lpc.LPCWaveRNN`
are the two networks of the recipe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sps import native
from sps.backend import resolve_backend
from sps.dsp import lfilter, mu_law_decode, mu_law_encode, preemphasis
from sps.vocoders import colour
from sps.vocoders.excitation import (ExcitationState, LinearPrediction, generation_source, ring_length,
                                     sample_frames, training_batch)
from sps.vocoders.sampling import sample_cdf

from .protocol import Vocoder, evaluating, frame_lengths

N_CLASSES = 256


@dataclass
class Source:
    """What generation feeds a network besides its weights (one utterance batch).

    ``a`` [shape=(B, T, p)] LPC per frame; ``lag``, ``itemp`` [shape=(B, T)] pitch lag in
    samples and inverse temperature; ``u`` [shape=(B, N)] uniform draws; ``phase``
    [shape=(B, N, 2)] and ``pulses`` [shape=(B, N)] or None; ``cond`` [shape=(B, T, C)].
    """
    cond: Tensor
    a: Tensor
    lag: Tensor
    itemp: Tensor
    u: Tensor
    phase: Tensor | None
    pulses: Tensor | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.u.shape[0], self.u.shape[1]

    def kernel_frames(self, max_lag: int) -> tuple[Tensor, Tensor, Tensor, int, Tensor, Tensor]:
        """What the C kernels read per frame (``a``, ``lag``, ``itemp``: float32, contiguous), the
        length of their excitation rings and the two zeroed rings [shape=(B, length)]."""
        B, p = self.a.shape[0], self.a.shape[-1]
        HL = ring_length(p, max_lag)
        frames = (t.detach().float().contiguous() for t in (self.a, self.lag, self.itemp))
        return (*frames, HL, torch.zeros(B, HL), torch.zeros(B, HL))

    def kernel_pieces(self, chunk: int) -> Iterator[tuple[int, int, Tensor, Tensor | None, Tensor | None]]:
        """``n0, n1`` and the draws, pitch-phase inputs and pulses of samples ``n0 .. n1 - 1``
        (float32, contiguous; None for an option that is off), ``chunk`` samples a piece."""
        N = self.shape[1]
        for n0 in range(0, N, chunk):
            n1 = min(N, n0 + chunk)
            yield n0, n1, *(None if t is None else t[:, n0:n1].detach().float().contiguous()
                            for t in (self.u, self.phase, self.pulses))


class LPCVocoder(Vocoder):
    """Base of the LPC vocoders (see the module docstring for what a network supplies)."""

    reads_features = True
    takes_uniforms = True
    target_preemphasis = 0.0      # pre- and de-emphasis happen inside
    #: legacy parameter names of a network's checkpoints -> current names
    legacy_keys: ClassVar[dict[str, str]] = {}
    #: the C kernel library (``sps/native/<name>.c``) of the network, if it has one
    native_kernel: ClassVar[str | None] = None
    #: what resolve_backend calls the generation in its messages
    generation_name: ClassVar[str] = "LPC generation"

    def init_lpc(self, cond_dim: int, features: dict, *, order: int, preemphasis: float, lag_window_hz: float,
                 context_frames: int, temperature: float, voiced_temperature: float, input_noise: float,
                 pulses: bool) -> None:
        """Set the core's options (called by the network's constructor, whose keywords of the
        same names they are).

        Parameters
        ----------
        cond_dim : int
            Conditioning features per frame ``C``.
        features : dict
            Conditioning layout and analysis (:class:`~sps.vocoders.excitation.LinearPrediction`);
            the stage fills it from the stream spec.
        order, preemphasis, lag_window_hz : int, float, float
            Linear prediction settings.
        context_frames : int
            Frames at the start of every training segment that only warm up the network's
            state and the pitch history (not in the loss).
        temperature, voiced_temperature : float
            Default sampling temperatures of unvoiced and voiced frames (LPCNet lowers the
            temperature of voiced speech, which removes noise between the harmonics).
        input_noise : float
            Training only: the inputs come from a history whose excitation was moved by
            Gaussian noise of this many mu-law classes (LPCNet's noise injection; 0: off).
        pulses : bool
            A pulse train (one pulse per period, at the pitch phase's zeros, height
            ``sqrt(gain T0)``) is part of the excitation: the network models the excitation
            minus the pulses, and generation adds them back, so voiced speech stays exactly
            periodic (the classical vocoder's source, refined by the network).

        A network with the constructor option ``pitch_phase`` sets ``phase_proj``: ``sin, cos``
        of the pitch phase (:func:`~sps.vocoders.excitation.pitch_source`) are then inputs,
        locked to the pulses of the natural waveform in training and following F0 in
        generation, so the pulses fall where the F0 contour puts them.
        """
        self.lp = LinearPrediction(cond_dim, features, order=order, preemphasis=preemphasis,
                                   lag_window_hz=lag_window_hz)
        self.context_frames, self.preemphasis = int(context_frames), float(preemphasis)
        self.temperature, self.voiced_temperature = float(temperature), float(voiced_temperature)
        self.input_noise = float(input_noise)
        self.pulses = bool(pulses)
        #: ``C(z)`` of :mod:`~sps.vocoders.colour`, all zeros until :meth:`observe_corpus`
        self.register_buffer("corpus_colour", torch.zeros(colour.ORDER + 1, dtype=torch.float64))
        self._register_load_state_dict_pre_hook(self._load_older)

    def _load_older(self, state_dict, prefix, *args) -> None:
        """Checkpoints from before: legacy names renamed; no colour (they keep theirs, unmeasured)."""
        for old, new in self.legacy_keys.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        state_dict.setdefault(prefix + "corpus_colour", self.corpus_colour.clone())

    def observe_corpus(self, utterances) -> None:
        """Measure the corpus colour of the post-filter (:meth:`measure_colour`) and keep it."""
        self.corpus_colour.copy_(torch.from_numpy(self.measure_colour(utterances)))

    @torch.no_grad()
    def measure_colour(self, utterances, order: int = colour.ORDER, window_s: float = colour.WINDOW_S):
        """:func:`sps.vocoders.colour.measure` of ``(wav [shape=(N,)], cond [shape=(T, C)])``
        pairs of natural data (NumPy; normalised conditioning) with this model's LPC."""
        def frames():
            for wav, cond in utterances:
                c = torch.as_tensor(cond, dtype=torch.float32)[None]
                x = np.asarray(preemphasis(torch.as_tensor(wav, dtype=torch.float64), self.preemphasis))
                yield x, self.lp.frame_lpc(c)[0].double().numpy(), self.lp.frame_voicing(c)[0].numpy()
        return colour.measure(frames(), self.hop_length, self.lp.sample_rate, order, window_s)

    def set_conditioning(self, mean, std) -> None:
        """The statistics the conditioning is normalised with (to de-normalise mgc and lf0)."""
        self.lp.set_conditioning(mean, std)

    # ------------------------------------------------------------------ what a network supplies
    def network_logits(self, q: Tensor, phase: Tensor | None, cond: Tensor) -> Tensor:
        """Teacher-forced logits [shape=(B, N, 256)] of the input classes ``q``
        [shape=(B, N, 4)], the pitch-phase inputs [shape=(B, N, 2)] or None, and the
        normalised conditioning [shape=(B, T, C)]."""
        raise NotImplementedError

    def reference_start(self, src: Source, **options) -> Any:
        """The network's generation state before sample 0 (PyTorch reference)."""
        raise NotImplementedError

    def reference_step(self, state: Any, q: Tensor, phase: Tensor | None, n: int) -> Tensor:
        """Logits [shape=(B, 256)] of sample ``n`` from its input classes ``q`` [shape=(B, 4)]
        and pitch-phase inputs [shape=(B, 2)] or None."""
        raise NotImplementedError

    def native_pieces(self, src: Source, chunk: int | None, **options) -> Iterator[tuple[Tensor, Tensor]]:
        """The C kernel: pre-emphasised samples and classes [shape=(B, n)] piece by piece
        (pieces of at most ``chunk`` samples where the kernel can stop, None: its own)."""
        raise NotImplementedError(f"{type(self).__name__} has no C kernel")

    def native_library(self):
        """The loaded C kernel library :attr:`native_kernel` names (None: none, or no compiler)."""
        return None if self.native_kernel is None else native.library(self.native_kernel)

    # ------------------------------------------------------------------ training
    def excitation_logits(self, s: Tensor, cond: Tensor, phase: Tensor | None = None,
                          pulses: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher-forced logits [shape=(B, N, 256)] and target classes [shape=(B, N)] of the
        pre-emphasised waveform ``s`` [shape=(B, N)]; ``phase`` [shape=(B, N, 2)] and
        ``pulses`` [shape=(B, N)]: the pitch-phase inputs and pulse train (default: locked
        to the pulses of ``s``)."""
        inputs, target, ph = training_batch(
            self.lp, s, cond, self.hop_length, noise=self.input_noise if self.training else 0.0,
            phase=(phase if phase is not None else True) if self.phase_proj is not None else False,
            pulses=(pulses if pulses is not None else True) if self.pulses else False)
        return self.network_logits(mu_law_encode(inputs, N_CLASSES), ph, cond), target

    def logits(self, wav: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`excitation_logits` of a waveform [shape=(B, N)] in [-1, 1] (not
        pre-emphasised), ``N = T * hop_length``."""
        if wav.shape[1] != cond.shape[1] * self.hop_length:
            raise ValueError(f"wav {tuple(wav.shape)} and cond {tuple(cond.shape)} do not match: "
                             f"need N == T * hop_length ({self.hop_length})")
        s = preemphasis(wav.double(), self.lp.preemphasis) if self.lp.preemphasis else wav.double()
        return self.excitation_logits(s, cond)

    def loss(self, wav: Tensor, cond: Tensor) -> Tensor:
        """Cross-entropy of the excitation classes (nats per sample), the first
        ``context_frames`` frames left out.

        wav : Tensor [shape=(B, N)] in [-1, 1] (not pre-emphasised); cond [shape=(B, T, C)].
        """
        logits, target = self.logits(wav, cond)
        skip = min(self.context_frames * self.hop_length, target.shape[1] - 1)
        return F.cross_entropy(logits[:, skip:].reshape(-1, N_CLASSES), target[:, skip:].reshape(-1))

    # ------------------------------------------------------------------ generation
    def source(self, cond: Tensor, temperature: float | None, voiced_temperature: float | None,
               uniforms: Tensor | None, generator: torch.Generator | None) -> Source:
        """Everything generation feeds the network besides its weights."""
        B, T, _ = cond.shape
        t_unv = self.temperature if temperature is None else float(temperature)
        t_voi = self.voiced_temperature if voiced_temperature is None else float(voiced_temperature)
        if t_unv <= 0 or t_voi <= 0:
            raise ValueError(f"temperatures must be positive, got {t_unv}, {t_voi}")
        cond = cond.float()
        temp = torch.where(self.lp.frame_voicing(cond), t_voi, t_unv).float()
        u = torch.rand(B, T * self.hop_length, generator=generator) if uniforms is None else uniforms
        ph, pd = generation_source(self.lp, cond, self.hop_length, self.phase_proj is not None, self.pulses)
        return Source(cond=cond, a=self.lp.frame_lpc(cond), lag=self.lp.frame_lag(cond),
                      itemp=(1.0 / temp).float(), u=u.to(cond.device).float(), phase=ph, pulses=pd)

    def _reference_pieces(self, src: Source, chunk: int | None, options: dict):
        """The eager per-sample loop (the C kernels' reference), ``chunk`` samples a piece."""
        B, N = src.shape
        T = src.a.shape[1]
        state = ExcitationState(B, self.lp.order, self.lp.max_lag, src.a.device)
        net = self.reference_start(src, **options)
        f = sample_frames(T, self.hop_length, src.a.device)
        chunk = N if chunk is None else chunk
        for t0 in range(0, N, chunk):
            t1 = min(N, t0 + chunk)
            s_out = src.u.new_zeros(B, t1 - t0)
            q_out = torch.zeros(B, t1 - t0, dtype=torch.long, device=src.u.device)
            for n in range(t0, t1):
                q = mu_law_encode(state.inputs(src.a[:, f[n]], src.lag[:, f[n]]), N_CLASSES)
                logits = self.reference_step(net, q, None if src.phase is None else src.phase[:, n], n)
                cls = sample_cdf(logits * src.itemp[:, f[n], None], src.u[:, n])
                e = mu_law_decode(cls, N_CLASSES)
                s_out[:, n - t0] = state.push(e if src.pulses is None else e + src.pulses[:, n])
                q_out[:, n - t0] = cls
            yield s_out, q_out

    def _colour_filter(self, src: Source, on: bool | None) -> colour.ColourFilter | None:
        measured = bool(self.corpus_colour[0] != 0)
        if on and not measured:
            raise ValueError("colour: this model has no corpus colour (trained before it was measured); "
                             "run its train-vocoder stage again (it measures it), or set colour: false")
        if not (measured if on is None else on):
            return None
        return colour.ColourFilter(src.a.double().cpu().numpy(), self.lp.frame_voicing(src.cond).cpu().numpy(),
                                   self.corpus_colour.cpu().numpy(), self.hop_length, self.lp.sample_rate)

    def _waveform_pieces(self, cond: Tensor, lengths, temperature, voiced_temperature, generator, backend: str,
                         uniforms, chunk: int | None, colour_filter: bool | None, classes: list | None,
                         options: dict) -> Iterator[Tensor]:
        """Waveform pieces [shape=(B, n)] of at most ``chunk`` samples (None: as they come),
        colour-filtered, de-emphasised across pieces, clamped, zero past ``lengths``; the drawn
        classes appended to ``classes``."""
        B, lengths = cond.shape[0], frame_lengths(lengths, cond)
        backend = resolve_backend(backend, cond.device, what=self.generation_name,
                                  choices=("native", "torch"), native=self.native_library)
        src = self.source(cond, temperature, voiced_temperature, uniforms, generator)
        post = self._colour_filter(src, colour_filter)
        pieces = self.native_pieces(src, chunk, **options) if backend == "native" else \
            self._reference_pieces(src, chunk, options)
        if post is not None and chunk is None:      # a whole waveform: the filter in one pass (faster)
            got = list(pieces)
            pieces = [(torch.cat([s for s, _ in got], 1), torch.cat([q for _, q in got], 1))]
        coef, zi, t0 = self.lp.preemphasis, None, 0
        ends = torch.tensor(lengths, device=cond.device)[:, None] * self.hop_length
        for s, q in pieces:
            if classes is not None:
                classes.append(q)
            if post is not None:
                s = torch.from_numpy(post.push(s.double().cpu().numpy())).to(cond.device)
            step = chunk or max(1, s.shape[1])
            for i0 in range(0, s.shape[1], step):                   # a kernel's piece may be longer
                part = s[:, i0:i0 + step].double()
                if coef:
                    zi = part.new_zeros(B, 1) if zi is None else zi
                    part, zi = lfilter(part, [1.0, -coef], [1.0], zi=zi, return_final=True)
                wav = part.float().clamp(-1.0, 1.0)
                wav[torch.arange(t0, t0 + wav.shape[1], device=wav.device)[None, :] >= ends] = 0.0
                t0 += wav.shape[1]
                yield wav

    @torch.no_grad()
    def generate(self, cond: Tensor, lengths=None, temperature: float | None = None, *,
                 voiced_temperature: float | None = None, generator: torch.Generator | None = None,
                 backend: str = "auto", uniforms: Tensor | None = None, return_excitation: bool = False,
                 colour: bool | None = None, **options):
        """Sample a waveform.

        Parameters
        ----------
        cond : Tensor [shape=(B, T, C)]
            Normalised conditioning features.
        lengths : sequence of int, optional
            Valid frames per utterance; later samples are zero.
        temperature, voiced_temperature : float, optional
            Sampling temperatures of unvoiced and voiced frames (default: the model's).
        generator : torch.Generator, optional
            CPU generator of the uniform draws (one per sample, drawn up front).
        backend : {"auto", "native", "torch"}
            ``native``: the network's C kernel; ``torch``: the eager reference.
        uniforms : Tensor [shape=(B, T * hop)], optional
            The draws themselves.
        return_excitation : bool
            Also return the drawn excitation classes [shape=(B, T * hop)].
        colour : bool, optional
            The excitation-colour post-filter (:mod:`sps.vocoders.colour`); default: on when
            the model has measured its corpus colour (models trained before it: off).
        **options
            The network's own (its ``reference_start`` / ``native_pieces`` keywords, e.g.
            the LPC WaveRNN's ``precision`` and ``sparse``, the LPC WaveNet's ``threads``).

        Returns
        -------
        Tensor [shape=(B, T * hop)]
            Waveform in [-1, 1], de-emphasised.
        """
        classes = [] if return_excitation else None
        with evaluating(self):
            wav = torch.cat(list(self._waveform_pieces(cond, lengths, temperature, voiced_temperature, generator,
                                                       backend, uniforms, None, colour, classes, options)), 1)
        return (wav, torch.cat(classes, 1)) if return_excitation else wav

    @torch.no_grad()
    def generate_stream(self, cond: Tensor, *, chunk_samples: int = 4000, lengths=None,
                        temperature: float | None = None, voiced_temperature: float | None = None,
                        generator: torch.Generator | None = None, backend: str = "auto",
                        uniforms: Tensor | None = None, colour: bool | None = None,
                        **options) -> Iterator[Tensor]:
        """:meth:`generate`'s waveform in consecutive pieces [shape=(B, n)] of at most
        ``chunk_samples`` samples, each yielded as soon as it is drawn (de-emphasis carried
        across pieces). Their concatenation equals :meth:`generate`'s waveform for the same
        draws. With the colour post-filter the pieces lag the drawing by up to half its window plus
        a frame (about 12 ms)."""
        if chunk_samples < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        with evaluating(self):
            yield from self._waveform_pieces(cond, lengths, temperature, voiced_temperature, generator, backend,
                                             uniforms, chunk_samples, colour, None, options)


__all__ = ["LPCVocoder", "Source", "N_CLASSES"]
