"""Fit a learnable BiquadBank to a target filterbank from input/output signals.

The target is a bank of band-pass biquads with hidden centre frequencies and Qs.
White noise goes through both banks; the learner minimises the mean squared error
between the two outputs (gradients flow through ``sps.dsp.lfilter``'s analytic
backward).  Progress is reported as the response-matching loss: the mean squared
difference of the log-magnitude responses (dB) on a 256-point grid.

Run:  python docs/examples/biquad_fit.py [--steps 200] [--plot fit.png]
"""
from __future__ import annotations

import argparse
import math

import torch

from sps.dsp import BiquadBank


@torch.no_grad()
def response_loss(learner: BiquadBank, target: BiquadBank, n_freq: int = 256) -> torch.Tensor:
    """Mean squared difference of the magnitude responses in dB."""
    db = [20 * torch.log10(bank.response(n_freq)[1].clamp_min(1e-4)) for bank in (learner, target)]
    return ((db[0] - db[1]) ** 2).mean()


def fit(steps: int = 200, n_filters: int = 8, sample_rate: float = 16000.0, seed: int = 0,
        lr: float = 0.05, batch: int = 8, length: int = 2048):
    """Train a learner bank against a hidden target; returns (learner, target, losses)."""
    gen = torch.Generator().manual_seed(seed)
    target = BiquadBank(n_filters, sample_rate, kind="bandpass", f_min=200.0, f_max=6000.0, q=3.0)
    learner = BiquadBank(n_filters, sample_rate, kind="bandpass", f_min=200.0, f_max=6000.0, q=1.5)
    with torch.no_grad():  # hide the target: jitter its centres by up to +-30 % and its Qs
        target.freq_logit += 0.6 * (torch.rand(n_filters, generator=gen) - 0.5)
        target.q_raw += torch.rand(n_filters, generator=gen)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    losses = [float(response_loss(learner, target))]
    for _ in range(steps):
        x = torch.randn(batch, length, generator=gen)
        with torch.no_grad():
            y_ref = target(x)
        loss = ((learner(x) - y_ref) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(response_loss(learner, target)))
    return learner, target, losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--plot", help="save the learner's responses to this PNG")
    args = ap.parse_args()
    learner, target, losses = fit(args.steps)
    for i in range(0, len(losses), max(1, len(losses) // 10)):
        print(f"step {i:4d}  response loss {losses[i]:8.3f} dB^2")
    print(f"final      response loss {losses[-1]:8.3f} dB^2")
    print("target f0 [Hz]:", [round(f) for f in target.freq.tolist()])
    print("fitted f0 [Hz]:", [round(f) for f in learner.freq.tolist()])
    if args.plot:
        learner.plot(args.plot)
    assert math.isfinite(losses[-1])


if __name__ == "__main__":
    main()
