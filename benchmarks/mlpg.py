"""Benchmark: batched differentiable MLPG against straightforward baselines.

Problem: B utterances of T frames, D static dimensions with static/delta/delta-delta
windows (3 D features) and per-frame variances, float32. Times the forward pass
and forward+backward (gradients w.r.t. means and variances) of

* sps.mlpg.mlpg (default backend: C kernel on CPU, Triton on CUDA), and the
  pure-PyTorch reference backend;
* (a) a per-utterance, per-dimension loop: NumPy band assembly +
  ``scipy.linalg.solveh_banded`` forward, and a dense T x T ``numpy.linalg.solve``
  for the adjoint in the backward pass (timed on a subset of systems and
  extrapolated linearly to all B * D systems; NumPy's BLAS single-threaded,
  its fastest setting for this loop);
* (b) batched dense ``torch.linalg.solve`` on the full T x T matrices with autograd
  (timed on a subset of utterances and extrapolated).

Usage::

    python benchmarks/mlpg.py [--batch 32] [--frames 500] [--dims 60] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# Baseline (a) is a loop of small independent solves: NumPy's BLAS is fastest (and
# least disturbed by other load) single-threaded there, so give it one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sps.mlpg import default_windows, mlpg  # noqa: E402
from sps.mlpg.windows import apply_windows_t, build_band, frame_mask  # noqa: E402
from sps.spec import check_windows  # noqa: E402


def timeit(fn, device, repeat=10):
    """Best wall time (s) of ``fn()`` over ``repeat`` calls after one warm-up call, and
    the process CPU time (s, all threads) of that best call."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    fn()
    sync()
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
    return best


def loop_baseline(means, variances, windows, n_fwd, n_fb):
    """(a): per-system NumPy/SciPy MLPG; returns (forward s, forward+backward s) per system,
    timed on the first ``n_fwd`` (forward) and ``n_fb`` (forward+backward) systems."""
    B, T, F = means.shape
    W = len(windows)
    D = F // W
    mu = means.reshape(B, T, W, D).astype(np.float64)
    prec = 1.0 / variances.reshape(B, T, W, D).astype(np.float64)
    for w, (left, right, _) in enumerate(windows):  # edge rule
        e = max(left, right)
        if e:
            prec[:, :e, w] = 0
            prec[:, T - e:, w] = 0
    P = max(left + right for left, right, _ in windows)
    systems = [(b, d) for b in range(B) for d in range(D)]
    Wm = np.stack([sum(c * np.eye(T, k=j - left) for j, c in enumerate(coef))
                   for left, _, coef in windows])  # (W, T, T) window matrices

    # forward: banded assembly + solveh_banded
    t0 = time.perf_counter()
    for b, d in systems[:n_fwd]:
        ab, rhs = _band_numpy(prec[b, :, :, d], mu[b, :, :, d], windows, P)
        scipy.linalg.solveh_banded(ab, rhs, lower=True)
    fwd = (time.perf_counter() - t0) / n_fwd
    # forward + backward: the adjoint with a dense T x T solve
    g = np.ones(T)
    t0 = time.perf_counter()
    for b, d in systems[:n_fb]:
        ab, rhs = _band_numpy(prec[b, :, :, d], mu[b, :, :, d], windows, P)
        x = scipy.linalg.solveh_banded(ab, rhs, lower=True)
        A = np.diag(ab[0])
        for k in range(1, P + 1):
            A += np.diag(ab[k, :T - k], -k) + np.diag(ab[k, :T - k], k)
        lam = np.linalg.solve(A, g)
        wl = np.einsum("wti,i->tw", Wm, lam)
        wx = np.einsum("wti,i->tw", Wm, x)
        p = prec[b, :, :, d]
        _grad_mu = p * wl
        _grad_var = -p * p * wl * (mu[b, :, :, d] - wx)
    fb = (time.perf_counter() - t0) / n_fb
    return fwd, fb


def _band_numpy(p, m, windows, P):
    """Lower band (P+1, T) of W^T diag(p) W and W^T diag(p) m for one dimension (p, m: (T, W))."""
    T = p.shape[0]
    ab = np.zeros((P + 1, T))
    rhs = np.zeros(T)
    for w, (left, _, coef) in enumerate(windows):
        pw, pm = p[:, w], p[:, w] * m[:, w]
        for j, c in enumerate(coef):
            s = j - left  # x[i] gets c * (p m)[i - s]
            lo, hi = max(0, s), min(T, T + s)
            rhs[lo:hi] += c * pm[lo - s:hi - s]
            for k in range(j + 1):  # A[i, i-k] += c_j c_{j-k} p[i - s]
                r = c * coef[j - k]
                if r == 0.0:
                    continue
                lo_k = max(lo, k)
                ab[k, lo_k - k:hi - k] += r * pw[lo_k - s:hi - s]
    return ab, rhs


def dense_torch(means, variances, windows):
    """(b): dense W^T P W assembled from the band, batched torch.linalg.solve, autograd."""
    B, T, F = means.shape
    W = len(windows)
    D = F // W
    mask, _ = frame_mask(windows, T, None, means.device)
    prec = torch.where(mask, 1 / variances.reshape(B, T, W, D), torch.zeros((), device=means.device))
    band = build_band(prec, windows)  # (B, T, K, D)
    rhs = apply_windows_t(prec * means.reshape(B, T, W, D), windows)  # (B, T, D)
    band = band.permute(0, 3, 2, 1)  # (B, D, K, T)
    A = torch.diag_embed(band[:, :, 0])
    for k in range(1, band.shape[2]):
        off = torch.diag_embed(band[:, :, k, k:], offset=-k)
        A = A + off + off.transpose(-1, -2)
    x = torch.linalg.solve(A, rhs.permute(0, 2, 1).unsqueeze(-1))
    return x.squeeze(-1).permute(0, 2, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--dims", type=int, default=60)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--loop-systems", type=int, default=240,
                    help="systems timed for the forward of baseline (a) before extrapolating")
    ap.add_argument("--loop-backward-systems", type=int, default=24,
                    help="systems timed for forward+backward of baseline (a)")
    ap.add_argument("--dense-batch", type=int, default=2,
                    help="utterances timed for baseline (b) before extrapolating")
    args = ap.parse_args()
    device = torch.device(args.device)
    B, T, D = args.batch, args.frames, args.dims
    windows = check_windows(default_windows())
    W = len(windows)
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(B, T, W * D, generator=gen).to(device)
    variances = (torch.rand(B, T, W * D, generator=gen) + 0.1).to(device)
    print(f"MLPG benchmark: B={B}, T={T}, D={D} static ({W * D} with deltas), per-frame "
          f"variances, float32, device={device}, torch threads={torch.get_num_threads()}")

    def ours(backend, mu, var):
        def fwd():
            with torch.no_grad():
                mlpg(mu, var, windows, backend=backend)

        def fb():
            m = mu.detach().requires_grad_()
            v = var.detach().requires_grad_()
            y = mlpg(m, v, windows, backend=backend)
            torch.autograd.grad(y, (m, v), torch.ones_like(y))
        return fwd, fb

    # correctness check against (a) and (b) on the first utterance before timing
    with torch.no_grad():
        x = mlpg(means[:1], variances[:1], windows).cpu().double().numpy()
        xd = dense_torch(means[:1].double(), variances[:1].double(), windows).cpu().numpy()
    p = 1 / variances[0].cpu().double().numpy().reshape(T, W, D)
    for w, (left, right, _) in enumerate(windows):
        e = max(left, right)
        if e:
            p[:e, w] = p[T - e:, w] = 0
    m = means[0].cpu().double().numpy().reshape(T, W, D)
    ab, rhs = _band_numpy(p[:, :, 0], m[:, :, 0], windows, max(a + b for a, b, _ in windows))
    err_a = np.abs(x[0, :, 0] - scipy.linalg.solveh_banded(ab, rhs, lower=True)).max()
    err_b = np.abs(x - xd).max()
    print(f"max |difference| on utterance 0: vs (a) {err_a:.2e}, vs (b) {err_b:.2e}")

    rows = []
    fwd, fb = ours(None, means, variances)
    t_f = timeit(fwd, device, args.repeat)[0]
    t_fb, c_fb = timeit(fb, device, args.repeat)
    rows.append(("sps.mlpg (default backend)", t_f, t_fb, c_fb, ""))

    if device.type == "cpu":
        sub = max(1, B // 8)  # the pure-PyTorch reference is slow on CPU: time B/8 utterances
        fwd, fb = ours("torch", means[:sub], variances[:sub])
        scale = B / sub
        w_fb, c_fb = timeit(fb, device, 3)
        rows.append(("sps.mlpg backend='torch' (reference)", timeit(fwd, device, 3)[0] * scale,
                     w_fb * scale, c_fb * scale, f"timed on {sub} utt., x{scale:g}"))
        n, nb = min(args.loop_systems, B * D), min(args.loop_backward_systems, B * D)
        c0 = time.process_time()
        fwd_s, fb_s = loop_baseline(means.numpy(), variances.numpy(), windows, n, nb)
        c_all = time.process_time() - c0  # CPU of both loops; attribute it by wall share
        cpu_fb = c_all * fb_s * nb / (fwd_s * n + fb_s * nb)
        rows.append(("(a) loop: solveh_banded / dense adjoint", fwd_s * B * D, fb_s * B * D,
                     cpu_fb / nb * B * D, f"timed on {n} (fwd) / {nb} (fwd+bwd) of {B * D} systems"))
    sub = min(B, args.dense_batch)

    def dfwd():
        with torch.no_grad():
            dense_torch(means[:sub], variances[:sub], windows)

    def dfb():
        m = means[:sub].detach().requires_grad_()
        v = variances[:sub].detach().requires_grad_()
        y = dense_torch(m, v, windows)
        torch.autograd.grad(y, (m, v), torch.ones_like(y))
    scale = B / sub
    w_fb, c_fb = timeit(dfb, device, 3)
    rows.append(("(b) batched dense torch.linalg.solve", timeit(dfwd, device, 3)[0] * scale,
                 w_fb * scale, c_fb * scale, f"timed on {sub} utt., x{scale:g}"))

    print("wall = best of the runs; cpu = process CPU time (all threads) of fwd+bwd")
    print(f"{'method':42s} {'forward ms':>11s} {'fwd+bwd ms':>11s} {'fwd+bwd cpu ms':>15s}  note")
    for name, f, b, c, note in rows:
        print(f"{name:42s} {f * 1e3:11.2f} {b * 1e3:11.2f} {c * 1e3:15.2f}  {note}")
    print("speed-up of sps.mlpg (default backend), wall time:")
    for name, f, b, _, _ in rows[1:]:
        print(f"  vs {name:38s} forward {f / t_f:9.1f}x   fwd+bwd {b / t_fb:9.1f}x")


if __name__ == "__main__":
    main()
