import math

import numpy as np
import pytest
import scipy.stats
import torch

from sps.metrics import (MCD_CONST, bap_distortion, duration_rmse, f0_corr, f0_rmse, mcd, nanmean,
                         vuv_error)


def test_mcd_hand_computed():
    ref = np.array([[5.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    gen = np.array([[-3.0, 1.0, 0.0], [9.0, 3.0, 4.0]])  # c0 differences must not count
    # frame 0: sqrt(2 * 4) = 2 sqrt 2; frame 1: sqrt(2 * (9 + 16)) = 5 sqrt 2
    expected = 10 / math.log(10) * (2 * math.sqrt(2) + 5 * math.sqrt(2)) / 2
    assert mcd(ref, gen) == pytest.approx(expected)
    assert MCD_CONST == pytest.approx(6.1418, abs=1e-4)
    assert mcd(ref, ref) == 0.0


def test_f0_metrics_hand_computed():
    ref = np.array([100.0, 110.0, 0.0, 120.0, 130.0, 0.0])
    gen = np.array([102.0, 0.0, 0.0, 126.0, 131.0, 140.0])
    # voiced in both: frames 0, 3, 4 -> errors 2, 6, 1
    assert f0_rmse(ref, gen) == pytest.approx(math.sqrt((4 + 36 + 1) / 3))
    assert f0_corr(ref, gen) == pytest.approx(scipy.stats.pearsonr([100, 120, 130], [102, 126, 131])[0])
    assert vuv_error(ref, gen) == pytest.approx(2 / 6)  # frames 1 and 5
    assert math.isnan(f0_rmse(np.zeros(4), np.ones(4)))


def test_bap_and_duration_hand_computed():
    ref = np.array([[0.0, -10.0], [-20.0, -30.0]])
    gen = np.array([[3.0, -6.0], [-20.0, -30.0]])
    assert bap_distortion(ref, gen) == pytest.approx((5.0 + 0.0) / 2)
    d_ref = np.array([[3.0], [10.0], [4.0]])
    d_gen = np.array([[5.0], [7.0], [4.0]])
    assert duration_rmse(d_ref, d_gen) == pytest.approx(math.sqrt((4 + 9) / 3))


def _brute_mcd(r, g):
    return np.mean([MCD_CONST * math.sqrt(sum((r[t, d] - g[t, d]) ** 2 for d in range(1, r.shape[1])))
                    for t in range(len(r))])


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_batched_with_lengths_matches_single(lib):
    rng = np.random.default_rng(0)
    lengths = [7, 4, 9]
    singles = [(rng.standard_normal((n, 5)), rng.standard_normal((n, 5))) for n in lengths]
    f0s = [(np.where(rng.random(n) > 0.3, rng.uniform(80, 200, n), 0.0),
            np.where(rng.random(n) > 0.3, rng.uniform(80, 200, n), 0.0)) for n in lengths]
    B, T = 3, 9
    R, G = np.full((B, T, 5), 99.0), np.full((B, T, 5), -99.0)  # garbage padding
    FR, FG = np.full((B, T), 300.0), np.full((B, T), 50.0)
    for b, n in enumerate(lengths):
        R[b, :n], G[b, :n] = singles[b]
        FR[b, :n], FG[b, :n] = f0s[b]
    conv = (lambda a: a) if lib == "numpy" else torch.from_numpy
    out = mcd(conv(R), conv(G), lengths)
    assert isinstance(out, np.ndarray if lib == "numpy" else torch.Tensor) and out.shape == (3,)
    for b in range(B):
        r, g = singles[b]
        assert float(out[b]) == pytest.approx(_brute_mcd(r, g))
        assert float(bap_distortion(conv(R), conv(G), lengths)[b]) == pytest.approx(bap_distortion(r, g))
        assert float(duration_rmse(conv(R), conv(G), lengths)[b]) == pytest.approx(duration_rmse(r, g))
        for fn in (f0_rmse, f0_corr, vuv_error):
            assert float(fn(conv(FR), conv(FG), lengths)[b]) == pytest.approx(fn(*f0s[b]), nan_ok=True)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="shape"):
        mcd(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="lengths"):
        mcd(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), [1, 5])
    with pytest.raises(ValueError, match="expected"):
        f0_rmse(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))


def test_nanmean():
    assert nanmean([1.0, float("nan"), 3.0]) == 2.0
    assert math.isnan(nanmean([float("nan")]))


def test_dtw_path_is_the_least_cost_alignment():
    """Against a brute-force dynamic programme; a time-stretched copy aligns with cost 0."""
    from sps.metrics import dtw_path
    rng = np.random.default_rng(0)

    def brute(x, y):
        c = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
        D = np.full(c.shape, np.inf)
        for i in range(len(x)):
            for j in range(len(y)):
                prev = [D[i - 1, j] if i else np.inf, D[i, j - 1] if j else np.inf,
                        D[i - 1, j - 1] if i and j else np.inf]
                D[i, j] = c[i, j] + (0.0 if i == j == 0 else min(prev))
        return D[-1, -1]
    for N, M in [(5, 7), (12, 9), (1, 4), (25, 31)]:
        x, y = rng.normal(size=(N, 3)), rng.normal(size=(M, 3))
        ix, iy = dtw_path(x, y)
        assert ix[0] == iy[0] == 0 and ix[-1] == N - 1 and iy[-1] == M - 1
        assert np.all(np.diff(ix) >= 0) and np.all(np.diff(iy) >= 0) and np.all(np.diff(ix) + np.diff(iy) >= 1)
        assert np.sqrt(((x[ix] - y[iy]) ** 2).sum(-1)).sum() == pytest.approx(brute(x, y))
    x = rng.normal(size=(20, 4))
    ix, iy = dtw_path(x, np.repeat(x, 2, axis=0))      # every frame twice: a perfect match
    assert np.allclose(x[ix], np.repeat(x, 2, axis=0)[iy])
