"""Linear prediction from the mel-cepstral envelope (NumPy).

The all-pole model ``1 / A(z)``, ``A(z) = 1 + sum_{k=1}^{p} a_k z^-k``, of each frame
comes from the spectral envelope the mel-cepstrum describes:

1. ``ln |H(w)|^2`` on the linear frequency axis (:func:`sps.features.mgc_to_log_power`);
2. optionally times the response ``|1 - c e^{-jw}|^2`` of a pre-emphasis filter (LPCNet
   predicts the pre-emphasised signal);
3. the autocorrelation ``r[k]`` as the inverse FFT of that power spectrum, with a
   Gaussian lag window (``lag_window_hz``: smooths the envelope, keeps the poles off the
   unit circle) and a white-noise floor ``r[0] *= 1 + noise_floor``;
4. the Levinson-Durbin recursion (:func:`levinson`, NumPy; :func:`lpc_recursion`, torch:
   the library's one recursion, also run by :class:`sps.vocoders.excitation.LinearPrediction`),
   which gives a minimum-phase (stable) ``A(z)`` for any positive-definite autocorrelation.

Order 16 at 16 kHz is LPCNet's choice.
"""
from __future__ import annotations

import numpy as np


def lpc_recursion(r, order: int):
    """Levinson-Durbin over the last axis of a torch tensor: ``r (..., order + 1)`` ->
    ``a (..., order)``, the coefficients ``a_1 .. a_p`` of ``A(z) = 1 + sum a_k z^-k``, in
    ``r``'s dtype and device (torch is imported on first use)."""
    import torch
    a = r.new_zeros(r.shape[:-1] + (order,))
    err = r[..., 0]
    for i in range(1, order + 1):
        acc = r[..., i] + (a[..., :i - 1] * r[..., 1:i].flip(-1)).sum(-1)
        k = -acc / err
        a = torch.cat([a[..., :i - 1] + k[..., None] * a[..., :i - 1].flip(-1), k[..., None],
                       a[..., i:]], -1)
        err = err * (1 - k * k)
    return a


def levinson(r: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Levinson-Durbin recursion for many frames at once.

    Parameters
    ----------
    r : ndarray [shape=(..., order + 1)]
        Autocorrelations (``r[..., 0] > 0``).
    order : int
        Prediction order ``p``.

    Returns
    -------
    a : ndarray [shape=(..., order + 1)] float64
        ``[1, a_1, ..., a_p]``: the prediction error filter ``A(z)``; ``x[n]`` is
        predicted as ``-sum_k a_k x[n - k]``.
    err : ndarray [shape=(...)]
        Prediction error power (``r[0] prod (1 - k_i^2)``).
    """
    r = np.asarray(r, dtype=np.float64)
    if r.shape[-1] < order + 1:
        raise ValueError(f"levinson: need {order + 1} autocorrelation lags, got {r.shape[-1]}")
    if np.any(r[..., 0] <= 0) or not np.all(np.isfinite(r)):
        raise ValueError("levinson: autocorrelations must be finite with r[0] > 0")
    import torch
    coef = lpc_recursion(torch.from_numpy(np.ascontiguousarray(r[..., :order + 1])), order).numpy()
    err = r[..., 0] + np.einsum("...k,...k->...", coef, r[..., 1:order + 1])   # r[0] prod (1 - k_i^2)
    return np.concatenate([np.ones(r.shape[:-1] + (1,)), coef], -1), err


class LPCAnalysis:
    """The library's one mel-cepstrum -> LPC analysis (torch, float64; steps 1-4 above).

    Built once for a feature layout (the basis, pre-emphasis response and lag window are
    computed here) and called on any number of frames, on any device:
    :func:`mgc_to_lpc` (NumPy) and :class:`sps.vocoders.excitation.LinearPrediction`
    (the LPC vocoders) both run it. Arguments as :func:`mgc_to_lpc`; ``mgc_dim`` is
    ``M + 1``.
    """

    def __init__(self, mgc_dim: int, alpha: float, order: int = 16, fft_size: int = 1024,
                 preemphasis: float = 0.0, lag_window_hz: float = 50.0, sample_rate: int = 16000,
                 noise_floor: float = 1e-4):
        import torch
        self.order, self.fft_size, self.noise_floor = int(order), int(fft_size), float(noise_floor)
        w = torch.linspace(0.0, np.pi, fft_size // 2 + 1, dtype=torch.float64)
        warped = torch.atan2((1 - alpha ** 2) * torch.sin(w), (1 + alpha ** 2) * torch.cos(w) - 2 * alpha)
        self.basis = 2.0 * torch.cos(torch.arange(mgc_dim, dtype=torch.float64)[:, None] * warped[None, :])
        self.emphasis = 1.0 + preemphasis ** 2 - 2.0 * preemphasis * torch.cos(w)
        lag = torch.arange(order + 1, dtype=torch.float64)
        self.lag_window = torch.exp(-0.5 * (2 * np.pi * lag_window_hz * lag / sample_rate) ** 2)

    def __call__(self, mgc):
        """``mgc`` Tensor [shape=(..., M + 1)] -> ``a_1 .. a_p`` [shape=(..., order)] and the
        prediction-error power [shape=(...)] (the excitation variance that, through
        ``1 / A(z)``, gives the envelope's power), float64."""
        import torch
        if self.basis.device != mgc.device:
            self.basis, self.emphasis, self.lag_window = (t.to(mgc.device) for t in
                                                          (self.basis, self.emphasis, self.lag_window))
        lp = mgc.double() @ self.basis
        peak = lp.amax(-1, keepdim=True)
        power = torch.exp(lp - peak) * self.emphasis
        r = torch.fft.irfft(power, n=self.fft_size, dim=-1)[..., :self.order + 1] * self.lag_window
        r = torch.cat([r[..., :1] * (1.0 + self.noise_floor), r[..., 1:]], -1)
        a = lpc_recursion(r, self.order)
        return a, (r[..., 0] + (a * r[..., 1:]).sum(-1)) * torch.exp(peak[..., 0])


def mgc_to_lpc(mgc: np.ndarray, alpha: float, order: int = 16, fft_size: int = 1024,
               preemphasis: float = 0.0, lag_window_hz: float = 50.0, sample_rate: int = 16000,
               noise_floor: float = 1e-4) -> np.ndarray:
    """LPC of the spectral envelope of each frame's mel-cepstrum (:class:`LPCAnalysis`).

    Parameters
    ----------
    mgc : ndarray [shape=(..., M + 1)]
        Mel-cepstra (SPTK convention, as in ``out_acoustic``).
    alpha : float
        All-pass constant of the mel-cepstrum.
    order : int
        Prediction order ``p``.
    fft_size : int
        FFT size of the envelope (and of the autocorrelation).
    preemphasis : float
        Model the envelope times ``|1 - preemphasis e^{-jw}|^2`` (0: no pre-emphasis).
    lag_window_hz : float
        Bandwidth (Hz) of the Gaussian lag window (0: none).
    sample_rate : int
        Hz (for the lag window).
    noise_floor : float
        White-noise correction of ``r[0]``.

    Returns
    -------
    ndarray [shape=(..., order + 1)] float64
        ``[1, a_1, ..., a_p]`` per frame.
    """
    import torch
    mgc = np.asarray(mgc, dtype=np.float64)
    if not np.all(np.isfinite(mgc)):
        raise ValueError("mgc_to_lpc: mel-cepstra must be finite")
    a, _ = LPCAnalysis(mgc.shape[-1], alpha, order, fft_size, preemphasis, lag_window_hz, sample_rate,
                       noise_floor)(torch.from_numpy(mgc))
    return np.concatenate([np.ones(mgc.shape[:-1] + (1,)), a.numpy()], -1)


def lpc_to_log_power(a: np.ndarray, fft_size: int = 1024) -> np.ndarray:
    """``ln |1 / A(e^{jw})|^2`` at the ``fft_size // 2 + 1`` FFT bins (unit gain).

    a : ndarray [shape=(..., p + 1)] -> ndarray [shape=(..., fft_size // 2 + 1)]
    """
    return -2.0 * np.log(np.abs(np.fft.rfft(np.asarray(a, dtype=np.float64), n=fft_size, axis=-1)))
