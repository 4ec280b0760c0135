"""Tests for sps.mlpg against independent references (dense solves, SciPy)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.linalg
import torch

from sps.mlpg import (MLPG, default_windows, generate_streams, mge_loss, mlpg, solve_banded,
                      static_columns, unit_variance_mlpg)
from sps.mlpg import banded, native as mlpg_native
from sps.mlpg.banded import ldl_solve, ldl_solve_torch

CPU_BACKENDS = ["torch"] + (["native"] if mlpg_native.library() is not None else [])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- references
def edge_frames(windows, edge="zero_dynamic"):
    """Frames at each end of an utterance where each window has no precision, per rule
    (as docs/mlpg.md states them)."""
    own = [max(left, right) for left, right, _ in windows]
    if edge == "none":
        return [0] * len(windows)
    if edge == "zero_dynamic_shared":
        return [max(own) if e > 0 else 0 for e in own]
    return own


def dense_mlpg(means, variances, windows, lengths=None, edge="zero_dynamic"):
    """MLPG by building W and P explicitly and a dense solve, one system at a time.

    means (B, T, W*D) float64, variances broadcastable to it (or None = unit). Window
    rows of frames the edge rule leaves out are dropped; a row's taps beyond the
    utterance are dropped too (the trajectory is zero there).
    """
    B, T, F = means.shape
    W = len(windows)
    D = F // W
    var = torch.ones_like(means) if variances is None else torch.as_tensor(variances).expand_as(means)
    out = torch.zeros(B, T, D, dtype=torch.float64)
    skip = edge_frames(windows, edge)
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        for d in range(D):
            rows, prec, mu = [], [], []
            for t in range(L):
                for w, (left, right, coef) in enumerate(windows):
                    if not skip[w] <= t < L - skip[w]:
                        continue  # edge rule
                    row = torch.zeros(L, dtype=torch.float64)
                    for j, c in enumerate(coef):
                        if 0 <= t + j - left < L:
                            row[t + j - left] += c
                    rows.append(row)
                    prec.append(1 / float(var[b, t, w * D + d]))
                    mu.append(float(means[b, t, w * D + d]))
            if L == 0:
                continue
            Wm = torch.stack(rows)
            P = torch.diag(torch.tensor(prec, dtype=torch.float64))
            A = Wm.T @ P @ Wm
            out[b, :L, d] = torch.linalg.solve(A, Wm.T @ P @ torch.tensor(mu, dtype=torch.float64))
    return out


def random_windows(rng, n_dynamic):
    wins = [(0, 0, [1.0])]
    for _ in range(n_dynamic):
        left, right = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        wins.append((left, right, list(rng.normal(size=left + right + 1))))
    return wins


def random_spd_band(gen, N, T, K, dtype=torch.float64):
    """Lower band (N, K, T) of diagonally dominant SPD matrices."""
    ab = torch.randn(N, K, T, generator=gen, dtype=dtype).clamp(-1.0, 1.0)
    ab[:, 0] = ab[:, 0].abs() + 2 * K   # > the 2 (K - 1) off-diagonals of a row, in any layout
    return ab


# ---------------------------------------------------------------- windows / dense agreement
def test_default_windows():
    assert default_windows() == [(0, 0, [1.0]), (1, 1, [-0.5, 0.0, 0.5]), (1, 1, [1.0, -2.0, 1.0])]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mlpg_matches_dense_solve(backend, seed):
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    windows = random_windows(rng, n_dynamic=seed + 1)  # 2..4 windows, widths up to 5
    B, T, D = 2, 13, 3
    F = D * len(windows)
    means = torch.randn(B, T, F, generator=gen, dtype=torch.float64)
    for variances in (torch.rand(B, T, F, generator=gen, dtype=torch.float64) + 0.2,
                      torch.rand(F, generator=gen, dtype=torch.float64) + 0.2):
        got = mlpg(means, variances, windows, backend=backend)
        torch.testing.assert_close(got, dense_mlpg(means, variances, windows), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_edge_frames_not_pulled_to_zero(backend):
    # consistent statics with zero dynamics: the solution reproduces them exactly,
    # including the first and last frames (no implicit zeros beyond the ends)
    T, D = 9, 2
    statics = torch.tensor([3.0, -2.0], dtype=torch.float64).expand(T, D)
    means = torch.cat([statics, torch.zeros(T, 2 * D, dtype=torch.float64)], -1)
    variances = torch.rand(T, 3 * D, dtype=torch.float64) + 0.5
    torch.testing.assert_close(mlpg(means, variances, backend=backend), statics)
    # and with non-trivial dynamics the edge frames see only the static window
    means2 = means.clone()
    means2[:, D:] = torch.randn(T, 2 * D, dtype=torch.float64)
    ref = dense_mlpg(means2[None], variances[None], default_windows())[0]
    torch.testing.assert_close(mlpg(means2, variances, backend=backend), ref)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_lengths_equal_separate_utterances(backend):
    gen = torch.Generator().manual_seed(3)
    B, T, D = 3, 12, 2
    lengths = [12, 7, 3]
    means = torch.randn(B, T, 3 * D, generator=gen, dtype=torch.float64)
    variances = torch.rand(B, T, 3 * D, generator=gen, dtype=torch.float64) + 0.1
    for b, L in enumerate(lengths):  # padding holds garbage; zero variances are allowed there
        means[b, L:] = 1e3
        variances[b, L:] = 0.0
    out = mlpg(means, variances, lengths=lengths, backend=backend)
    for b, L in enumerate(lengths):
        alone = mlpg(means[b, :L], variances[b, :L], backend=backend)
        torch.testing.assert_close(out[b, :L], alone)
        assert torch.all(out[b, L:] == 0)
    torch.testing.assert_close(out, dense_mlpg(means, variances, default_windows(), lengths))
    # a (B, T) mask of valid frames means the same
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    torch.testing.assert_close(mlpg(means, variances, lengths=mask, backend=backend), out)
    # gradients do not leak into padded frames
    m = means.clone().requires_grad_()
    v = variances.clone().requires_grad_()
    mlpg(m, v, lengths=lengths, backend=backend).square().sum().backward()
    for b, L in enumerate(lengths):
        assert torch.all(m.grad[b, L:] == 0) and torch.all(v.grad[b, L:] == 0)
        assert torch.isfinite(v.grad).all()


def test_numpy_in_numpy_out():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(10, 6)).astype(np.float32)
    variances = (rng.random(6) + 0.5).astype(np.float32)
    out = mlpg(means, variances)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (10, 2)
    ref = mlpg(torch.from_numpy(means), torch.from_numpy(variances))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-6)
    batch = mlpg(means[None].repeat(2, 0), variances)
    np.testing.assert_allclose(batch[1], out, rtol=1e-6)
    assert isinstance(unit_variance_mlpg(means), np.ndarray)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradcheck_means_and_variances(backend):
    gen = torch.Generator().manual_seed(4)
    B, T, D = 2, 8, 2
    windows = default_windows() + [(0, 2, [0.3, -1.0, 0.7])]
    F = D * len(windows)
    means = torch.randn(B, T, F, generator=gen, dtype=torch.float64, requires_grad=True)
    per_frame = (torch.rand(B, T, F, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    global_var = (torch.rand(F, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    for var, lengths in ((per_frame, None), (global_var, None), (per_frame, [8, 5])):
        assert torch.autograd.gradcheck(
            lambda m, v: mlpg(m, v, windows, lengths, backend=backend), (means, var))
    assert torch.autograd.gradcheck(
        lambda m: unit_variance_mlpg(m, windows, [6, 8], backend=backend), (means,))


def test_gradient_matches_dense_autograd():
    # analytic backward vs autograd through an explicit dense solve
    gen = torch.Generator().manual_seed(5)
    T, D = 10, 2
    means = torch.randn(1, T, 3 * D, generator=gen, dtype=torch.float64, requires_grad=True)
    var = (torch.rand(1, T, 3 * D, generator=gen, dtype=torch.float64) + 0.3).requires_grad_()
    g = torch.randn(1, T, D, generator=gen, dtype=torch.float64)
    ours = torch.autograd.grad((mlpg(means, var) * g).sum(), (means, var))

    def dense(m, v):
        out = []
        for d in range(D):
            rows, prec, mu = [], [], []
            for t in range(T):
                for w, (left, right, coef) in enumerate(default_windows()):
                    if max(left, right) <= t < T - max(left, right):
                        row = torch.zeros(T, dtype=torch.float64)
                        row[t - left:t + right + 1] = torch.tensor(coef, dtype=torch.float64)
                        rows.append(row)
                        prec.append(1 / v[0, t, w * D + d])
                        mu.append(m[0, t, w * D + d])
            Wm, P = torch.stack(rows), torch.diag(torch.stack(prec))
            out.append(torch.linalg.solve(Wm.T @ P @ Wm, Wm.T @ P @ torch.stack(mu)))
        return torch.stack(out, -1)[None]
    ref = torch.autograd.grad((dense(means, var) * g).sum(), (means, var))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def test_no_grad_and_module():
    gen = torch.Generator().manual_seed(6)
    means = torch.randn(2, 11, 6, generator=gen, requires_grad=True)
    var = torch.rand(6, generator=gen) + 0.5
    with torch.no_grad():
        y = mlpg(means, var)
    assert y.grad_fn is None and y.shape == (2, 11, 2)
    module = MLPG()
    torch.testing.assert_close(module(means, var), mlpg(means, var))
    torch.testing.assert_close(module(means), unit_variance_mlpg(means))
    assert "windows" in repr(module)


# ---------------------------------------------------------------- unit variance
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_unit_variance_matches_general(backend):
    gen = torch.Generator().manual_seed(7)
    means = torch.randn(3, 14, 9, generator=gen, dtype=torch.float64)
    ones = torch.ones(9, dtype=torch.float64)
    for lengths in (None, [14, 9, 4]):
        got = unit_variance_mlpg(means, lengths=lengths, backend=backend)
        torch.testing.assert_close(got, mlpg(means, ones, lengths=lengths, backend=backend))
        torch.testing.assert_close(got, dense_mlpg(means, None, default_windows(), lengths))
    # the cached factor is reused: a second call with another batch gives the right answer
    means2 = torch.randn(5, 14, 9, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(unit_variance_mlpg(means2, backend=backend),
                               dense_mlpg(means2, None, default_windows()))


# ---------------------------------------------------------------- edge rules
EDGE_RULES = ["zero_dynamic", "zero_dynamic_shared", "none"]
#: the default windows plus a wider one: the rules disagree when widths are mixed
MIXED_WINDOWS = default_windows() + [(2, 2, [0.1, -0.3, 0.0, 0.45, -0.2])]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("edge", EDGE_RULES)
def test_edge_rules_match_dense_solve(backend, edge):
    gen = torch.Generator().manual_seed(20)
    B, T, D = 3, 13, 2
    lengths = [13, 9, 6]
    for windows in (default_windows(), MIXED_WINDOWS):
        F = D * len(windows)
        means = torch.randn(B, T, F, generator=gen, dtype=torch.float64)
        per_frame = torch.rand(B, T, F, generator=gen, dtype=torch.float64) + 0.2
        for variances in (per_frame, per_frame[0, 0]):
            for lens in (None, lengths):
                got = mlpg(means, variances, windows, lens, backend=backend, edge=edge)
                torch.testing.assert_close(got, dense_mlpg(means, variances, windows, lens, edge),
                                           rtol=1e-9, atol=1e-9)
        for lens in (None, lengths, None):  # the last call reuses the cached unit-variance factor
            torch.testing.assert_close(unit_variance_mlpg(means, windows, lens, backend=backend, edge=edge),
                                       dense_mlpg(means, None, windows, lens, edge), rtol=1e-9, atol=1e-9)
        module = MLPG(windows, backend=backend, edge=edge)
        torch.testing.assert_close(module(means, per_frame, lengths), mlpg(means, per_frame, windows, lengths,
                                                                           backend=backend, edge=edge))
        assert f"edge={edge!r}" in repr(module)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("edge", EDGE_RULES)
def test_edge_rules_gradients(backend, edge):
    # gradcheck covers the padded frames too: with "none" the windows of real frames
    # reach into them, and neither the outputs nor the gradients may notice
    gen = torch.Generator().manual_seed(21)
    B, T, D = 2, 8, 1
    F = D * len(MIXED_WINDOWS)
    means = torch.randn(B, T, F, generator=gen, dtype=torch.float64, requires_grad=True)
    var = (torch.rand(B, T, F, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    for lengths in (None, [8, 6]):
        assert torch.autograd.gradcheck(
            lambda m, v: mlpg(m, v, MIXED_WINDOWS, lengths, backend=backend, edge=edge), (means, var))
        assert torch.autograd.gradcheck(
            lambda m: unit_variance_mlpg(m, MIXED_WINDOWS, lengths, backend=backend, edge=edge), (means,))
    # padded frames: zero output, zero gradient, whatever the upstream gradient there
    m, v = means.detach().clone().requires_grad_(), var.detach().clone().requires_grad_()
    y = mlpg(m, v, MIXED_WINDOWS, [8, 5], backend=backend, edge=edge)
    assert torch.all(y[1, 5:] == 0)
    y.sum().backward()
    assert torch.all(m.grad[1, 5:] == 0) and torch.all(v.grad[1, 5:] == 0)
    g_alone = torch.autograd.grad(mlpg(means[1:, :5], var[1:, :5], MIXED_WINDOWS, backend=backend,
                                       edge=edge).sum(), means)[0]
    torch.testing.assert_close(m.grad[1, :5], g_alone[1, :5])


def test_edge_rules_differ_where_documented():
    gen = torch.Generator().manual_seed(22)
    T = 12
    # consistent constant statics with zero dynamics: the rules that keep windows inside
    # the utterance reproduce them; "none" pulls the edge frames toward the zeros outside
    statics = torch.full((T, 1), 3.0, dtype=torch.float64)
    means = torch.cat([statics, torch.zeros(T, 2, dtype=torch.float64)], -1)
    ones = torch.ones(3, dtype=torch.float64)
    for edge in ("zero_dynamic", "zero_dynamic_shared"):
        torch.testing.assert_close(mlpg(means, ones, edge=edge), statics)
    none = mlpg(means, ones, edge="none")
    assert abs(float(none[0, 0]) - 3.0) > 0.5 and abs(float(none[-1, 0]) - 3.0) > 0.5
    torch.testing.assert_close(none, dense_mlpg(means[None], ones, default_windows(), edge="none")[0])
    # with the default windows the shared width is the own width of every dynamic window
    m = torch.randn(2, T, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(mlpg(m, ones.repeat(2), edge="zero_dynamic_shared"), mlpg(m, ones.repeat(2)))
    # with mixed widths it is not
    m = torch.randn(T, 8, generator=gen, dtype=torch.float64)
    own = mlpg(m, torch.ones(8, dtype=torch.float64), MIXED_WINDOWS)
    shared = mlpg(m, torch.ones(8, dtype=torch.float64), MIXED_WINDOWS, edge="zero_dynamic_shared")
    assert (own - shared).abs().max() > 1e-3
    with pytest.raises(ValueError, match="edge must be one of zero_dynamic, zero_dynamic_shared, none"):
        mlpg(m, torch.ones(8), MIXED_WINDOWS, edge="zeros")
    with pytest.raises(ValueError, match="edge must be one of"):
        MLPG(edge="nnmnkwii")


@pytest.mark.parametrize("edge", EDGE_RULES)
def test_generate_streams_and_mge_follow_the_edge_rule(edge):
    gen = torch.Generator().manual_seed(23)
    B, T = 2, 10
    lengths = [10, 7]
    feats = torch.randn(B, T, 17, generator=gen, dtype=torch.float64, requires_grad=True)
    var = torch.rand(17, generator=gen, dtype=torch.float64) + 0.2
    out = generate_streams(feats, var, SPEC, lengths, edge=edge)
    wins = default_windows()
    f = feats.detach()
    ref = torch.cat([dense_mlpg(f[..., 0:9], var[0:9], wins, lengths, edge),
                     dense_mlpg(f[..., 9:12], var[9:12], wins, lengths, edge),
                     f[..., 12:13] * (torch.arange(T) < torch.tensor([[10], [7]]))[..., None],
                     dense_mlpg(f[..., 13:17], var[13:17], wins[:2], lengths, edge)], -1)
    torch.testing.assert_close(out, ref)
    target = torch.randn(B, T, 7, generator=gen, dtype=torch.float64)
    loss = mge_loss(feats, target, var, SPEC, lengths, edge=edge)
    manual = (((ref - target) ** 2)[0].sum() + ((ref - target) ** 2)[1, :7].sum()) / (17 * 7)
    torch.testing.assert_close(loss, manual)
    loss.backward()
    assert torch.isfinite(feats.grad).all() and torch.all(feats.grad[1, 7:] == 0)


# ---------------------------------------------------------------- banded solver
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("K", [1, 2, 3, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solve_banded_matches_scipy(backend, K, dtype):
    gen = torch.Generator().manual_seed(K)
    ab = random_spd_band(gen, 6, 20, K, torch.float64).reshape(2, 3, K, 20)
    b = torch.randn(2, 3, 20, generator=gen, dtype=torch.float64)
    x = solve_banded(ab.to(dtype), b.to(dtype), backend=backend)
    assert x.dtype == dtype and x.shape == b.shape
    ref = np.stack([scipy.linalg.solveh_banded(a.numpy(), r.numpy(), lower=True)
                    for a, r in zip(ab.reshape(6, K, 20), b.reshape(6, 20))]).reshape(2, 3, 20)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(x.double().numpy(), ref, rtol=tol, atol=tol)
    xn = solve_banded(ab.numpy(), b.numpy(), backend=backend)  # NumPy in, NumPy out
    assert isinstance(xn, np.ndarray)
    np.testing.assert_allclose(xn, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_solve_banded_gradcheck(backend):
    gen = torch.Generator().manual_seed(8)
    ab = random_spd_band(gen, 3, 9, 3).requires_grad_()
    b = torch.randn(3, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, r: solve_banded(a, r, backend=backend), (ab, b))


def test_solve_banded_bad_shapes():
    with pytest.raises(ValueError, match="same batch"):
        solve_banded(torch.ones(2, 3, 10), torch.ones(2, 9))


@pytest.mark.skipif(mlpg_native.library() is None, reason="no C compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_kernels_match_torch(dtype):
    gen = torch.Generator().manual_seed(9)
    for K in (1, 2, 4):
        band = random_spd_band(gen, 3 * 70, 15, K).reshape(3, 70, K, 15).permute(0, 3, 2, 1).to(dtype)
        rhs = torch.randn(3, 15, 70, generator=gen, dtype=dtype)
        f0, x0 = ldl_solve_torch(band, rhs)
        f1, x1 = ldl_solve(band, rhs, backend="native")
        torch.testing.assert_close(f1, f0)
        torch.testing.assert_close(x1, x0)
        shared = f0[:1, :, :, :1]  # one factor broadcast over all systems
        torch.testing.assert_close(ldl_solve(None, rhs, shared, backend="native")[1],
                                   ldl_solve_torch(None, rhs, shared)[1])
    # fused MLPG forward and gradients vs the PyTorch path
    means = torch.randn(2, 16, 3 * 70, generator=gen, dtype=dtype)
    var = torch.rand(2, 16, 3 * 70, generator=gen, dtype=dtype) + 0.2
    outs = []
    for backend in ("torch", "native"):
        m, v = means.clone().requires_grad_(), var.clone().requires_grad_()
        y = mlpg(m, v, lengths=[16, 11], backend=backend)
        (y * torch.linspace(-1, 1, 70, dtype=dtype)).sum().backward()
        outs.append((y, m.grad, v.grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)


def test_fallback_without_native(monkeypatch):
    monkeypatch.setattr(mlpg_native, "library", lambda: None)
    assert banded.pick_backend(torch.device("cpu"), torch.float32) == "torch"
    with pytest.raises(ValueError, match="native"):
        banded.pick_backend(torch.device("cpu"), torch.float32, "native")
    means = torch.randn(2, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(mlpg(means, torch.ones(3, dtype=torch.float64)),
                               dense_mlpg(means, None, default_windows()))


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_triton_kernel_in_interpreter():
    # TRITON_INTERPRET must be set before triton is imported: use a fresh process
    script = textwrap.dedent("""
        import os
        os.environ["TRITON_INTERPRET"] = "1"
        import torch
        from sps.mlpg import mlpg
        from sps.mlpg.banded import ldl_solve, ldl_solve_torch
        gen = torch.Generator().manual_seed(0)
        for K in (1, 3):
            for dtype in (torch.float32, torch.float64):
                band = torch.randn(2, 9, K, 37, generator=gen, dtype=dtype)
                band[:, :, 0] = band[:, :, 0].abs() + 2 * K
                rhs = torch.randn(2, 9, 37, generator=gen, dtype=dtype)
                f0, x0 = ldl_solve_torch(band, rhs)
                f1, x1 = ldl_solve(band, rhs, backend="triton")
                torch.testing.assert_close(f1, f0)
                torch.testing.assert_close(x1, x0)
                shared = f0[1:, :, :, :1]
                torch.testing.assert_close(ldl_solve(None, rhs, shared, backend="triton")[1],
                                           ldl_solve_torch(None, rhs, shared)[1])
        means = torch.randn(2, 10, 6, generator=gen, dtype=torch.float64, requires_grad=True)
        var = (torch.rand(2, 10, 6, generator=gen, dtype=torch.float64) + 0.3).requires_grad_()
        for edge in ("zero_dynamic", "zero_dynamic_shared", "none"):
            res = []
            for backend in ("torch", "triton"):
                y = mlpg(means, var, lengths=[10, 6], backend=backend, edge=edge)
                res.append((y, *torch.autograd.grad(y.square().sum(), (means, var))))
            for a, b in zip(*res):
                torch.testing.assert_close(a, b)
        print("triton-ok")
    """)
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "triton-ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_triton_kernel_compiles_for_gpu():
    # the interpreter accepts code the compiler rejects: build real sm_90 machine code
    # (no GPU needed) for both kernel variants
    script = textwrap.dedent("""
        import triton
        from triton.backends.compiler import GPUTarget
        from sps.mlpg._triton import _ldl_kernel
        names = ["band_ptr", "sb0", "sb1", "sb2", "sb3", "rhs_ptr", "sr0", "sr1", "sr2",
                 "fac_ptr", "sf0", "sf1", "sf2", "sf3", "x_ptr", "sx0", "sx1", "sx2", "T", "NI"]
        for factorize in (True, False):
            sig = {n: "*fp32" if n.endswith("ptr") else "i32" for n in names}
            sig.update(K="constexpr", FACTORIZE="constexpr", BLOCK="constexpr", CHUNK="constexpr")
            src = triton.compiler.ASTSource(fn=_ldl_kernel, signature=sig, constexprs=dict(
                K=3, FACTORIZE=factorize, BLOCK=32, CHUNK=8))
            out = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 1})
            assert out.asm["cubin"]
        print("compiled-ok")
    """)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0 and "ptxas" in proc.stderr.lower() and "not found" in proc.stderr.lower():
        pytest.skip("Triton's ptxas is not available")
    assert proc.returncode == 0 and "compiled-ok" in proc.stdout, proc.stderr[-3000:]


# ---------------------------------------------------------------- dtypes and devices
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype):
    gen = torch.Generator().manual_seed(10)
    means = torch.randn(2, 12, 6, generator=gen)
    var = torch.rand(2, 12, 6, generator=gen) + 0.5
    ref = mlpg(means.to(dtype).float(), var.to(dtype).float())
    m = means.to(dtype).requires_grad_()
    out = mlpg(m, var.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref.to(dtype).float())
    out.float().sum().backward()
    assert m.grad.dtype == dtype and torch.isfinite(m.grad.float()).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mlpg(means, var)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, mlpg(means, var))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    gen = torch.Generator().manual_seed(11)
    means = torch.randn(3, 40, 12, generator=gen, dtype=dtype)
    var = torch.rand(3, 40, 12, generator=gen, dtype=dtype) + 0.2
    cpu = [means.clone().requires_grad_(), var.clone().requires_grad_()]
    gpu = [t.detach().cuda().requires_grad_() for t in cpu]
    y_cpu = mlpg(*cpu, lengths=[40, 30, 7])
    y_gpu = mlpg(*gpu, lengths=torch.tensor([40, 30, 7]).cuda())
    assert y_gpu.is_cuda
    torch.testing.assert_close(y_gpu.cpu(), y_cpu)
    y_cpu.square().sum().backward()
    y_gpu.square().sum().backward()
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.grad.cpu(), a.grad)
    torch.testing.assert_close(unit_variance_mlpg(gpu[0]).cpu(), unit_variance_mlpg(cpu[0]))
    with torch.autocast("cuda", dtype=torch.float16):
        assert mlpg(gpu[0], gpu[1]).dtype == dtype


@pytest.mark.cuda
@pytest.mark.parametrize("edge", EDGE_RULES)
def test_cuda_edge_rules_match_cpu(edge):
    gen = torch.Generator().manual_seed(24)
    means = torch.randn(3, 30, 16, generator=gen, dtype=torch.float64)
    var = torch.rand(3, 30, 16, generator=gen, dtype=torch.float64) + 0.2
    cpu = [means.clone().requires_grad_(), var.clone().requires_grad_()]
    gpu = [t.detach().cuda().requires_grad_() for t in cpu]
    y_cpu = mlpg(*cpu, MIXED_WINDOWS, [30, 21, 6], edge=edge)
    y_gpu = mlpg(*gpu, MIXED_WINDOWS, torch.tensor([30, 21, 6]).cuda(), edge=edge)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu)
    y_cpu.square().sum().backward()
    y_gpu.square().sum().backward()
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.grad.cpu(), a.grad)
    torch.testing.assert_close(unit_variance_mlpg(gpu[0], MIXED_WINDOWS, edge=edge).cpu(),
                               unit_variance_mlpg(cpu[0], MIXED_WINDOWS, edge=edge))


# ---------------------------------------------------------------- errors
def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="multiple of the 3 windows"):
        mlpg(torch.zeros(2, 5, 7), torch.ones(7))
    with pytest.raises(ValueError, match="variances shape"):
        mlpg(torch.zeros(2, 5, 6), torch.ones(9))
    with pytest.raises(ValueError, match="lengths"):
        mlpg(torch.zeros(2, 5, 6), torch.ones(6), lengths=[5, 6])
    with pytest.raises(ValueError, match="window 1"):
        mlpg(torch.zeros(5, 6), torch.ones(6), [(0, 0, [1.0]), (1, 1, [1.0, 2.0])])
    with pytest.raises(ValueError, match="means must be"):
        mlpg(torch.zeros(5), torch.ones(6))


# ---------------------------------------------------------------- MGE
SPEC = {"windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
        "streams": [{"name": "mgc", "start": 0, "static_dim": 3, "num_windows": 3},
                    {"name": "lf0", "start": 9, "static_dim": 1, "num_windows": 3},
                    {"name": "vuv", "start": 12, "static_dim": 1, "num_windows": 1},
                    {"name": "bap", "start": 13, "static_dim": 2, "num_windows": 2}]}


def test_generate_streams_matches_per_stream_dense():
    gen = torch.Generator().manual_seed(12)
    B, T = 2, 11
    feats = torch.randn(B, T, 17, generator=gen, dtype=torch.float64)
    var = torch.rand(17, generator=gen, dtype=torch.float64) + 0.2
    out = generate_streams(feats, var, SPEC, lengths=[11, 8])
    assert out.shape == (B, T, 7)
    wins = default_windows()
    ref = torch.cat([dense_mlpg(feats[..., 0:9], var[0:9], wins, [11, 8]),
                     dense_mlpg(feats[..., 9:12], var[9:12], wins, [11, 8]),
                     feats[..., 12:13] * (torch.arange(T) < torch.tensor([[11], [8]]))[..., None],
                     dense_mlpg(feats[..., 13:17], var[13:17], wins[:2], [11, 8])], -1)
    torch.testing.assert_close(out, ref)
    assert static_columns(SPEC) == [0, 1, 2, 9, 12, 13, 14]
    np_out = generate_streams(feats.numpy(), var.numpy(), SPEC)
    assert isinstance(np_out, np.ndarray) and np_out.shape == (B, T, 7)
    unit = generate_streams(feats[0], None, SPEC)
    torch.testing.assert_close(unit[:, :3], dense_mlpg(feats[:1, :, :9], None, wins)[0])


def test_mge_loss_value_and_gradient():
    gen = torch.Generator().manual_seed(13)
    B, T = 2, 10
    mean = torch.randn(17, generator=gen, dtype=torch.float64)
    std = torch.rand(17, generator=gen, dtype=torch.float64) + 0.5
    pred = torch.randn(B, T, 17, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(B, T, 7, generator=gen, dtype=torch.float64)
    lengths = [10, 6]
    loss = mge_loss(pred, target, std ** 2, SPEC, lengths, mean=mean, std=std)
    gen_static = generate_streams(pred.detach() * std + mean, std ** 2, SPEC, lengths)
    err = ((gen_static - target) / std[static_columns(SPEC)]) ** 2
    manual = (err[0].sum() + err[1, :6].sum()) / (16 * 7)
    torch.testing.assert_close(loss, manual)
    loss.backward()
    assert torch.all(pred.grad[1, 6:] == 0) and pred.grad[0].abs().sum() > 0
    plain = mge_loss(pred, target, None, SPEC)
    torch.testing.assert_close(plain, (generate_streams(pred, None, SPEC) - target).square().mean())
    with pytest.raises(ValueError, match="target shape"):
        mge_loss(pred, target[..., :5], None, SPEC)
    with pytest.raises(ValueError, match="stream 'bap'"):
        generate_streams(pred[..., :15], None, SPEC)
