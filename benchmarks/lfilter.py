"""Benchmark sps.dsp.lfilter: [B, 1, T] float32 audio through C learnable biquads -> [B, C, T].

Baselines, measured in the same run:
  (a) the naive PyTorch loop with autograd (y[t] = b0 x[t] + b1 x[t-1] + b2 x[t-2]
      - a1 y[t-1] - a2 y[t-2] per time step, vectorised over batch and filters),
      timed on --naive-length samples and extrapolated linearly to T (its cost per
      step does not depend on T);
  (b) scipy.signal.lfilter called once per (batch, filter) row (forward only, CPU).

Usage:  python benchmarks/lfilter.py [--device cpu|cuda] [--batch 32] [--filters 128]
        [--length 16000] [--naive-length 200] [--repeat 5]
Tip: THP_MEM_ALLOC_ENABLE=1 (a PyTorch setting) makes the large CPU output buffers use
huge pages, which removes most page-fault time from both passes.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from sps.dsp import biquad_coefficients, lfilter


def timeit(fn, repeat: int, device: str) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up), in seconds."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def naive_lfilter(x, a, b):
    """The baseline: a Python loop over time on torch tensors (x (B, 1, T), a/b (C, 3))."""
    a0 = a[:, 0]
    b0, b1, b2, a1, a2 = b[:, 0] / a0, b[:, 1] / a0, b[:, 2] / a0, a[:, 1] / a0, a[:, 2] / a0
    zero = x.new_zeros(x.shape[0], a.shape[0])
    x1 = x2 = x.new_zeros(x.shape[0], 1)
    y1 = y2 = zero
    out = []
    for t in range(x.shape[-1]):
        xt = x[:, :, t]
        yt = b0 * xt + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
        out.append(yt)
        x2, x1, y2, y1 = x1, xt, y1, yt
    return torch.stack(out, -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--filters", type=int, default=128)
    ap.add_argument("--length", type=int, default=16000)
    ap.add_argument("--naive-length", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    dev, B, C, T, Tn = args.device, args.batch, args.filters, args.length, args.naive_length

    torch.manual_seed(0)
    freq = torch.as_tensor(np.geomspace(60.0, 7000.0, C), dtype=torch.float32)
    b, a = biquad_coefficients("bandpass", freq, torch.full((C,), 4.0), 16000.0)
    a, b = a.to(dev).requires_grad_(), b.to(dev).requires_grad_()
    x = torch.randn(B, 1, T, device=dev)
    gy = torch.randn(B, C, T, device=dev)

    def ours_fwd():
        with torch.no_grad():
            lfilter(x, a, b, check_stability=False)

    def ours_fwd_bwd():
        y = lfilter(x, a, b, check_stability=False)
        torch.autograd.grad(y, (a, b), gy)

    xn, gyn = x[..., :Tn], gy[..., :Tn]

    def naive_fwd():
        with torch.no_grad():
            naive_lfilter(xn, a, b)

    def naive_fwd_bwd():
        torch.autograd.grad(naive_lfilter(xn, a, b), (a, b), gyn)

    rows = []
    t_fwd = timeit(ours_fwd, args.repeat, dev)
    t_fb = timeit(ours_fwd_bwd, args.repeat, dev)
    scale = T / Tn
    n_fwd = timeit(naive_fwd, 1, dev) * scale
    n_fb = timeit(naive_fwd_bwd, 1, dev) * scale
    rows.append(("sps.dsp.lfilter", t_fwd, t_fb))
    rows.append((f"naive torch loop (T={Tn}, x{scale:g})", n_fwd, n_fb))
    if dev == "cpu":
        xs, an, bn = x[:, 0].numpy(), a.detach().numpy(), b.detach().numpy()
        import scipy.signal as ss

        def scipy_fwd():
            for i in range(B):
                for c in range(C):
                    ss.lfilter(bn[c], an[c], xs[i])

        rows.append(("scipy.signal.lfilter per filter", timeit(scipy_fwd, 1, dev), float("nan")))

    print(f"lfilter benchmark: x [{B}, 1, {T}] float32 through {C} biquads -> [{B}, {C}, {T}], "
          f"device={dev}, torch threads={torch.get_num_threads()}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}")
    print(f"{'method':40s} {'forward [ms]':>14s} {'fwd+bwd [ms]':>14s}")
    for name, f, fb in rows:
        print(f"{name:40s} {f * 1e3:14.1f} {fb * 1e3:14.1f}")
    print(f"forward: sps / naive = 1/{n_fwd / t_fwd:.0f};  fwd+bwd: naive / sps = {n_fb / t_fb:.0f}x "
          "(target >= 100x)")
    if dev == "cpu":
        print(f"forward: sps / scipy = {t_fwd / rows[2][1]:.2f} (target <= 1.5)")
    else:
        print(f"fwd+bwd on CUDA: {t_fb * 1e3:.2f} ms (target < 2 ms)")


if __name__ == "__main__":
    main()
