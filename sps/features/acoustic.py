"""WORLD + SPTK acoustic analysis: F0, mel-cepstrum, band aperiodicity, V/UV.

Per 5 ms frame (frame ``t`` centred on time ``t * frame_shift``):

* ``mgc`` (``mgc_order + 1``): mel-cepstrum of the CheapTrick power spectral
  envelope, ``pysptk.sp2mc(sp, mgc_order, alpha)`` (computed for all frames at once
  by :func:`sp2mc`), ``alpha`` from the sample rate;
* ``lf0`` (1): continuous natural log F0 (log Hz), linearly interpolated over
  unvoiced frames (:func:`sps.features.f0.interp_lf0`);
* ``vuv`` (1): 1 voiced, 0 unvoiced (F0 > 0 from Harvest or DIO + StoneMask);
* ``bap`` (``pyworld.get_num_aperiodicities(sample_rate)``, 1 at 16 kHz): D4C
  aperiodicity coded into bands by ``pyworld.code_aperiodicity`` (dB).

``out_acoustic`` stacks them with dynamic features as
``[mgc Δ ΔΔ | lf0 Δ ΔΔ | vuv | bap Δ ΔΔ]``.

pyworld and pysptk are imported when first needed, so importing this module (and
the spec helpers the vocoders use) costs nothing.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import warnings
from dataclasses import dataclass

import numpy as np

from sps.config import bind
from sps.io import read_label_file, read_wav
from sps.features.deltas import delta_features
from sps.features.f0 import f0_to_lf0, interp_lf0
from sps.features.mel import mel_spectrogram
from sps.spec import DEFAULT_WINDOWS, make_spec

logger = logging.getLogger(__name__)

#: all-pass constants that approximate the mel scale (SPTK / HTS convention)
ALPHA_TABLE: dict[int, float] = {
    8000: 0.31, 10000: 0.35, 12000: 0.37, 16000: 0.42, 22050: 0.45,
    24000: 0.466, 32000: 0.50, 44100: 0.53, 48000: 0.55,
}

#: stream order of ``out_acoustic``
ACOUSTIC_STREAMS = ("mgc", "lf0", "vuv", "bap")


def pyworld():
    """Import pyworld (silencing its pkg_resources deprecation warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pyworld as module
    return module


def pysptk():
    """Import pysptk (silencing its pkg_resources deprecation warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pysptk as module
    return module


def alpha_for(sample_rate: int) -> float:
    """All-pass constant for mel-cepstral analysis at ``sample_rate`` Hz.

    Values of :data:`ALPHA_TABLE` (0.42 at 16 kHz, 0.466 at 24 kHz, 0.55 at 48 kHz);
    other rates use ``pysptk.util.mcepalpha`` (best fit to the mel scale), rounded to
    three decimals.
    """
    sample_rate = int(sample_rate)
    if sample_rate in ALPHA_TABLE:
        return ALPHA_TABLE[sample_rate]
    if sample_rate <= 0:
        raise ValueError(f"alpha_for: sample rate must be positive, got {sample_rate}")
    return round(float(pysptk().util.mcepalpha(sample_rate)), 3)


@functools.lru_cache(maxsize=16)
def freqt_matrix(in_len: int, order: int, alpha: float) -> np.ndarray:
    """Frequency warping as a matrix: ``pysptk.freqt(c, order, alpha) == c @ A``.

    ``freqt`` is linear in the cepstrum, so its matrix (rows = ``freqt`` of the unit
    vectors) turns a per-frame Python loop into one matrix product. Cached.

    Returns
    -------
    A : ndarray [shape=(in_len, order + 1)]
    """
    return np.ascontiguousarray(pysptk().freqt(np.eye(in_len), int(order), float(alpha)))


def sp2mc(sp: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """Mel-cepstrum of power spectra, same result as ``pysptk.sp2mc`` for all frames at once.

    Parameters
    ----------
    sp : ndarray [shape=(T, fft_size // 2 + 1)]
        Power spectral envelope (WORLD CheapTrick).

    Returns
    -------
    mgc : ndarray [shape=(T, order + 1)]
        SPTK convention: ``ln |H(e^jw)| = sum_m mgc[m] cos(m w~)`` on the warped axis.
    """
    c = np.fft.irfft(np.log(sp), axis=-1)
    c[..., 0] /= 2.0
    return c @ freqt_matrix(c.shape[-1], order, alpha)


def mgc_to_log_power(mgc: np.ndarray, alpha: float, fft_size: int = 1024) -> np.ndarray:
    """Natural-log power spectrum of mel-cepstra on the linear frequency axis.

    ``ln |H(w)|^2 = 2 sum_m c_m cos(m w~)`` with the all-pass warped frequency
    ``w~ = atan2((1 - alpha^2) sin w, (1 + alpha^2) cos w - 2 alpha)``, evaluated at
    the ``fft_size // 2 + 1`` FFT bins (one matrix product for all frames; no pysptk).

    Parameters
    ----------
    mgc : ndarray [shape=(T, M + 1)]
    alpha : float
    fft_size : int

    Returns
    -------
    ndarray [shape=(T, fft_size // 2 + 1)]
    """
    w = np.linspace(0.0, np.pi, fft_size // 2 + 1)
    warped = np.arctan2((1 - alpha ** 2) * np.sin(w), (1 + alpha ** 2) * np.cos(w) - 2 * alpha)
    basis = np.cos(np.arange(mgc.shape[-1])[:, None] * warped[None, :])
    return 2.0 * np.asarray(mgc, dtype=np.float64) @ basis


def mc2sp(mgc: np.ndarray, alpha: float, fft_size: int) -> np.ndarray:
    """Power spectrum from mel-cepstrum, as ``pysptk.mc2sp`` for all frames at once.

    Parameters
    ----------
    mgc : ndarray [shape=(T, M + 1)]
    alpha : float
    fft_size : int

    Returns
    -------
    sp : ndarray [shape=(T, fft_size // 2 + 1)]
    """
    check_fft_size(fft_size, np.shape(mgc)[-1] - 1)
    return np.exp(mgc_to_log_power(mgc, alpha, fft_size))


#: largest FFT size the analysis accepts (65 536 points)
MAX_FFT_SIZE = 1 << 16


def check_fft_size(fft_size: int, order: int | None = None, what: str = "fft_size") -> int:
    """``fft_size`` if it is a power of two >= 2 x (``order`` + 1) and at most
    :data:`MAX_FFT_SIZE`, else a ``ValueError`` naming it. Called before WORLD and SPTK
    get it: their C code aborts the process or allocates without bound on such values."""
    if isinstance(fft_size, bool) or not isinstance(fft_size, (int, np.integer)) or fft_size < 2 \
            or fft_size & (fft_size - 1):
        raise ValueError(f"{what} must be a power of two, got {fft_size!r}")
    if fft_size > MAX_FFT_SIZE:
        raise ValueError(f"{what} {fft_size} is larger than {MAX_FFT_SIZE}")
    if order is not None and fft_size < 2 * (int(order) + 1):
        raise ValueError(f"{what} {fft_size} is too small for order {order} (needs >= {2 * (int(order) + 1)})")
    return int(fft_size)


def cheaptrick_fft_size(sample_rate: int, f0_floor: float) -> int:
    """WORLD's CheapTrick FFT size for a rate and F0 floor, ``2^(1 + floor(log2(3 fs / f0_floor + 1)))``
    (``pyworld.get_cheaptrick_fft_size`` without importing it)."""
    return int(2 ** (1 + int(np.log2(3.0 * sample_rate / f0_floor + 1.0))))


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of the feature stage (keys of ``conf/features.yaml``).

    Attributes
    ----------
    sample_rate : int
        Expected corpus rate in Hz; other rates are an error.
    frame_shift_ms : float
        Frame shift in ms (5.0).
    f0_method : str
        ``"harvest"`` (robust, slower) or ``"dio"`` (DIO + StoneMask, fast).
    f0_floor, f0_ceil : float
        F0 search range in Hz.
    mgc_order : int
        Mel-cepstrum order; ``mgc_order + 1`` coefficients (c0 included).
    alpha : float or None
        All-pass constant; None picks :func:`alpha_for` ``(sample_rate)``.
    fft_size : int or None
        CheapTrick/D4C FFT size; None picks ``pyworld.get_cheaptrick_fft_size``
        (1024 at 16 kHz with a 71 Hz floor).
    d4c_threshold : float
        D4C voicing threshold (WORLD default 0.85).
    num_mels, mel_fft_size, mel_win_ms, mel_fmin, mel_fmax : int, int, float, float, float|None
        Log-mel spectrogram settings (bands, FFT size, Hann window length in ms, band
        edges in Hz; ``mel_fmax`` None is Nyquist).
    frame_tolerance : int
        Feature/label length differences above this many frames are logged as warnings.
    max_frame_mismatch : int
        Differences above this many frames are an error (utterance skipped).
    """
    sample_rate: int = 16000
    frame_shift_ms: float = 5.0
    f0_method: str = "harvest"
    f0_floor: float = 71.0
    f0_ceil: float = 800.0
    mgc_order: int = 59
    alpha: float | None = None
    fft_size: int | None = None
    d4c_threshold: float = 0.85
    num_mels: int = 80
    mel_fft_size: int = 1024
    mel_win_ms: float = 50.0
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    frame_tolerance: int = 5
    max_frame_mismatch: int = 50

    def __post_init__(self):
        if self.f0_method not in ("harvest", "dio"):
            raise ValueError(f"f0_method must be 'harvest' or 'dio', got {self.f0_method!r}")
        if not 0 < self.f0_floor < self.f0_ceil:
            raise ValueError(f"need 0 < f0_floor < f0_ceil, got {self.f0_floor}, {self.f0_ceil}")
        if self.f0_ceil > self.sample_rate / 2:
            raise ValueError(f"f0_ceil {self.f0_ceil} Hz above Nyquist ({self.sample_rate / 2} Hz)")
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample_rate must be in [8000, 192000] Hz, got {self.sample_rate}")
        if not 1 <= self.mgc_order <= 255:
            raise ValueError(f"mgc_order must be in [1, 255], got {self.mgc_order}")
        check_fft_size(self.resolved_fft_size(), self.mgc_order, "fft_size")
        check_fft_size(self.mel_fft_size, None, "mel_fft_size")
        if not 1 <= self.num_mels <= self.mel_fft_size // 2 + 1:
            raise ValueError(f"num_mels must be in [1, mel_fft_size // 2 + 1 = {self.mel_fft_size // 2 + 1}], "
                             f"got {self.num_mels}")
        if not 0 < self.mel_win_ms <= 1000 or not 0 <= self.mel_fmin < (self.mel_fmax or self.sample_rate / 2) \
                or (self.mel_fmax or 0) > self.sample_rate / 2:
            raise ValueError("need 0 < mel_win_ms <= 1000 and 0 <= mel_fmin < mel_fmax <= Nyquist")
        if not 0.0 < self.d4c_threshold < 1.0:
            raise ValueError(f"d4c_threshold must be in (0, 1), got {self.d4c_threshold}")
        hop = self.sample_rate * self.frame_shift_ms / 1000.0
        if hop < 1 or abs(hop - round(hop)) > 1e-6:
            raise ValueError(f"frame_shift_ms {self.frame_shift_ms} at {self.sample_rate} Hz is "
                             f"{hop} samples; it must be a whole number of samples")
        if self.alpha is not None and not -1 < self.alpha < 1:
            raise ValueError(f"alpha must be in (-1, 1), got {self.alpha}")
        if not 0 <= self.frame_tolerance <= self.max_frame_mismatch:
            raise ValueError("need 0 <= frame_tolerance <= max_frame_mismatch")

    @classmethod
    def from_dict(cls, config: dict | None) -> "FeatureConfig":
        """From a config mapping, validated (unknown keys and wrong types are errors)."""
        return bind(cls, config, "features")

    @classmethod
    def from_spec(cls, spec: dict) -> "FeatureConfig":
        """The analysis settings recorded in an ``out_acoustic`` stream spec (for re-analysis)."""
        names = {f.name for f in dataclasses.fields(cls)}
        analysis = {k: v for k, v in spec.get("analysis", {}).items() if k in names}
        return cls(**{**analysis, "sample_rate": int(spec["sample_rate"]),
                      "frame_shift_ms": float(spec["frame_shift_ms"])})

    @property
    def hop_length(self) -> int:
        """Samples per frame (80 at 16 kHz, 5 ms)."""
        return int(round(self.sample_rate * self.frame_shift_ms / 1000.0))

    @property
    def frame_shift_100ns(self) -> int:
        """Frame shift in HTK label units of 100 ns (50000 for 5 ms)."""
        return int(round(self.frame_shift_ms * 1e4))

    def resolved_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else alpha_for(self.sample_rate)

    def resolved_fft_size(self) -> int:
        if self.fft_size is not None:
            return int(self.fft_size)
        return cheaptrick_fft_size(self.sample_rate, self.f0_floor)

    def bap_dim(self) -> int:
        return int(pyworld().get_num_aperiodicities(self.sample_rate))

    def analysis(self) -> dict:
        """Settings recorded in the stream spec (alpha and FFT size resolved)."""
        return {"vocoder": "world", "f0_method": self.f0_method, "f0_floor": float(self.f0_floor),
                "f0_ceil": float(self.f0_ceil), "mgc_order": int(self.mgc_order),
                "alpha": self.resolved_alpha(), "fft_size": self.resolved_fft_size(),
                "d4c_threshold": float(self.d4c_threshold), "lf0": "natural log Hz, "
                "linearly interpolated over unvoiced frames", "bap": "pyworld.code_aperiodicity (dB)"}


def acoustic_spec(config: FeatureConfig, windows=DEFAULT_WINDOWS) -> dict:
    """Stream spec of ``out_acoustic`` for ``config`` (see :mod:`sps.spec`)."""
    W = len(windows)
    streams = [("mgc", config.mgc_order + 1, W), ("lf0", 1, W), ("vuv", 1, 1),
               ("bap", config.bap_dim(), W)]
    return make_spec("out_acoustic", streams, sample_rate=config.sample_rate,
                     frame_shift_ms=config.frame_shift_ms, windows=windows,
                     analysis=config.analysis())


def mel_spec(config: FeatureConfig) -> dict:
    """Stream spec of ``mel`` (one static stream)."""
    return make_spec("mel", [("mel", config.num_mels, 1)], sample_rate=config.sample_rate,
                     frame_shift_ms=config.frame_shift_ms, analysis={
                         "n_fft": config.mel_fft_size, "win_length": mel_win_length(config),
                         "window": "hann", "hop_length": config.hop_length,
                         "fmin": float(config.mel_fmin),
                         "fmax": float(config.mel_fmax or config.sample_rate / 2),
                         "mel_scale": "slaney", "filter_norm": "slaney (unit area)",
                         "value": "ln(max(1e-5, mel-filtered |STFT|))"})


def mel_win_length(config: FeatureConfig) -> int:
    return min(config.mel_fft_size, int(round(config.mel_win_ms * config.sample_rate / 1000.0)))


def world_analysis(x: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw WORLD parameters.

    Parameters
    ----------
    x : ndarray [shape=(N,)]
        Waveform in [-1, 1] at ``config.sample_rate``.

    Returns
    -------
    f0 : ndarray [shape=(T,)]
        Hz, 0 when unvoiced; ``T = N // hop + 1`` (up to float rounding).
    sp : ndarray [shape=(T, fft_size // 2 + 1)]
        CheapTrick power spectral envelope.
    ap : ndarray [shape=(T, fft_size // 2 + 1)]
        D4C aperiodicity in [0, 1].
    """
    pw = pyworld()
    x = np.ascontiguousarray(x, dtype=np.float64)
    fs, shift = config.sample_rate, config.frame_shift_ms
    check_fft_size(config.resolved_fft_size(), config.mgc_order)
    if config.f0_method == "harvest":
        f0, t = pw.harvest(x, fs, f0_floor=config.f0_floor, f0_ceil=config.f0_ceil, frame_period=shift)
    else:
        f0, t = pw.dio(x, fs, f0_floor=config.f0_floor, f0_ceil=config.f0_ceil, frame_period=shift)
        f0 = pw.stonemask(x, f0, t, fs)
    fft_size = config.resolved_fft_size()
    sp = pw.cheaptrick(x, f0, t, fs, fft_size=fft_size)
    ap = pw.d4c(x, f0, t, fs, threshold=config.d4c_threshold, fft_size=fft_size)
    return f0, sp, ap


def world_features(x: np.ndarray, config: FeatureConfig) -> dict[str, np.ndarray]:
    """Frame-level static acoustic streams of a waveform.

    Parameters
    ----------
    x : ndarray [shape=(N,)]
        Waveform in [-1, 1] at ``config.sample_rate``.

    Returns
    -------
    streams : dict of ndarray, float64
        ``mgc`` (T, mgc_order + 1), ``lf0`` (T, 1) continuous log Hz, ``vuv`` (T, 1),
        ``bap`` (T, bap_dim) dB, ``lf0_raw`` (T, 1) log Hz with 0 on unvoiced frames.
    """
    f0, sp, ap = world_analysis(x, config)
    mgc = sp2mc(sp, config.mgc_order, config.resolved_alpha())
    bap = pyworld().code_aperiodicity(ap, config.sample_rate)
    lf0_raw, vuv = f0_to_lf0(f0)
    fill = 0.5 * (np.log(config.f0_floor) + np.log(config.f0_ceil))
    lf0 = interp_lf0(lf0_raw, vuv, fill=fill)
    return {"mgc": mgc, "lf0": lf0[:, None], "vuv": vuv[:, None], "bap": bap,
            "lf0_raw": lf0_raw[:, None]}


def assemble_acoustic(streams: dict[str, np.ndarray], windows=DEFAULT_WINDOWS) -> np.ndarray:
    """Stack static streams with their dynamic features.

    Parameters
    ----------
    streams : dict
        ``mgc`` (T, M), ``lf0`` (T, 1), ``vuv`` (T, 1), ``bap`` (T, B).

    Returns
    -------
    y : ndarray [shape=(T, 3M + 3 + 1 + 3B)]
        ``[mgc Δ ΔΔ | lf0 Δ ΔΔ | vuv | bap Δ ΔΔ]`` (vuv without deltas).
    """
    parts = []
    for name in ACOUSTIC_STREAMS:
        x = np.asarray(streams[name], dtype=np.float64)
        parts.append(x if name == "vuv" else delta_features(x, windows))
    lengths = {p.shape[0] for p in parts}
    if len(lengths) != 1:
        raise ValueError(f"assemble_acoustic: streams have different frame counts {sorted(lengths)}")
    return np.concatenate(parts, axis=1)


def label_num_frames(lab_path, frame_shift_100ns: int = 50000) -> int:
    """Reference length of an utterance: frames covered by its aligned HTS labels.

    The end time of the last segment (100 ns units) divided by the frame shift and
    rounded (``numpy.rint``): the same number as ``sps.frontend.Labels.num_frames``, the
    rows of the frame-level linguistic features. Untimed or malformed labels raise
    ``ValueError`` naming the file and line.
    """
    lines = read_label_file(lab_path)
    if lines[-1].end is None:
        raise ValueError(f"{lab_path}: labels without times cannot give the utterance length")
    return int(np.rint(lines[-1].end / frame_shift_100ns))


def fit_length(x: np.ndarray, num_frames: int) -> np.ndarray:
    """Trim trailing frames, or pad by repeating the last frame, to ``num_frames``."""
    T = x.shape[0]
    if T >= num_frames:
        return x[:num_frames]
    return np.concatenate([x, np.repeat(x[-1:], num_frames - T, axis=0)], axis=0)


def check_length(num_frames: int, reference: int, config: FeatureConfig, what: str) -> None:
    """Warn above ``frame_tolerance`` frames of difference, raise above ``max_frame_mismatch``."""
    diff = abs(num_frames - reference)
    if diff > config.max_frame_mismatch:
        raise ValueError(f"{what}: length mismatch: {num_frames} feature frames vs {reference} "
                         f"label frames (|diff| {diff} > max_frame_mismatch {config.max_frame_mismatch})")
    if diff > config.frame_tolerance:
        logger.warning("%s: %d feature frames vs %d label frames (trimmed/padded to the label length)",
                       what, num_frames, reference)


def extract_utterance(wav_path, lab_path, config: FeatureConfig,
                      windows=DEFAULT_WINDOWS) -> dict[str, np.ndarray]:
    """All per-utterance outputs of the feature stage, aligned to the label length.

    Parameters
    ----------
    wav_path, lab_path : path-like
        Audio at ``config.sample_rate`` and its aligned HTS label file.

    Returns
    -------
    out : dict of float32 ndarray
        ``out_acoustic`` (T, D), ``lf0_raw`` (T, 1), ``mel`` (T, num_mels) and ``wav``
        (T * hop, 1), with ``T = label_num_frames(lab_path)``. Feature frames beyond T
        are dropped and missing ones repeat the last frame; the waveform is cut or
        zero-padded to ``T * hop`` samples.

    Raises
    ------
    FileNotFoundError, ValueError
        Unreadable/empty/wrong-rate/non-finite audio, malformed or untimed labels, a
        length mismatch above ``max_frame_mismatch``, non-finite features. Messages
        name the file.
    """
    x, _ = read_wav(wav_path, sample_rate=config.sample_rate)
    T = label_num_frames(lab_path, config.frame_shift_100ns)
    hop = config.hop_length
    streams = world_features(x, config)
    if not streams["vuv"].any():
        raise ValueError(f"{wav_path}: no voiced frame in the F0 range {config.f0_floor:g}-{config.f0_ceil:g} Hz "
                         "(not speech, or a wrong f0_floor/f0_ceil)")
    check_length(streams["mgc"].shape[0], T, config, f"{wav_path} vs {lab_path}")
    streams = {k: fit_length(v, T) for k, v in streams.items()}
    mel = fit_length(mel_spectrogram(x, config.sample_rate, hop, n_fft=config.mel_fft_size,
                                     win_length=mel_win_length(config), n_mels=config.num_mels,
                                     fmin=config.mel_fmin, fmax=config.mel_fmax), T)
    wav = np.zeros(T * hop)
    n = min(x.size, T * hop)
    wav[:n] = x[:n]
    out = {"out_acoustic": assemble_acoustic(streams, windows), "lf0_raw": streams["lf0_raw"],
           "mel": mel, "wav": wav[:, None]}
    for kind, value in out.items():
        if not np.all(np.isfinite(value)):
            bad = np.argwhere(~np.isfinite(value))[0]
            raise ValueError(f"{wav_path}: non-finite {kind} value at frame {bad[0]} "
                             "(silent or damaged audio?)")
    return {k: v.astype(np.float32) for k, v in out.items()}
