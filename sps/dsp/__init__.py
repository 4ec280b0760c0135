"""Differentiable DSP building blocks: batched IIR filtering, biquad banks, mu-law, emphasis.

Public API
----------
lfilter(x, a, b, zi=None, ...)      batched differentiable IIR filter (C / Triton / torch)
check_stable(a)                     step-down stability test (raises ValueError)
BiquadBank(n_filters, sample_rate)  learnable RBJ-cookbook biquads, (B, T) -> (B, n_filters, T)
biquad_coefficients, freqz          RBJ designs and frequency responses (torch)
mu_law_encode / mu_law_decode       mu-law companding and quantisation
preemphasis / deemphasis            first-order emphasis filters (via lfilter)
"""
from sps.dsp.biquad import BiquadBank, biquad_coefficients, freqz
from sps.dsp.emphasis import deemphasis, mu_law_decode, mu_law_encode, preemphasis
from sps.dsp.lfilter import check_stable, lfilter

__all__ = ["lfilter", "check_stable", "BiquadBank", "biquad_coefficients", "freqz",
           "mu_law_encode", "mu_law_decode", "preemphasis", "deemphasis"]
