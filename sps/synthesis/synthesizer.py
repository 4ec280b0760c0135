"""From linguistic features to speech parameters and waveforms with trained models.

:class:`Synthesizer` holds a trained duration model and acoustic model (with their
normalisation statistics), the question set and the stream spec, and runs

labels -> phone-level linguistic features -> duration model -> frames per phone
(or state) -> frame-level linguistic features -> acoustic model -> de-normalise ->
MLPG with the training-data variances -> [postfilter] -> V/UV and F0 -> WORLD.

It knows nothing of experiment directories: the ``synth`` stage builds it from one
(:func:`sps.stages.synth.make_synthesizer`).

Synthesis is bounded, whatever the models predict:

* predicted durations are clamped per phone (or state) to ``[1, max_duration]``
  frames (divided by the speaking rate ``speed``), by default :data:`DURATION_MARGIN`
  times the longest one of the duration model's training data (its ``out_duration``
  statistics); a warning counts the clamps; non-finite predictions are an error;
* an utterance longer than ``max_frames`` frames (default :data:`MAX_FRAMES`, 5 min at
  5 ms) is a ``ValueError`` before any frame-level array is allocated.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from sps.features import mgc_to_log_power
from sps.frontend import Labels, QuestionSet, linguistic_features, text_to_labels
from sps.mlpg import generate_streams
from sps.models import TrainedModel
from sps.spec import split_streams
from sps.vocoders import world

logger = logging.getLogger(__name__)

#: default of per-call options: the synthesizer's own setting
SAME = object()
#: default upper bound of a predicted duration: this many times the longest one in training
DURATION_MARGIN = 2.0
#: upper bound when the duration statistics lack a maximum (frames per phone or state)
FALLBACK_MAX_DURATION = 400
#: default per-utterance frame budget (60 000 frames: 5 min at 5 ms)
MAX_FRAMES = 60_000


def postfilter(mgc: np.ndarray, alpha: float, beta: float = 1.4, fft_size: int = 1024) -> np.ndarray:
    """Mel-cepstral formant enhancement keeping each frame's energy (Merlin's post-filter).

    The coefficients ``c2 .. cM`` are multiplied by ``beta``; then ``c0`` is raised by
    ``0.5 ln(r0 / r0')``, where ``r0`` and ``r0'`` are the energies (zero-lag
    autocorrelation, the mean of the power spectrum over the FFT circle) of the
    original and weighted envelopes, so the frame energy is unchanged.

    Parameters
    ----------
    mgc : ndarray [shape=(T, M+1)]
        Mel-cepstra.
    alpha : float
        All-pass constant.
    beta : float
        Enhancement factor (1 = no change).
    fft_size : int
        FFT length for the energies.

    Returns
    -------
    ndarray [shape=(T, M+1)]
    """
    mgc = np.asarray(mgc, dtype=np.float64)
    if mgc.ndim != 2 or mgc.shape[1] < 3:
        raise ValueError(f"postfilter: expected mel-cepstra (T, M+1) with M >= 2, got {mgc.shape}")
    weighted = mgc.copy()
    weighted[:, 2:] *= beta

    def log_energy(c):
        lp = mgc_to_log_power(c, alpha, fft_size)
        top = lp.max(1, keepdims=True)  # ln of the two-sided mean, computed stably
        p = np.exp(lp - top)
        return top[:, 0] + np.log((p[:, 0] + p[:, -1] + 2 * p[:, 1:-1].sum(1)) / fft_size)

    weighted[:, 0] += 0.5 * (log_energy(mgc) - log_energy(weighted))
    return weighted


def round_durations(d: np.ndarray) -> np.ndarray:
    """Predicted frames -> integers, at least 1 per phone (or state)."""
    return np.maximum(np.rint(np.asarray(d, dtype=np.float64)), 1).astype(np.int64)


def duration_limit(model: TrainedModel | None, margin: float = DURATION_MARGIN) -> np.ndarray:
    """Upper bound of each predicted duration column [shape=(S,)] in frames: ``margin`` times
    the longest duration of the model's training data (:data:`FALLBACK_MAX_DURATION` where
    the statistics lack it), at least 1."""
    out_max = None if model is None else model.norm.out_max
    if out_max is None:
        dim = 1 if model is None else model.norm.out_dim
        return np.full(dim, float(FALLBACK_MAX_DURATION))
    return np.maximum(np.ceil(margin * np.asarray(out_max, dtype=np.float64)), 1.0)


def bound_durations(d: np.ndarray, high, what: str = "duration model") -> np.ndarray:
    """Predicted frames [shape=(N, S)] -> integers in ``[1, high]`` per column (int64).

    Values outside the range are clamped and counted in one warning; a non-finite
    prediction is a ``ValueError`` naming the phone.
    """
    d = np.asarray(d, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        phone = int(np.argwhere(~np.isfinite(d))[0][0])
        raise ValueError(f"{what}: non-finite predicted duration for phone {phone} of {len(d)}")
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), d.shape[-1:])
    r = np.rint(d)
    clamped = (r < 1) | (r > high)
    if clamped.any():
        logger.warning("%s: %d of %d predicted durations clamped to [1, %s] frames (predicted %.4g .. %.4g)",
                       what, int(clamped.sum()), d.size, "/".join(f"{h:g}" for h in np.unique(high)),
                       float(d.min()), float(d.max()))
    return np.clip(r, 1, high).astype(np.int64)


def check_frames(frames: int, max_frames: int, frame_shift_ms: float = 5.0) -> None:
    """``ValueError`` when an utterance of ``frames`` frames exceeds the budget ``max_frames``."""
    if frames > max_frames:
        raise ValueError(f"utterance of {frames} frames ({frames * frame_shift_ms / 1000.0:.0f} s) exceeds the "
                         f"per-utterance budget max_frames={max_frames} ({max_frames * frame_shift_ms / 1000.0:.0f} "
                         "s): split the text, or raise max_frames")


class Synthesizer:
    """Trained models, ready to generate.

    Parameters
    ----------
    acoustic : TrainedModel
        Frame-level linguistic features -> ``out_acoustic`` (with dynamic features).
    spec : dict
        Stream spec of ``out_acoustic`` (windows, streams, WORLD analysis settings).
    duration : TrainedModel, optional
        Phone-level linguistic features -> frames per phone (or state); needed for
        text or untimed labels.
    questions : QuestionSet, optional
        The question set of the training data (needed for labels and text).
    subphone_features : str
        Positional features of the training data's frame-level inputs.
    postfilter_beta : float, optional
        Mel-cepstral formant enhancement factor (None: no post-filter).
    vuv_threshold : float
        Voicing decision threshold on the generated vuv stream.
    max_duration : float or ndarray [shape=(S,)], optional
        Upper bound of a predicted duration in frames (per phone, or per state column);
        None: :func:`duration_limit` of the duration model.
    max_frames : int
        Per-utterance frame budget (:data:`MAX_FRAMES`).
    """

    def __init__(self, acoustic: TrainedModel, spec: dict, *, duration: TrainedModel | None = None,
                 questions: QuestionSet | None = None, subphone_features: str = "auto",
                 postfilter_beta: float | None = None, vuv_threshold: float = 0.5,
                 max_duration=None, max_frames: int = MAX_FRAMES):
        self.acoustic, self.duration, self.spec = acoustic, duration, spec
        self.questions, self.subphone_features = questions, subphone_features
        self.postfilter_beta, self.vuv_threshold = postfilter_beta, float(vuv_threshold)
        self.max_duration = duration_limit(duration) if max_duration is None else \
            np.asarray(max_duration, dtype=np.float64)
        if not np.all(self.max_duration >= 1):
            raise ValueError(f"max_duration must be >= 1 frame, got {max_duration}")
        if int(max_frames) < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.max_frames = int(max_frames)

    def _need_questions(self) -> QuestionSet:
        if self.questions is None:
            raise ValueError("this Synthesizer has no question set (needed for labels and text)")
        return self.questions

    def predict_durations(self, phone_features: np.ndarray, speed: float = 1.0) -> np.ndarray:
        """Phone-level linguistic features [shape=(N, Q)] -> frames [shape=(N, S)] int64, >= 1.

        ``speed`` > 1 speaks faster: the predicted frames are divided by it before rounding.
        The result lies in ``[1, max_duration / speed]`` (clamps are counted in a warning);
        more than ``max_frames`` in all is a ``ValueError``.
        """
        if self.duration is None:
            raise ValueError("no duration model loaded (durations: oracle)")
        speed = float(speed)
        if not 0.1 <= speed <= 10.0:
            raise ValueError(f"speed must be in [0.1, 10] (1: as trained), got {speed:g}")
        d, _ = self.duration(phone_features)
        d = bound_durations(d / speed if speed != 1.0 else d, self.max_duration / speed)
        self._check_frames(int(d.sum()))
        return d

    def _check_frames(self, frames: int) -> None:
        check_frames(frames, self.max_frames, float(self.spec.get("frame_shift_ms", 5.0)))

    def acoustic_params(self, frame_features: np.ndarray, *, pitch: float = 0.0,
                        postfilter_beta=SAME) -> np.ndarray:
        """Frame-level linguistic features [shape=(T, L)] -> static features [shape=(T, S)].

        ``S`` columns ``[mgc | lf0 | vuv | bap]`` in natural units (lf0 continuous log
        Hz, vuv the network output), generated by MLPG with the training-data
        variances (or the predicted ones), post-filtered when configured.

        Parameters
        ----------
        pitch : float
            Pitch shift in semitones (added to lf0: ``pitch ln(2) / 12``).
        postfilter_beta : float or None
            Post-filter factor for this call (None: off; default: the synthesizer's).
        """
        beta = self.postfilter_beta if postfilter_beta is SAME else postfilter_beta
        self._check_frames(len(frame_features))
        y, var = self.acoustic(frame_features)
        if var is None:
            var = self.acoustic.norm.out_std ** 2
        static = generate_streams(y, var, self.spec)
        streams = split_streams(static, self.spec)
        if beta is not None:
            a = self.spec["analysis"]
            streams["mgc"][...] = postfilter(streams["mgc"], float(a["alpha"]), float(beta), int(a["fft_size"]))
        if pitch:
            if not -24.0 <= float(pitch) <= 24.0:
                raise ValueError(f"pitch shift must be within two octaves (-24..24 semitones), got {pitch:g}")
            streams["lf0"][...] += float(pitch) * np.log(2.0) / 12.0
        return static.astype(np.float32)

    def frame_features(self, labels: Labels, durations: np.ndarray) -> np.ndarray:
        """Frame-level linguistic features of ``labels`` timed with ``durations`` [shape=(N, S)]."""
        self._check_frames(int(np.asarray(durations).sum()))
        timed = labels.with_durations(durations)
        return linguistic_features(timed, self._need_questions(), frame_level=True,
                                   subphone_features=self.subphone_features)

    def from_labels(self, labels: Labels, *, speed: float = 1.0, pitch: float = 0.0,
                    postfilter_beta=SAME) -> np.ndarray:
        """Untimed (or timed: times are ignored) labels -> static features [shape=(T, S)]
        (``speed``, ``pitch``, ``postfilter_beta``: see :meth:`predict_durations` and
        :meth:`acoustic_params`)."""
        phone = linguistic_features(labels, self._need_questions(), frame_level=False)
        d = self.predict_durations(phone, speed)
        if d.shape[1] != labels.num_states:
            if labels.num_states != 1:
                raise ValueError(f"the duration model predicts {d.shape[1]} values per phone, the labels have "
                                 f"{labels.num_states} states per phone")
            # phone-level labels (text, untimed files) and a state-level duration model: the
            # model's states become the labels' (times are predicted anyway)
            labels = dataclasses.replace(labels, times=None, num_states=int(d.shape[1]))
        return self.acoustic_params(self.frame_features(labels, d), pitch=pitch, postfilter_beta=postfilter_beta)

    def from_text(self, text: str, voice: str = "cmu_us_slt_arctic_hts", **festival) -> np.ndarray:
        """Text -> static features [shape=(T, S)] (Festival makes the labels)."""
        return self.from_labels(text_to_labels(text, voice=voice, **festival))

    def waveform(self, static: np.ndarray) -> np.ndarray:
        """Static features [shape=(T, S)] -> WORLD waveform [shape=(T * hop,)] float64."""
        return world.synthesize(static, self.spec, vuv_threshold=self.vuv_threshold)
