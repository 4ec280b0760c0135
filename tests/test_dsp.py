"""Tests for sps.dsp: lfilter (C / torch / Triton paths), BiquadBank, mu-law, emphasis.

References: scipy.signal.lfilter / freqz, direct Python loops, numpy.roots, closed-form
RBJ properties, and torch.autograd.gradcheck.
"""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
import torch
from torch.autograd import gradcheck

from sps.dsp import (BiquadBank, biquad_coefficients, check_stable, deemphasis, lfilter,
                     mu_law_decode, mu_law_encode, preemphasis)
from sps.dsp import _triton, native as dsp_native
from sps.dsp.lfilter import _Flat, pick_backend

HAS_C = dsp_native.library() is not None
BACKENDS = [pytest.param("native", marks=pytest.mark.skipif(not HAS_C, reason="no C compiler")), "torch"]
ROOT = Path(__file__).resolve().parents[1]


def stable_a(rng, n, order, gain=True):
    """Random stable denominators (n, order+1) built from poles inside |z| < 0.95."""
    out = []
    for _ in range(n):
        poles = []
        while len(poles) < order:
            if order - len(poles) >= 2 and rng.random() < 0.6:
                z = rng.uniform(0.3, 0.95) * np.exp(1j * rng.uniform(0.1, np.pi - 0.1))
                poles += [z, z.conjugate()]
            else:
                poles.append(rng.uniform(-0.95, 0.95))
        out.append(np.real(np.poly(poles)) * (rng.uniform(0.5, 2.0) if gain else 1.0))
    return np.array(out)


def scipy_rows(x, a, b, zi=None):
    """Loop scipy.signal.lfilter over rows of already-broadcast (R, T), (R, ·) arrays."""
    ys, zs = [], []
    for r in range(x.shape[0]):
        if zi is None:
            ys.append(ss.lfilter(b[r], a[r], x[r]))
        else:
            y, z = ss.lfilter(b[r], a[r], x[r], zi=zi[r])
            ys.append(y)
            zs.append(z)
    return np.array(ys), (np.array(zs) if zi is not None else None)


# ----------------------------------------------------------------------- lfilter
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order,nb", [(1, 2), (2, 3), (2, 1), (3, 4), (3, 6), (4, 5), (4, 2), (6, 3)])
def test_lfilter_matches_scipy_with_zi(backend, order, nb):
    rng = np.random.default_rng(order * 10 + nb)
    B, C, T = 2, 5, 40  # R = 10: exercises both the 4-row groups and the remainder rows
    a, b = stable_a(rng, C, order), rng.standard_normal((C, nb))
    K = max(order, nb - 1)
    x, zi = rng.standard_normal((B, C, T)), rng.standard_normal((B, C, K))
    y, zf = lfilter(torch.tensor(x), torch.tensor(a), torch.tensor(b), torch.tensor(zi),
                    return_final=True, backend=backend)
    rep = lambda c: np.broadcast_to(c, (B,) + c.shape).reshape(B * C, -1)  # noqa: E731
    y_ref, zf_ref = scipy_rows(x.reshape(B * C, T), rep(a), rep(b), zi.reshape(B * C, K))
    np.testing.assert_allclose(y.numpy().reshape(B * C, T), y_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(zf.numpy().reshape(B * C, K), zf_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lfilter_float32_and_short_signals(backend):
    rng = np.random.default_rng(1)
    a, b = stable_a(rng, 3, 4), rng.standard_normal((3, 5))
    for T in (1, 3, 300):  # T < K exercises the state bookkeeping
        x, zi = rng.standard_normal((3, T)), rng.standard_normal((3, 4))
        y, zf = lfilter(torch.tensor(x, dtype=torch.float32), torch.tensor(a), torch.tensor(b),
                        torch.tensor(zi, dtype=torch.float32), return_final=True, backend=backend)
        assert y.dtype == torch.float32
        y_ref, zf_ref = scipy_rows(x, a, b, zi)
        np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(zf.numpy(), zf_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lfilter_broadcasting_forms(backend):
    rng = np.random.default_rng(2)
    B, C, T = 3, 4, 30
    x = rng.standard_normal((B, C, T))
    shared_a, shared_b = stable_a(rng, 1, 2)[0], rng.standard_normal(3)
    chan_a, chan_b = stable_a(rng, C, 2), rng.standard_normal((C, 3))
    batch_a, batch_b = stable_a(rng, B * C, 3).reshape(B, C, 4), rng.standard_normal((B, C, 2))
    for xa, a, b in [(x, shared_a, shared_b), (x, chan_a, chan_b), (x, batch_a, batch_b),
                     (x, batch_a, shared_b), (x[:, :1], chan_a, chan_b), (x[0], batch_a, chan_b)]:
        y = lfilter(torch.tensor(xa), torch.tensor(a), torch.tensor(b), backend=backend).numpy()
        shape = np.broadcast_shapes(xa.shape[:-1], a.shape[:-1], b.shape[:-1])
        assert y.shape == shape + (T,)
        flat = lambda v: np.broadcast_to(v, shape + v.shape[-1:]).reshape(-1, v.shape[-1])  # noqa: E731
        y_ref, _ = scipy_rows(flat(xa), flat(a), flat(b))
        np.testing.assert_allclose(y.reshape(-1, T), y_ref, rtol=1e-10, atol=1e-10)


def test_lfilter_numpy_in_numpy_out():
    rng = np.random.default_rng(3)
    x, a, b = rng.standard_normal((2, 50)), np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.3])
    y = lfilter(x, a, b)
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, ss.lfilter(b, a, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lfilter_blockwise_equals_one_pass(backend):
    rng = np.random.default_rng(4)
    a, b = torch.tensor(stable_a(rng, 4, 2)), torch.randn(4, 3, dtype=torch.float64)
    x = torch.randn(2, 4, 100, dtype=torch.float64)
    y, zf = lfilter(x[..., :37], a, b, return_final=True, backend=backend)
    y2, _ = lfilter(x[..., 37:], a, b, zf, return_final=True, backend=backend)
    torch.testing.assert_close(torch.cat([y, y2], -1), lfilter(x, a, b, backend=backend))


def direct_time_varying(x, a, b, zi):
    """Direct Python loop of y[t] = sum b_k(t) x[t-k] - sum a_k(t)/a_0(t) y[t-k] (+ zi[t])."""
    R, T = x.shape
    y = np.zeros_like(x)
    for r in range(R):
        for t in range(T):
            at, bt = a[r, t], b[r, t]
            acc = zi[r, t] if t < zi.shape[1] else 0.0
            acc += sum(bt[k] * x[r, t - k] for k in range(len(bt)) if t >= k)
            acc -= sum(at[k] * y[r, t - k] for k in range(1, len(at)) if t >= k)
            y[r, t] = acc / at[0]
    return y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [2, 5])
def test_lfilter_time_varying_matches_loop(backend, order):
    rng = np.random.default_rng(order)
    B, C, T = 2, 3, 25
    a = np.stack([stable_a(rng, T, order, gain=False) for _ in range(B * C)]).reshape(B, C, T, -1)
    a[..., 0] = rng.uniform(0.5, 2.0, size=(B, C, T))  # non-unit a_0 (its own normalisation)
    a[..., 1:] *= a[..., :1]
    b = rng.standard_normal((C, T, 2))  # per-channel, time-varying numerator
    x, zi = rng.standard_normal((B, C, T)), rng.standard_normal((B, C, order))
    y = lfilter(torch.tensor(x), torch.tensor(a), torch.tensor(b), torch.tensor(zi),
                time_varying=True, backend=backend)
    ref = direct_time_varying(x.reshape(-1, T), a.reshape(B * C, T, -1),
                              np.broadcast_to(b, (B, C, T, 2)).reshape(B * C, T, 2),
                              zi.reshape(B * C, -1) * a[..., 0].reshape(B * C, T)[:, :order])  # zi is not scaled by 1/a_0
    np.testing.assert_allclose(y.numpy().reshape(-1, T), ref, rtol=1e-9, atol=1e-9)
    # constant-in-time coefficients reduce to the time-invariant filter
    a_ti = stable_a(rng, C, order)
    a_rep = np.broadcast_to(a_ti[:, None], (C, T, order + 1))
    y_tv = lfilter(torch.tensor(x), torch.tensor(a_rep.copy()), torch.tensor(b[:, :1]),
                   time_varying=True, backend=backend)
    y_ti = lfilter(torch.tensor(x), torch.tensor(a_ti), torch.tensor(b[:, 0]), backend=backend)
    torch.testing.assert_close(y_tv, y_ti)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order,nb", [(2, 3), (1, 4), (3, 1), (6, 2)])
def test_lfilter_gradcheck(backend, order, nb):
    rng = np.random.default_rng(7)
    C, T = 3, 9
    a = torch.tensor(stable_a(rng, C, order), requires_grad=True)
    b = torch.randn(C, nb, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 1, T, dtype=torch.float64, requires_grad=True)  # broadcast over C
    zi = torch.randn(2, C, max(order, nb - 1), dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *t: lfilter(*t, backend=backend, return_final=True), (x, a, b, zi))


@pytest.mark.parametrize("backend", BACKENDS)
def test_lfilter_gradcheck_time_varying(backend):
    rng = np.random.default_rng(8)
    C, T, order = 2, 8, 2
    a = np.stack([stable_a(rng, T, order) for _ in range(2 * C)]).reshape(2, C, T, -1)
    a = torch.tensor(a, requires_grad=True)
    b = torch.randn(C, T, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, C, T, dtype=torch.float64, requires_grad=True)
    zi = torch.randn(C, order, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda *t: lfilter(*t, time_varying=True, backend=backend), (x, a, b, zi))


@pytest.mark.skipif(not HAS_C, reason="no C compiler")
@pytest.mark.parametrize("order", [1, 2, 4, 7])
def test_c_kernel_agrees_with_torch_fallback(order):
    torch.manual_seed(order)
    rng = np.random.default_rng(order)
    B, C, T = 3, 7, 500
    a = torch.tensor(stable_a(rng, C, order), dtype=torch.float32, requires_grad=True)
    b = torch.randn(B, C, 3, requires_grad=True)
    x = torch.randn(B, 1, T, requires_grad=True)
    gy = torch.randn(B, C, T)
    res = {}
    if order > 4:  # generic path; high-order direct forms are ill-conditioned in float32
        a, b, x = (t.detach().double().requires_grad_() for t in (a, b, x))
        gy = gy.double()
    for backend in ("native", "torch"):
        y = lfilter(x, a, b, backend=backend)
        res[backend] = (y, *torch.autograd.grad(y, (x, a, b), gy))
    for u, v in zip(res["native"], res["torch"]):
        torch.testing.assert_close(u, v, rtol=2e-4, atol=2e-4)


def test_no_native_falls_back_to_torch(monkeypatch):
    monkeypatch.setenv("SPS_NO_NATIVE", "1")
    x = torch.randn(2, 3, 20)
    flat = _Flat.build(x, torch.zeros(1, 1), torch.ones(1, 1), None, (2, 3), False, 1)
    assert pick_backend(x, flat) == "torch"
    y = lfilter(x.double(), torch.tensor([1.0, -0.5]), torch.tensor([1.0]))
    np.testing.assert_allclose(y.numpy(), ss.lfilter([1.0], [1.0, -0.5], x.double().numpy()), atol=1e-12)


@pytest.mark.skipif(not _triton.available(), reason="triton not installed")
def test_triton_kernel_interpreted(monkeypatch):
    if os.environ.get("TRITON_INTERPRET") != "1" and "triton" in sys.modules:
        # triton.language's own jit helpers were built in compiled mode: rerun in a fresh process
        env = dict(os.environ, TRITON_INTERPRET="1")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"{__file__}::test_triton_kernel_interpreted"],
                              env=env, capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-3000:]
        return
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # must precede the first import of triton
    for order in (1, 2, 4):
        _check_triton_against_torch(order)


def _check_triton_against_torch(order):
    rng = np.random.default_rng(order)
    C, T = 5, 37  # T not a multiple of the chunk, C not a multiple of the row block
    a = torch.tensor(stable_a(rng, C, order), requires_grad=True)
    b = torch.randn(C, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, C, T, dtype=torch.float64)
    zi = torch.randn(2, C, max(order, 2), dtype=torch.float64)
    out = {}
    for backend in ("triton", "torch"):
        y = lfilter(x, a, b, zi, backend=backend)
        out[backend] = (y, *torch.autograd.grad(y.square().sum(), (a, b)))
    for u, v in zip(out["triton"], out["torch"]):
        torch.testing.assert_close(u, v)
    at = torch.tensor(np.stack([stable_a(rng, T, order) for _ in range(C)]))
    y_tv = lfilter(x, at, b.detach()[:, None], time_varying=True, backend="triton")
    torch.testing.assert_close(y_tv, lfilter(x, at, b.detach()[:, None], time_varying=True, backend="torch"))


@pytest.mark.cuda
def test_lfilter_cuda_matches_cpu():
    rng = np.random.default_rng(9)
    a = torch.tensor(stable_a(rng, 16, 2), dtype=torch.float32)
    b = torch.randn(16, 3)
    x = torch.randn(4, 1, 3000)
    ref = lfilter(x, a, b)
    ac, bc = a.cuda().requires_grad_(), b.cuda().requires_grad_()
    y = lfilter(x.cuda(), ac, bc)
    torch.testing.assert_close(y.cpu(), ref, rtol=1e-3, atol=1e-3)
    y.square().sum().backward()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    lfilter(x, a2, b2).square().sum().backward()
    torch.testing.assert_close(ac.grad.cpu(), a2.grad, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(bc.grad.cpu(), b2.grad, rtol=1e-3, atol=1e-2)


# ------------------------------------------------------------------ bad inputs
def test_unstable_filters_raise():
    x = torch.randn(2, 3, 50)
    good = torch.tensor([[1.0, -0.5, 0.2]] * 3)
    for bad_row in ([1.0, -2.5, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0], [2.0, -1.0, 2.0]):
        a = good.clone()
        a[1] = torch.tensor(bad_row)  # pole outside / on the unit circle
        with pytest.raises(ValueError, match=r"unstable filter at index \(1,\)"):
            lfilter(x, a, torch.ones(3, 1))
    tv = torch.tensor([1.0, -0.5, 0.2]).repeat(3, 50, 1)
    tv[2, 17] = torch.tensor([1.0, 0.0, 1.01])
    with pytest.raises(ValueError, match=r"\(2, 17\)"):
        lfilter(x, tv, torch.ones(1), time_varying=True)
    # opting out gives the (finite, growing) unstable response instead of an error
    y = lfilter(x[..., :20], torch.tensor([1.0, -1.1]), torch.ones(1), check_stability=False)
    assert torch.isfinite(y).all()


def test_check_stable_agrees_with_roots():
    rng = np.random.default_rng(10)
    for _ in range(200):
        a = np.concatenate([[1.0], rng.uniform(-1.5, 1.5, size=rng.integers(1, 6))])
        stable = np.abs(np.roots(a)).max() < 1 - 1e-9
        if abs(np.abs(np.roots(a)).max() - 1) < 1e-6:
            continue
        try:
            check_stable(torch.tensor(a))
            assert stable, a
        except ValueError:
            assert not stable, a


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=torch.randn(2, 3, 10), a=torch.ones(4, 3), b=torch.ones(3)), "do not broadcast"),
    (dict(x=torch.randn(2, 3, 10), a=torch.ones(2, 5, 3), b=torch.ones(3)), "do not broadcast"),
    (dict(x=torch.randn(3, 10), a=torch.tensor([1.0, 0.5]), b=torch.ones(1), zi=torch.zeros(3, 2)),
     r"zi must have shape \(\.\.\., C, K=1\)"),
    (dict(x=torch.randn(3, 10), a=torch.tensor([0.0, 0.5]), b=torch.ones(1)), "must be non-zero"),
    (dict(x=torch.ones(3, 10, dtype=torch.int64), a=torch.ones(1), b=torch.ones(1)), "float32 or float64"),
    (dict(x=torch.randn(3, 10), a=torch.ones(3, 7, 2), b=torch.ones(1), time_varying=True), r"T=10 or 1"),
    (dict(x=torch.randn(3, 10), a=torch.tensor([1.0, float("nan")]), b=torch.ones(1)), "non-finite"),
    (dict(x=torch.randn(3, 10), a=torch.ones(1), b=torch.ones(1), backend="cuda"), "unknown backend"),
    (dict(x=torch.randn(3, 10), a=torch.ones(1), b=torch.ones(1), backend="cuda_graph"), "no 'cuda_graph' backend"),
])
def test_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lfilter(**kwargs)


# ------------------------------------------------------------------- biquads
@pytest.mark.parametrize("kind", ["bandpass", "lowpass", "highpass", "peaking"])
def test_biquad_bank_response_and_filtering_match_scipy(kind, tmp_path):
    bank = BiquadBank(6, 16000, kind=kind, f_min=100.0, q=2.0, gain_db=6.0).double()
    freqs, mag = bank.response(300)
    b, a = (c.detach().numpy() for c in bank.coefficients())
    for i in range(6):
        w, h = ss.freqz(b[i], a[i], worN=300)
        np.testing.assert_allclose(mag[i].detach().numpy(), np.abs(h), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(freqs.numpy(), w * 8000 / np.pi)
    x = torch.randn(2, 400, dtype=torch.float64)
    y = bank(x)
    assert y.shape == (2, 6, 400) and torch.equal(bank(x[:, None]), y)
    np.testing.assert_allclose(y[1, 4].detach().numpy(), ss.lfilter(b[4], a[4], x[1].numpy()), atol=1e-12)
    bank.plot(tmp_path / "bank.png")
    assert (tmp_path / "bank.png").read_bytes()[:4] == b"\x89PNG"


def test_biquad_design_properties():
    """Closed-form RBJ facts: unit gain at f0 / DC / Nyquist, peaking gain, -3 dB band edges."""
    fs, f0, q = 16000.0, torch.tensor([1000.0, 3000.0]), torch.tensor([0.707, 5.0])

    def gain(kind, f, **kw):
        b, a = biquad_coefficients(kind, f0.double(), q.double(), fs, **kw)
        z = torch.exp(-1j * 2 * math.pi * torch.as_tensor(f, dtype=torch.float64) / fs)
        return ((b[:, 0] + b[:, 1] * z + b[:, 2] * z * z) / (a[:, 0] + a[:, 1] * z + a[:, 2] * z * z)).abs()

    torch.testing.assert_close(gain("bandpass", f0), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(gain("lowpass", 0.0), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(gain("highpass", fs / 2), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(gain("peaking", f0, gain_db=6.0),
                               torch.full((2,), 10 ** (6 / 20), dtype=torch.float64))
    # at the cut-off, RBJ low/high-pass have |H| = Q
    torch.testing.assert_close(gain("lowpass", f0), q.double())
    torch.testing.assert_close(gain("highpass", f0), q.double())


def test_biquad_bank_stays_stable_for_any_parameters():
    bank = BiquadBank(5, 16000, kind="peaking")
    with torch.no_grad():
        bank.freq_logit.copy_(torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4]))
        bank.q_raw.copy_(torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4]))
        bank.gain_raw.copy_(torch.tensor([-1e4, -10.0, 0.0, 10.0, 1e4]))
    b, a = bank.coefficients()
    check_stable(a.double())  # raises if any pole reached the unit circle
    assert torch.isfinite(bank(torch.randn(1, 200))).all()


def test_biquad_fit_example_reduces_response_loss():
    spec = importlib.util.spec_from_file_location("biquad_fit", ROOT / "docs/examples/biquad_fit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    learner, target, losses = mod.fit(steps=12, n_filters=4, length=1024)
    assert losses[-1] < 0.5 * losses[0]
    assert learner.freq_logit.grad is not None and torch.isfinite(learner.freq_logit.grad).all()


# ---------------------------------------------------------- mu-law, emphasis
def test_mu_law_matches_formula_and_round_trips():
    x = torch.linspace(-1, 1, 2001)
    q = mu_law_encode(x)
    xn = x.numpy().astype(np.float64)
    f = np.sign(xn) * np.log(1 + 255 * np.abs(xn)) / np.log(256)
    np.testing.assert_array_equal(q.numpy(), np.floor((f + 1) / 2 * 255 + 0.5).astype(np.int64))
    assert q.min() == 0 and q.max() == 255 and q.dtype == torch.int64
    levels = torch.arange(256)
    np.testing.assert_array_equal(mu_law_encode(mu_law_decode(levels)).numpy(), levels.numpy())
    # decoding the code of x lands within half a quantisation step (in the companded domain)
    fd = np.sign(xn) * np.log1p(255 * np.abs(mu_law_decode(q).numpy())) / np.log(256)
    assert np.abs(fd - f).max() <= 1 / 255 + 1e-6
    assert mu_law_encode(torch.tensor([-3.0, 3.0]), 16).tolist() == [0, 15]


def test_emphasis_filters():
    x = torch.randn(2, 3, 500, dtype=torch.float64, requires_grad=True)
    y = preemphasis(x, 0.9)
    np.testing.assert_allclose(y.detach().numpy(), ss.lfilter([1.0, -0.9], [1.0], x.detach().numpy()),
                               atol=1e-12)
    torch.testing.assert_close(deemphasis(y, 0.9), x)
    (g,) = torch.autograd.grad(y.sum(), x)
    expected = torch.full_like(x, 0.1)
    expected[..., -1] = 1.0
    torch.testing.assert_close(g, expected)
    with pytest.raises(ValueError, match="unstable"):
        deemphasis(y, 1.0)
