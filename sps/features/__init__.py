"""Acoustic features: WORLD/SPTK analysis, log-F0, V/UV, deltas, mel spectrogram, normalisation.

Importing this package needs only NumPy; pyworld and pysptk are loaded on first use
(so :mod:`sps.vocoders` can read stream specs without them). The recipe stages that
use it are ``sps.stages.features:run`` (features -> ``dump/``) and
``sps.stages.stats:run`` (normalisation statistics -> ``stats/``). See
``docs/features.md``.
"""
from sps.features.deltas import delta_features
from sps.features.f0 import f0_to_lf0, interp_lf0, lf0_to_f0
from sps.features.mel import hz_to_mel, mel_filterbank, mel_spectrogram, mel_to_hz, stft_magnitude
from sps.spec import DEFAULT_WINDOWS, make_spec, split_streams, static_columns, static_spec
from sps.features.acoustic import (ALPHA_TABLE, FeatureConfig, acoustic_spec, alpha_for,
                                   assemble_acoustic, extract_utterance, fit_length,
                                   label_num_frames, mc2sp, mel_spec, mgc_to_log_power, sp2mc, world_analysis,
                                   world_features)
from sps.features.lpc import levinson, lpc_to_log_power, mgc_to_lpc
from sps.features.norm import Normalizer, RunningStats, denormalize, minmax_scale, minmax_unscale, normalize
from sps.features.plot import plot_features

__all__ = [
    "DEFAULT_WINDOWS", "delta_features", "f0_to_lf0", "interp_lf0", "lf0_to_f0",
    "hz_to_mel", "mel_to_hz", "mel_filterbank", "mel_spectrogram", "stft_magnitude",
    "make_spec", "split_streams", "static_columns", "static_spec",
    "ALPHA_TABLE", "FeatureConfig", "acoustic_spec", "alpha_for", "assemble_acoustic",
    "extract_utterance", "fit_length", "label_num_frames", "mel_spec", "sp2mc", "mc2sp", "mgc_to_log_power", "world_analysis",
    "world_features", "Normalizer", "RunningStats", "normalize", "denormalize", "minmax_scale",
    "minmax_unscale", "plot_features", "levinson", "mgc_to_lpc", "lpc_to_log_power",
]
