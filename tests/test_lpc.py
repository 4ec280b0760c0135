"""Linear prediction from the mel-cepstral envelope, against independent references."""
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch

from sps.features import levinson, lpc_to_log_power, mgc_to_log_power, mgc_to_lpc

ROOT = Path(__file__).resolve().parents[1]


def corpus_mgc(utt="slt_0001"):
    """Mel-cepstra of a shipped utterance (WORLD + SPTK analysis, as the features stage)."""
    pytest.importorskip("pyworld")
    pytest.importorskip("pysptk")
    from sps.features import FeatureConfig, world_features
    from sps.io import read_wav
    x, sr = read_wav(ROOT / "data" / "slt_festival" / "wav" / f"{utt}.flac")
    s = world_features(x, FeatureConfig(f0_method="dio", f0_floor=80.0, f0_ceil=500.0))
    return x, s


def test_levinson_matches_toeplitz_solve():
    rng = np.random.default_rng(0)
    x = np.convolve(rng.normal(size=(5000,)), [1.0, 0.6, -0.3, 0.2], "same")
    r = np.array([x[:len(x) - k] @ x[k:] for k in range(13)]) / len(x)
    a, err = levinson(np.stack([r, 2 * r]), 12)
    ref = scipy.linalg.solve_toeplitz(r[:12], -r[1:13])
    np.testing.assert_allclose(a[0, 1:], ref, atol=1e-10)
    np.testing.assert_allclose(a[1], a[0], atol=1e-12)                 # scale invariant
    np.testing.assert_allclose(err[0], r[0] + r[1:13] @ a[0, 1:], rtol=1e-10)  # prediction error power
    assert np.all(np.abs(np.roots(a[0])) < 1)                            # minimum phase
    with pytest.raises(ValueError, match="r\\[0\\] > 0"):
        levinson(np.zeros(5), 4)
    with pytest.raises(ValueError, match="must be finite"):
        mgc_to_lpc(np.array([[0.1, np.nan, 0.0]]), 0.42, 2)


def test_lpc_envelope_follows_the_mel_cepstral_envelope():
    """Order-16 LPC of corpus frames: log-spectral distance to the mgc envelope (gain
    removed) under 5 dB on average and 10 dB everywhere; a higher order fits better."""
    _, s = corpus_mgc()
    mgc, voiced = s["mgc"], s["vuv"][:, 0] > 0.5
    lm = mgc_to_log_power(mgc, 0.42, 1024)

    def lsd(order):
        lp = lpc_to_log_power(mgc_to_lpc(mgc, 0.42, order))
        d = (lp - lp.mean(-1, keepdims=True)) - (lm - lm.mean(-1, keepdims=True))
        return np.sqrt((d ** 2).mean(-1)) * 10 / np.log(10)     # dB
    d16, d32 = lsd(16), lsd(32)
    assert d16.mean() < 5.0 and d16[voiced].mean() < 5.5 and d16.max() < 10.0, (d16.mean(), d16.max())
    assert d32.mean() < d16.mean()
    a = mgc_to_lpc(mgc, 0.42, 16, preemphasis=0.85)
    assert np.all(np.abs(np.stack([np.roots(f) for f in a[::25]])) < 1)   # stable synthesis filters


def test_inverse_filter_then_synthesis_filter_is_identity():
    """Residual by the per-frame FIR A(z), then the per-frame all-pole 1/A(z) with the
    same coefficients (sps.dsp.lfilter, time-varying): the waveform again."""
    from sps.dsp import lfilter
    x, s = corpus_mgc()
    hop = 80
    a = mgc_to_lpc(s["mgc"], 0.42, 16, preemphasis=0.85)
    T = min(len(a), len(x) // hop)
    xs = x[:T * hop]
    frame = np.minimum(np.rint(np.arange(T * hop) / hop).astype(int), T - 1)
    A = torch.from_numpy(a[frame])[None]                                   # (1, N, 17): per sample
    e = lfilter(torch.from_numpy(xs)[None], torch.ones(1, T * hop, 1, dtype=torch.float64), A,
                time_varying=True)
    # the residual is much smaller than the signal (prediction gain), and reference-checked
    ref = np.array([sum(a[frame[n], k] * (xs[n - k] if n >= k else 0.0) for k in range(17))
                    for n in range(3000, 3400)])
    np.testing.assert_allclose(e[0, 3000:3400].numpy(), ref, atol=1e-12)
    gain = 10 * np.log10((xs ** 2).sum() / (e.numpy() ** 2).sum())
    assert gain > 8.0, gain
    y = lfilter(e, A, torch.ones(1, T * hop, 1, dtype=torch.float64), time_varying=True, check_stability=False)
    np.testing.assert_allclose(y[0].numpy(), xs, atol=1e-9)
