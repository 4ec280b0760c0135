"""Tests of sps.compat.nnmnkwii: nnmnkwii's MLPG call patterns and numbers.

The reference is nnmnkwii's definition written out densely here: every window is used
at every frame, its matrix is the T x T band of its coefficients (taps beyond the ends
dropped, i.e. the trajectory is zero there), and MLPG solves (W^T P W) x = W^T P mu.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sps.compat import nnmnkwii as nnw
from sps.mlpg import mlpg as sps_mlpg

# nnmnkwii's window format: (left, right, np.array(coefficients))
WINDOWS = [(0, 0, np.array([1.0])), (1, 1, np.array([-0.5, 0.0, 0.5])), (1, 1, np.array([1.0, -2.0, 1.0]))]
MIXED = WINDOWS + [(2, 2, np.array([0.2, -0.1, 0.0, 0.3, 0.1]))]


def window_matrix(windows, T):
    """(W*T, T): window w's rows w*T .. w*T + T - 1, one per frame."""
    blocks = []
    for left, right, coef in windows:
        M = np.zeros((T, T))
        for t in range(T):
            for j, c in enumerate(coef):
                if 0 <= t + j - left < T:
                    M[t, t + j - left] = c
        blocks.append(M)
    return np.concatenate(blocks, 0)


def dense_reference(means, variances, windows):
    """means, variances (T, D*W) float64 NumPy -> (T, D) and the Jacobian-free solve."""
    T, F = means.shape
    W = len(windows)
    D = F // W
    Wm = window_matrix(windows, T)
    out = np.zeros((T, D))
    for d in range(D):
        mu = np.concatenate([means[:, w * D + d] for w in range(W)])
        p = np.concatenate([1 / variances[:, w * D + d] for w in range(W)])
        A = Wm.T @ (p[:, None] * Wm)
        out[:, d] = np.linalg.solve(A, Wm.T @ (p * mu))
    return out


@pytest.mark.parametrize("windows", [WINDOWS, MIXED], ids=["default", "mixed"])
def test_mlpg_call_patterns_match_dense_reference(windows):
    rng = np.random.default_rng(0)
    T, D = 11, 3
    F = D * len(windows)
    means = rng.normal(size=(T, F))
    variances = rng.uniform(0.3, 1.5, size=(T, F))
    ref = dense_reference(means, variances, windows)
    x = torch.tensor(means, dtype=torch.float64)
    old_style = nnw.MLPG(variances, windows)(x)                      # variances as NumPy
    assert isinstance(old_style, torch.Tensor) and old_style.shape == (T, D)
    np.testing.assert_allclose(old_style.numpy(), ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(nnw.MLPG.apply(x, torch.from_numpy(variances), windows).numpy(), ref,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(nnw.mlpg(x, variances, windows).numpy(), ref, rtol=1e-9, atol=1e-9)
    # float32 in, float32 out (nnmnkwii's dtype), within float32 accuracy
    y32 = nnw.mlpg(x.float(), variances.astype(np.float32), windows)
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32.numpy(), ref, rtol=1e-4, atol=1e-4)
    # global variances (D*W,) are spread over the frames
    glob = variances[0]
    np.testing.assert_allclose(nnw.mlpg(x, glob, windows).numpy(),
                               dense_reference(means, np.tile(glob, (T, 1)), windows), rtol=1e-9, atol=1e-9)
    # not sps's default edge rule: the numbers differ at the edges
    assert np.abs(sps_mlpg(x, torch.from_numpy(variances), windows).numpy() - ref)[0].max() > 1e-3


def test_mlpg_gradient_matches_dense_autograd():
    rng = np.random.default_rng(1)
    T, D = 9, 2
    F = D * len(MIXED)
    means = torch.tensor(rng.normal(size=(T, F)), requires_grad=True)
    variances = torch.tensor(rng.uniform(0.3, 1.5, size=(T, F)))
    g = torch.tensor(rng.normal(size=(T, D)))
    ours = torch.autograd.grad((nnw.MLPG(variances, MIXED)(means) * g).sum(), means)[0]
    Wm = torch.tensor(window_matrix(MIXED, T))
    W = len(MIXED)

    def dense(m):
        cols = []
        for d in range(D):
            mu = torch.cat([m[:, w * D + d] for w in range(W)])
            p = torch.cat([1 / variances[:, w * D + d] for w in range(W)])
            cols.append(torch.linalg.solve(Wm.T @ (p[:, None] * Wm), Wm.T @ (p * mu)))
        return torch.stack(cols, -1)
    ref = torch.autograd.grad((dense(means) * g).sum(), means)[0]
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("windows", [WINDOWS, MIXED], ids=["default", "mixed"])
def test_unit_variance_matrix_and_call_patterns(windows):
    T = 10
    W = len(windows)
    R = nnw.unit_variance_mlpg_matrix(windows, T)
    assert isinstance(R, np.ndarray) and R.dtype == np.float32 and R.shape == (T, W * T)
    Wm = window_matrix(windows, T)
    R_ref = np.linalg.solve(Wm.T @ Wm, Wm.T)           # (W^T W)^{-1} W^T
    np.testing.assert_allclose(R, R_ref, rtol=1e-5, atol=1e-6)

    rng = np.random.default_rng(2)
    D = 2
    means = rng.normal(size=(T, D * W))
    ref = dense_reference(means, np.ones_like(means), windows)
    Rt = torch.from_numpy(R).double()
    x = torch.tensor(means, requires_grad=True)
    for y in (nnw.unit_variance_mlpg(Rt, x), nnw.UnitVarianceMLPG(Rt)(x), nnw.UnitVarianceMLPG.apply(x, Rt),
              nnw.unit_variance_mlpg(R, x)):                # R as NumPy works too
        assert y.shape == (T, D)
        np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    # means already reshaped to (W*T, D), and a batch of either layout
    reshaped = nnw.reshape_means(means, D)
    assert reshaped.shape == (W * T, D)
    np.testing.assert_array_equal(reshaped[T:2 * T], means[:, D:2 * D])   # window 1 block
    np.testing.assert_allclose(nnw.unit_variance_mlpg(Rt, torch.from_numpy(reshaped)).numpy(), ref,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nnw.reshape_means(torch.from_numpy(means), D), torch.from_numpy(reshaped))
    batch = torch.stack([x.detach(), 2 * x.detach()])
    yb = nnw.unit_variance_mlpg(Rt, batch)
    assert yb.shape == (2, T, D)
    np.testing.assert_allclose(yb[1].numpy(), 2 * ref, rtol=1e-5, atol=1e-5)
    # the map is linear: its gradient is R^T applied to the upstream gradient
    g = torch.tensor(rng.normal(size=(T, D)))
    (nnw.unit_variance_mlpg(Rt, x) * g).sum().backward()
    expect = (R_ref.T @ g.numpy())                      # (W*T, D), window-major rows
    np.testing.assert_allclose(x.grad.numpy(), expect.reshape(W, T, D).transpose(1, 0, 2).reshape(T, W * D),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fit neither"):
        nnw.unit_variance_mlpg(Rt, torch.zeros(T + 1, D))


def test_unit_variance_matrix_matches_mlpg_with_unit_variances():
    T = 7
    R = torch.from_numpy(nnw.unit_variance_mlpg_matrix(WINDOWS, T))
    x = torch.randn(T, 6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(nnw.unit_variance_mlpg(R, x), nnw.mlpg(x, torch.ones(6), WINDOWS),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        nnw.unit_variance_mlpg_matrix(WINDOWS, 0)


def test_port_imports():
    # the import lines docs/mlpg.md shows for porting a training script
    from sps.compat.nnmnkwii import MLPG, UnitVarianceMLPG, mlpg, unit_variance_mlpg  # noqa: F401
    from sps.compat.nnmnkwii import unit_variance_mlpg_matrix  # noqa: F401
    from sps.compat import nnmnkwii as AF
    assert AF.mlpg is nnw.mlpg and nnw.EDGE == "none"
