"""The excitation-colour post-filter (sps.vocoders.colour) against a plain reference (per-sample
loops for the LPC filters, scipy's Toeplitz solver for every frame's whitener, scipy's lfilter
for the colour); its streaming; the colour it measures of a known coloured excitation; and
the LPC core's use of it (default off until measured, composed as documented, streamed)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import torch

from sps.dsp import mu_law_decode
from sps.vocoders import colour
from sps.vocoders.colour import ColourFilter
from sps.vocoders.excitation import ExcitationState, generation_source, sample_frames

from test_excitation import HOP, make

SR = 8000
W = round(colour.WINDOW_S * SR)


def random_lpc(rng, B, T, p):
    """Stable all-pole filters: random reflection coefficients stepped up."""
    a = np.zeros((B, T, p))
    for b in range(B):
        for t in range(T):
            poly = np.array([1.0])
            for k in rng.uniform(-0.8, 0.8, p):
                poly = np.r_[poly, 0.0] + k * np.r_[0.0, poly[::-1]]
            a[b, t] = poly[1:]
    return a


def reference(x, a, voiced, c, hop):
    """The post-filter written out sample by sample."""
    B, T, p = a.shape
    N, K = T * hop, len(c) - 1
    f = np.minimum((np.arange(N) + hop // 2) // hop, T - 1)
    out = np.zeros((B, N))
    for b in range(B):
        e = np.array([x[b, n] + sum(a[b, f[n], k - 1] * x[b, n - k] for k in range(1, p + 1) if n >= k)
                      for n in range(N)])
        whiteners = {}
        for t in np.flatnonzero(voiced[b]):
            seg = np.array([e[j] if 0 <= j < N else 0.0 for j in range(t * hop - W // 2, t * hop - W // 2 + W)])
            seg = seg * np.hanning(W)
            r = np.array([np.sum(seg[:W - k] * seg[k:]) for k in range(K + 1)])
            r[0] *= 1 + 1e-4
            whiteners[t] = scipy.linalg.solve_toeplitz(r[:K], -r[1:])
        ew = np.array([e[n] + sum(whiteners[f[n]][j - 1] * e[n - j] for j in range(1, K + 1) if n >= j)
                       if f[n] in whiteners else e[n] for n in range(N)])
        o = np.where(voiced[b][f], scipy.signal.lfilter([1.0], c, ew), ew)
        y = np.zeros(N)
        for n in range(N):
            y[n] = o[n] - sum(a[b, f[n], k - 1] * y[n - k] for k in range(1, p + 1) if n >= k)
        out[b] = y
    return out


def signals(seed=0, B=2, T=14, p=4):
    rng = np.random.default_rng(seed)
    a = random_lpc(rng, B, T, p)
    voiced = rng.random((B, T)) < 0.6
    x = rng.standard_normal((B, T * HOP)) * 0.1
    x[:, ::37] += 0.8                                  # pulses
    return x, a, voiced


COLOUR = np.r_[1.0, -0.3, 0.12, np.zeros(colour.ORDER - 2)]


def test_matches_a_plain_reference():
    x, a, voiced = signals()
    y = ColourFilter(a, voiced, COLOUR, HOP, SR).push(x)
    np.testing.assert_allclose(y, reference(x, a, voiced, COLOUR, HOP), atol=1e-10, rtol=0)


@pytest.mark.parametrize("cuts", [[1, 7, 50], [HOP], [3 * HOP + 1, 2]])
def test_pieces_give_the_whole_exactly(cuts):
    """Whatever the pieces, the output is the same bit for bit, and each piece's output is
    final (it lags the input by at most half a window and a frame)."""
    x, a, voiced = signals(seed=1)
    whole = ColourFilter(a, voiced, COLOUR, HOP, SR).push(x)
    post, outs, n, i = ColourFilter(a, voiced, COLOUR, HOP, SR), [], x.shape[1], 0
    while n:
        k = min(cuts[i % len(cuts)], n)
        outs.append(post.push(x[:, x.shape[1] - n:x.shape[1] - n + k]))
        n, i = n - k, i + 1
        got = sum(o.shape[1] for o in outs)
        assert x.shape[1] - n - got <= W // 2 + 2 * HOP
    assert np.array_equal(np.concatenate(outs, 1), whole)
    with pytest.raises(ValueError, match="more than"):
        post.push(x[:, :1])


def test_unvoiced_frames_pass_through():
    x, a, voiced = signals(seed=2)
    y = ColourFilter(a, np.zeros_like(voiced), COLOUR, HOP, SR).push(x)
    np.testing.assert_allclose(y, x, atol=1e-12, rtol=0)


def test_measure_finds_the_colour_of_a_known_excitation():
    """Excitation e[n] = 0.6 e[n-1] + white noise through per-frame all-pole filters: the
    corpus colour is its whitening filter 1 - 0.6 z^-1."""
    rng = np.random.default_rng(3)
    T = 300
    a = random_lpc(rng, 1, T, 4)[0]
    e = scipy.signal.lfilter([1.0], [1.0, -0.6], rng.standard_normal(T * HOP))
    x = np.zeros_like(e)
    f = np.minimum((np.arange(T * HOP) + HOP // 2) // HOP, T - 1)
    for n in range(len(x)):                            # through 1 / A(z), frame by frame
        x[n] = e[n] - sum(a[f[n], k - 1] * x[n - k] for k in range(1, 5) if n >= k)
    voiced = np.ones(T, bool)
    voiced[::3] = False
    c = colour.measure([(x, a, voiced)], HOP, SR)
    assert c.shape == (colour.ORDER + 1,) and c[0] == 1.0
    np.testing.assert_allclose(c[1:], np.r_[-0.6, np.zeros(colour.ORDER - 1)], atol=0.05)
    with pytest.raises(ValueError, match="no voiced frame"):
        colour.measure([(x, a, np.zeros(T, bool))], HOP, SR)


def corpus(m, n=3, T=30):
    """Natural-looking training pairs for a test model: decaying pulses, voiced conditioning."""
    t = np.arange(T * HOP)
    wav = 0.4 * np.sin(2 * np.pi * t / 40) * np.exp(-(t % 40) / 15)
    cond = np.zeros((T, m.cond_dim), np.float32)
    cond[:, 7] = 0.5
    return [(wav + 0.01 * np.random.default_rng(i).standard_normal(T * HOP), cond) for i in range(n)]


@pytest.mark.parametrize("kind", ["wavenet_lpc+pulses", "wavernn_lpc+phase"])
def test_the_lpc_core_post_filters_once_measured(kind):
    m = make(kind)
    cond = torch.randn(2, 9, 9)
    cond[..., 7] = 0.6                                  # voiced frames
    u = torch.rand(2, 9 * HOP, generator=torch.Generator().manual_seed(5))
    plain = m.generate(cond, uniforms=u, backend="torch")
    assert torch.equal(m.generate(cond, uniforms=u, backend="torch", colour=False), plain)
    with pytest.raises(ValueError, match="no corpus colour"):
        m.generate(cond, uniforms=u, colour=True)
    m.observe_corpus(corpus(m))
    assert m.corpus_colour[0] == 1.0 and torch.any(m.corpus_colour[1:] != 0)
    wav, q = m.generate(cond, [9, 6], uniforms=u, backend="torch", return_excitation=True)
    assert not torch.equal(wav, m.generate(cond, [9, 6], uniforms=u, backend="torch", colour=False))
    # the composition: the same draws' pre-emphasised samples through the post-filter, de-emphasised
    s = m.lp.preemphasis
    x = torch.zeros_like(q, dtype=torch.float64)
    a, lag = m.lp.frame_lpc(cond), m.lp.frame_lag(cond)
    _, pulses = generation_source(m.lp, cond, HOP, m.phase_proj is not None, m.pulses)
    state, f = ExcitationState(2, m.lp.order, m.lp.max_lag), sample_frames(9, HOP)
    for n in range(x.shape[1]):
        state.inputs(a[:, f[n]], lag[:, f[n]])
        e = mu_law_decode(q[:, n], 256)
        x[:, n] = state.push(e + pulses[:, n] if pulses is not None else e).double()
    y = ColourFilter(a.double().numpy(), m.lp.frame_voicing(cond).numpy(), m.corpus_colour.numpy(), HOP,
                     m.lp.sample_rate).push(x.numpy())
    ref = torch.from_numpy(scipy.signal.lfilter([1.0], [1.0, -s], y)).float().clamp(-1, 1)
    ref[1, 6 * HOP:] = 0
    torch.testing.assert_close(wav, ref, atol=1e-5, rtol=0)
    pieces = list(m.generate_stream(cond, chunk_samples=27, lengths=[9, 6], uniforms=u, backend="torch"))
    assert all(p.shape[1] <= 27 for p in pieces) and torch.equal(torch.cat(pieces, 1), wav)


def test_the_colour_travels_in_the_checkpoint_and_older_ones_load():
    m = make("wavenet_lpc+pulses")
    m.observe_corpus(corpus(m))
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = make("wavenet_lpc+pulses")
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh.corpus_colour, m.corpus_colour)
    older = {k: v for k, v in make("wavenet_lpc+pulses").state_dict().items() if k != "corpus_colour"}
    fresh.load_state_dict(older)                      # from before the colour: it keeps its own
    assert torch.equal(fresh.corpus_colour, m.corpus_colour)
    blank = make("wavenet_lpc+pulses")
    blank.load_state_dict(older)
    assert torch.all(blank.corpus_colour == 0)                # unmeasured: generation without the post-filter
