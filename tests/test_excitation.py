"""Linear-prediction excitation and the LPC vocoders: inputs against brute-force loops,
torch LPC against the NumPy analysis, generation against teacher forcing, the C kernels
against the PyTorch references draw for draw, and a short training run."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from sps.dsp import mu_law_encode
from sps.features import mgc_to_lpc
from sps.vocoders import build_vocoder
from sps.vocoders.excitation import (ExcitationState, LinearPrediction, f0_phase, generation_source, pitch_source,
                                     pulse_phase, pulse_positions, sample_frames, teacher_inputs)
from sps.vocoders.sampling import sample_cdf

FEATURES = {"sample_rate": 8000, "alpha": 0.31, "mgc": [0, 6], "lf0": 6, "vuv": 7}
HOP = 20


pytestmark = pytest.mark.usefixtures("one_thread")


def stats():
    mean = torch.zeros(9)
    mean[6], mean[7] = math.log(200.0), 0.5
    std = torch.full((9,), 0.3)
    std[7] = 1.0
    return mean, std


def test_frame_lpc_matches_the_numpy_analysis():
    lp = LinearPrediction(9, FEATURES, order=6, preemphasis=0.85, lag_window_hz=40.0, fft_size=512)
    mean, std = stats()
    lp.set_conditioning(mean, std)
    cond = torch.randn(2, 5, 9)
    a = lp.frame_lpc(cond)
    mgc = (cond.double() * std.double() + mean.double())[..., :6].numpy()
    ref = mgc_to_lpc(mgc, 0.31, 6, fft_size=512, preemphasis=0.85, lag_window_hz=40.0, sample_rate=8000)
    np.testing.assert_allclose(a.numpy(), ref[..., 1:], rtol=1e-5, atol=1e-5)
    lag = lp.frame_lag(cond)
    np.testing.assert_allclose(lag.numpy(), np.clip(8000 / np.exp(mean[6].item() + 0.3 * cond[..., 6].numpy()), 2, 400),
                               rtol=1e-5)


def test_teacher_inputs_match_a_sample_loop():
    g = torch.Generator().manual_seed(0)
    B, T, p = 2, 6, 3
    s = torch.randn(B, T * HOP, generator=g, dtype=torch.float64) * 0.1
    a = torch.randn(B, T, p, generator=g, dtype=torch.float64) * 0.3
    lag = torch.rand(B, T, generator=g) * 30 + 5
    inputs, e = teacher_inputs(s, a, lag, HOP)
    f = sample_frames(T, HOP)
    for b in range(B):
        ev = []
        for n in range(T * HOP):
            k = int(f[n])
            assert k == min((n + HOP // 2) // HOP, T - 1)              # the nearest frame centre
            past = [s[b, n - j].item() if n - j >= 0 else 0.0 for j in range(1, p + 1)]
            pred = -sum(a[b, k, j].item() * past[j] for j in range(p))
            ev.append(s[b, n].item() - pred)
            L = lag[b, k].item()
            W, fr = math.floor(L), L - math.floor(L)
            at = lambda i: ev[i] if 0 <= i < n else 0.0  # noqa: E731 - e before the start is 0
            e_lag = at(n - W) * (1 - fr) + at(n - W - 1) * fr
            want = [s[b, n - 1].item() if n else 0.0, pred, ev[n - 1] if n else 0.0, e_lag]
            np.testing.assert_allclose(inputs[b, n].numpy(), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e[b].numpy(), ev, atol=1e-12)


def test_excitation_state_reproduces_teacher_inputs():
    """Feeding the true excitation back sample by sample gives the teacher-forced inputs."""
    g = torch.Generator().manual_seed(1)
    B, T, p = 3, 8, 4
    s = torch.randn(B, T * HOP, generator=g) * 0.1
    a = torch.randn(B, T, p, generator=g) * 0.3
    lag = torch.rand(B, T, generator=g) * 40 + 3
    want, e = teacher_inputs(s.double(), a.double(), lag, HOP)
    st = ExcitationState(B, p, 60)
    f = sample_frames(T, HOP)
    for n in range(T * HOP):
        got = st.inputs(a[:, f[n]], lag[:, f[n]])
        torch.testing.assert_close(got, want[:, n], rtol=1e-4, atol=1e-5)
        st.push(e[:, n].float())


KINDS = ["wavernn_lpc", "wavenet_lpc", "wavernn_lpc+phase", "wavenet_lpc+phase", "wavernn_lpc+phase+pulses",
         "wavenet_lpc+pulses"]


def make(kind: str):
    torch.manual_seed(0)
    kind, *extras = kind.split("+")
    opts = {"pitch_phase": "phase" in extras, "pulses": "pulses" in extras}
    if kind == "wavernn_lpc":
        m = build_vocoder(kind, {"features": FEATURES, "hidden": 24, "cond_channels": 8, "hop_length": HOP,
                                 "order": 4, "context_frames": 1, **opts}, 9)
        with torch.no_grad():
            m.O2.weight.mul_(8)
    else:
        m = build_vocoder(kind, {"features": FEATURES, "hop_length": HOP, "residual_channels": 8,
                                 "skip_channels": 12, "layers": 5, "max_dilation": 4, "cond_channels": 6,
                                 "upsample_scales": [4, 5], "order": 4, "context_frames": 1, **opts}, 9)
        with torch.no_grad():
            m.conv_end.weight.mul_(5)
    m.set_conditioning(*stats())
    return m.eval()


@pytest.mark.parametrize("kind", KINDS)
def test_generation_agrees_with_teacher_forcing(kind, monkeypatch):
    """The excitation drawn at every sample is the teacher-forced target of the waveform it
    builds, and its distribution the teacher-forced one (logits recomputed)."""
    m = make(kind)
    cond = torch.randn(2, 7, 9)
    u = torch.rand(2, 7 * HOP, generator=torch.Generator().manual_seed(3))
    module = sys.modules["sps.vocoders.lpc"]              # the core draws for every network
    grad_modes = []                                  # generation builds no autograd graph

    def sample(*args):
        grad_modes.append(torch.is_grad_enabled())
        return sample_cdf(*args)
    monkeypatch.setattr(module, "sample_cdf", sample)
    wav, q = m.generate(cond, backend="torch", uniforms=u, return_excitation=True, temperature=1.0,
                        voiced_temperature=1.0)
    assert grad_modes and not any(grad_modes)
    # the pre-emphasised samples the loop built, recomputed from its classes
    from sps.dsp import mu_law_decode
    lp = m.lp
    a, lag = lp.frame_lpc(cond), lp.frame_lag(cond)
    phase, pulses = generation_source(lp, cond, HOP, True, True)   # what generation used
    with_pulses = getattr(m, "pulses", False)
    st = ExcitationState(2, lp.order, lp.max_lag)
    f = sample_frames(7, HOP)
    s = torch.zeros(2, 7 * HOP)
    for n in range(7 * HOP):
        st.inputs(a[:, f[n]], lag[:, f[n]])
        s[:, n] = st.push(mu_law_decode(q[:, n]) + (pulses[:, n] if with_pulses else 0.0))
    with torch.no_grad():
        logits, target = m.excitation_logits(s.double(), cond, phase=phase, pulses=pulses)
    assert torch.equal(target, q)
    # sampling from the teacher-forced distributions with the same draws gives the same classes
    redraw = sample_cdf(logits.reshape(-1, 256), u.reshape(-1)).view(2, -1)
    assert (redraw == q).float().mean() > 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_native_kernel_draw_for_draw(kind):
    from sps.vocoders.wavernn.native import library as rnn_lib
    from sps.vocoders.wavenet.native import library as wn_lib
    if (rnn_lib() if kind.startswith("wavernn") else wn_lib()) is None:
        pytest.skip("no C compiler (or SPS_NO_NATIVE=1)")
    m = make(kind)
    cond = torch.randn(5, 9, 9)
    u = torch.rand(5, 9 * HOP, generator=torch.Generator().manual_seed(4))
    ref, qr = m.generate(cond, backend="torch", uniforms=u, return_excitation=True)
    got, qn = m.generate(cond, backend="native", uniforms=u, return_excitation=True)
    assert (qr == qn).float().mean() > 0.995
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3)
    # bf16 matrices: the kernel against the reference computing with the rounded weights
    b16r, q16r = m.generate(cond, backend="torch", uniforms=u, return_excitation=True, precision="bfloat16")
    b16n, q16n = m.generate(cond, backend="native", uniforms=u, return_excitation=True, precision="bfloat16")
    assert (q16r == q16n).float().mean() > 0.995
    torch.testing.assert_close(b16n, b16r, atol=1e-4, rtol=1e-3)
    assert not torch.equal(q16r, qr)                   # the rounding is really applied
    if not kind.startswith("wavernn"):
        got2, qn2 = m.generate(cond, backend="native", uniforms=u, return_excitation=True, threads=2)
        assert torch.equal(qn, qn2)
        _, q16n2 = m.generate(cond, backend="native", uniforms=u, return_excitation=True, threads=2,
                              precision="bfloat16")
        assert torch.equal(q16n, q16n2)


def test_pulses_and_phase_of_a_jittered_pulse_train():
    """Pulses placed with jitter in noise are found exactly; the phase is 0 on them and
    rises linearly in between; the F0 phase advances 2 pi / T0 per voiced sample."""
    g = np.random.default_rng(0)
    N = 2000
    e = g.normal(0, 0.05, N)
    truth, t = [], 103
    while t < 1400:
        truth.append(t)
        t += int(g.integers(36, 45))                         # period 40 +- 4 samples
    e[truth] = -1.0                                          # negative pulses: the polarity is found
    voiced = torch.zeros(1, N, dtype=torch.bool)
    end = truth[-1] + 20                                     # voicing ends before another pulse is due
    voiced[0, 100:end] = True
    lag = torch.full((1, N), 40.0)
    found = pulse_positions(torch.from_numpy(e)[None], lag, voiced)[0]
    assert found == truth
    phase = pulse_phase([found], lag)[0].numpy()
    for a, b in zip(truth, truth[1:]):
        expect = 2 * np.pi * (np.arange(a, b) - a) / (b - a)
        np.testing.assert_allclose(phase[a:b], expect, atol=1e-9)
    ph = f0_phase(lag, voiced)[0].numpy()
    assert ph[100] == 0.0 and np.all(ph[:100] == 0.0)
    steps = np.mod(np.diff(ph[100:end]), 2 * np.pi)
    np.testing.assert_allclose(steps, 2 * np.pi / 40, atol=1e-9)
    x, pd = pitch_source(lag[:, ::HOP], voiced[:, ::HOP], HOP, torch.full((1, N // HOP), 4.0))
    v_frames = voiced[0, ::HOP][sample_frames(N // HOP, HOP)]
    assert x.shape == (1, N, 2) and torch.all(x[0, ~v_frames] == 0)
    np.testing.assert_allclose(x[0, 200:end - 20].norm(dim=-1).numpy(), 1.0, atol=1e-6)
    # the generation pulse train: onsets and phase wraps, height sqrt(gain T0) = sqrt(4 * 40)
    where = torch.nonzero(pd[0]).flatten()
    assert torch.all(pd[0, where] == math.sqrt(160.0))
    onset = int(torch.nonzero(v_frames).flatten()[0])
    assert where[0] == onset and (torch.diff(where) - 40).abs().max() <= 1


@pytest.mark.parametrize("kind", KINDS)
def test_short_training_lowers_the_loss(kind):
    """A few steps on an LPC-friendly signal (an AR(2) resonance excited by a pulse train)."""
    m = make(kind).train()
    sr, T = 8000, 16
    n = np.arange(T * HOP)
    pulses = (n % 40 == 0).astype(float) * 0.5
    y = np.zeros_like(pulses)
    for i in range(len(y)):
        y[i] = pulses[i] + 1.6 * (y[i - 1] if i else 0) - 0.8 * (y[i - 2] if i > 1 else 0)
    wav = torch.tensor(y / np.abs(y).max() * 0.5, dtype=torch.float32)[None].repeat(4, 1)
    cond = torch.zeros(4, T, 9)
    cond[..., 6] = (math.log(sr / 40) - math.log(200.0)) / 0.3          # F0 200 Hz: a 40-sample period
    cond[..., 7] = 0.5
    losses = train_losses(m, wav, cond, steps=25, lr=3e-3)
    assert losses[-1] < 0.7 * losses[0], losses


def train_losses(m, wav, cond, steps: int, lr: float) -> list[float]:
    """Training losses of ``steps`` Adam steps on one batch."""
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = m.loss(wav, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_lpc_vocoders_are_built_from_the_spec(tmp_path):
    """The stage gives LPC vocoders the feature layout and the conditioning statistics."""
    from sps.config import bind
    from sps.stages.vocoder import VocoderConfig, make_vocoder
    from sps.vocoders.conditioning import Conditioning
    spec = {"kind": "out_acoustic", "dim": 20, "sample_rate": 16000, "frame_shift_ms": 5.0,
            "windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
            "streams": [{"name": "mgc", "start": 0, "static_dim": 5, "num_windows": 3},
                        {"name": "lf0", "start": 15, "static_dim": 1, "num_windows": 3},
                        {"name": "vuv", "start": 18, "static_dim": 1, "num_windows": 1},
                        {"name": "bap", "start": 19, "static_dim": 1, "num_windows": 1}],
            "analysis": {"alpha": 0.42, "fft_size": 1024}}
    cond = Conditioning(spec, np.arange(8.0), np.ones(8) * 2)
    assert cond.layout() == {"sample_rate": 16000, "alpha": 0.42, "mgc": [0, 5], "lf0": 5, "vuv": 6, "bap": [7, 1]}
    cfg = bind(VocoderConfig, {"vocoder": "wavernn_lpc", "model": {"hidden": 8, "cond_channels": 4}})
    model, options = make_vocoder(cfg, cond)
    assert options["features"] == cond.layout()
    torch.testing.assert_close(model.lp.cond_mean, torch.arange(8.0))
    state = model.state_dict()
    assert "lp.cond_mean" in state and "lp.basis" not in state     # statistics travel, derived buffers not


def test_noise_injection_keeps_the_clean_target():
    """Noisy history: inputs from a perturbed waveform, targets that lead back to the clean one."""
    from sps.vocoders.excitation import noisy_history
    g = torch.Generator().manual_seed(2)
    B, T, p = 2, 6, 3
    a = torch.randn(B, T, p, generator=g, dtype=torch.float64) * 0.2
    s = torch.randn(B, T * HOP, generator=g, dtype=torch.float64) * 0.05
    f = sample_frames(T, HOP)
    # no noise: the history is the waveform itself, up to mu-law rounding of the excitation
    quiet = noisy_history(s, a[:, f], 0.0)
    assert (quiet - s).abs().max() < 0.01
    inputs, target = teacher_inputs(s, a, torch.full((B, T), 7.0), HOP, noise=2.0,
                                    generator=torch.Generator().manual_seed(0))
    noisy = noisy_history(s, a[:, f], 2.0, torch.Generator().manual_seed(0))
    assert (noisy - s).abs().max() > 1e-3                                   # the history moved
    torch.testing.assert_close(inputs[..., 1].double() + target, s, rtol=0, atol=1e-6)   # p~ + e = s


def test_source_filter_vocoder_gain_pitch_and_noise():
    """The classical vocoder: voiced output periodic at T0, unvoiced output noise; its
    per-frame prediction-error power against Kolmogorov's formula exp(mean log P) on the
    envelope of sps.features.mgc_to_log_power; output power matches it."""
    from sps.features.acoustic import mgc_to_log_power
    from sps.vocoders.source_filter import SourceFilterVocoder
    sr, T = 8000, 60
    feats = {**FEATURES, "bap": [8, 1]}
    mean, std = torch.zeros(9), torch.ones(9)
    m = SourceFilterVocoder(9, feats, hop_length=HOP, order=12, preemphasis=0.0, mixed=False)
    m.set_conditioning(mean, std)
    cond = torch.zeros(1, T, 9)
    cond[..., :6] = torch.tensor([-2.0, 0.4, -0.2, 0.1, 0.05, 0.0])     # a smooth envelope
    cond[..., 6] = math.log(sr / 40)                                    # T0 = 40 samples
    cond[..., 7] = (torch.arange(T) < T // 2).float()                   # voiced, then unvoiced
    cond[..., 8] = -60.0
    a, gain = m.lp.frame_lpc(cond, return_gain=True)
    logp = mgc_to_log_power(cond[0, 0, :6].double().numpy(), FEATURES["alpha"], 1024)
    assert float(gain[0, 0]) == pytest.approx(math.exp(logp.mean()), rel=0.05)
    wav = m.generate(cond, generator=torch.Generator().manual_seed(0))[0].double().numpy()
    voiced = wav[5 * HOP:25 * HOP]
    ac = np.correlate(voiced, voiced, "full")[len(voiced) - 1:]
    assert 38 <= np.argmax(ac[20:60]) + 20 <= 42                         # periodic at T0
    # output power = gain x the filter's power gain exp(2 * mean log|1/A|) ... = envelope power
    ref = float(np.exp(logp).mean())
    assert np.mean(voiced ** 2) == pytest.approx(ref, rel=0.25)
    unvoiced = wav[35 * HOP:55 * HOP]
    assert np.mean(unvoiced ** 2) == pytest.approx(ref, rel=0.25)
    uac = np.correlate(unvoiced, unvoiced, "full")[len(unvoiced) - 1:]
    assert np.abs(uac[30:50]).max() < 0.3 * uac[0]                      # no periodicity
    with pytest.raises(ValueError, match="bap stream"):
        SourceFilterVocoder(9, FEATURES, hop_length=HOP, mixed=True)
