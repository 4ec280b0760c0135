"""The LPC vocoder core (sps.vocoders.lpc): a third, test-sized network composed with it
in one class trains and generates draw for draw against its own teacher forcing; streamed
generation is generate() piece by piece; checkpoints from before the core still load."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sps.vocoders.excitation import INPUTS, ExcitationState, generation_source, sample_frames
from sps.vocoders.lpc import N_CLASSES, LPCVocoder
from sps.vocoders.sampling import sample_cdf

from test_excitation import FEATURES, HOP, KINDS, make, stats, train_losses

pytestmark = pytest.mark.usefixtures("one_thread")


class LPCFeedForward(LPCVocoder):
    """A third network: no recurrence and no stack, one hidden layer on the four embedded
    excitation inputs plus the frame conditioning (held over the frame). All it writes is
    the network; the LPC core does the rest (generation included)."""

    def __init__(self, cond_dim: int, features: dict, *, hop_length: int = HOP, hidden: int = 16,
                 order: int = 4, preemphasis: float = 0.85, pitch_phase: bool = False, pulses: bool = False):
        super().__init__()
        self.hop_length = hop_length
        self.init_lpc(cond_dim, features, order=order, preemphasis=preemphasis, lag_window_hz=50.0,
                      context_frames=1, temperature=1.0, voiced_temperature=1.0, input_noise=0.0, pulses=pulses)
        self.embed_inputs = nn.Parameter(torch.randn(len(INPUTS), N_CLASSES, hidden) * 0.5)
        self.cond_proj = nn.Linear(cond_dim, hidden)
        self.phase_proj = nn.Linear(2, hidden, bias=False) if pitch_phase else None
        self.out = nn.Linear(hidden, N_CLASSES)

    def _logits(self, q, phase, c):
        x = c + sum(self.embed_inputs[i][q[..., i]] for i in range(q.shape[-1]))
        if phase is not None:
            x = x + self.phase_proj(phase)
        return self.out(torch.tanh(x))

    def network_logits(self, q, phase, cond):
        return self._logits(q, phase, self.cond_proj(cond).repeat_interleave(self.hop_length, 1))

    def reference_start(self, src):
        return self.cond_proj(src.cond)

    def reference_step(self, c, q, phase, n):
        return self._logits(q, phase, c[:, n // self.hop_length])


def third(**opts) -> LPCFeedForward:
    torch.manual_seed(0)
    m = LPCFeedForward(9, FEATURES, **opts)
    m.set_conditioning(*stats())
    return m


@pytest.mark.parametrize("opts", [{}, {"pitch_phase": True, "pulses": True}])
def test_a_third_network_generates_draw_for_draw_against_its_teacher_forcing(opts):
    m = third(**opts).eval()
    cond = torch.randn(2, 6, 9)
    u = torch.rand(2, 6 * HOP, generator=torch.Generator().manual_seed(1))
    wav, q = m.generate(cond, uniforms=u, return_excitation=True)      # auto: no kernel -> the reference
    assert wav.shape == (2, 6 * HOP) and torch.isfinite(wav).all()
    # the samples its classes build, recomputed outside the core's loop
    lp = m.lp
    a, lag = lp.frame_lpc(cond), lp.frame_lag(cond)
    phase, pulses = generation_source(lp, cond, HOP, True, True)
    st, f = ExcitationState(2, lp.order, lp.max_lag), sample_frames(6, HOP)
    s = torch.zeros(2, 6 * HOP)
    for n in range(6 * HOP):
        st.inputs(a[:, f[n]], lag[:, f[n]])
        s[:, n] = st.push(lp_decode(q[:, n]) + (pulses[:, n] if m.pulses else 0.0))
    with torch.no_grad():
        logits, target = m.excitation_logits(s.double(), cond, phase=phase, pulses=pulses)
    assert torch.equal(target, q)
    redraw = sample_cdf(logits.reshape(-1, N_CLASSES), u.reshape(-1)).view(2, -1)
    assert (redraw == q).float().mean() > 0.99
    # the de-emphasised waveform is the core's: s through 1 / (1 - 0.85 z^-1), clipped
    ref = torch.zeros_like(s)
    for n in range(s.shape[1]):
        ref[:, n] = s[:, n] + (0.85 * ref[:, n - 1] if n else 0.0)
    torch.testing.assert_close(wav, ref.clamp(-1, 1), atol=1e-5, rtol=0)


def lp_decode(cls):
    from sps.dsp import mu_law_decode
    return mu_law_decode(cls, N_CLASSES)


def test_a_third_network_trains():
    m = third().train()
    T = 16
    n = torch.arange(T * HOP, dtype=torch.float64)
    wav = (0.4 * torch.sin(2 * math.pi * n / 40) * torch.exp(-(n % 40) / 15)).float()[None].repeat(3, 1)
    cond = torch.zeros(3, T, 9)
    cond[..., 7] = 0.5
    losses = train_losses(m, wav, cond, steps=30, lr=1e-2)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("kind", KINDS)
def test_streamed_pieces_are_the_generated_waveform(kind, backend):
    """Pieces of at most chunk_samples, yielded in order, whose concatenation is generate()'s
    waveform exactly (lengths applied, de-emphasis carried across the pieces)."""
    m = make(kind)
    if backend == "native" and m.native_library() is None:
        pytest.skip("no C compiler (or SPS_NO_NATIVE=1)")
    cond = torch.randn(2, 9, 9)
    u = torch.rand(2, 9 * HOP, generator=torch.Generator().manual_seed(5))
    whole = m.generate(cond, [9, 6], backend=backend, uniforms=u)
    pieces = list(m.generate_stream(cond, chunk_samples=27, lengths=[9, 6], backend=backend, uniforms=u))
    assert all(p.shape[1] <= 27 for p in pieces) and len(pieces) == math.ceil(9 * HOP / 27)
    assert torch.equal(torch.cat(pieces, 1), whole)
    assert torch.all(whole[1, 6 * HOP:] == 0)
    with pytest.raises(TypeError):
        next(m.generate_stream(cond, backend=backend, uniforms=u, no_such_option=1))


def test_checkpoints_from_before_the_core_load():
    """The LPC WaveRNN's inputs were 'embed' and 'I_phase' (now 'embed_inputs' and
    'phase_proj', the LPC WaveNet's names): older state dicts load into the same weights."""
    m = make("wavernn_lpc+phase")
    state = m.state_dict()
    old = {{"embed_inputs": "embed", "phase_proj.weight": "I_phase.weight"}.get(k, k): v for k, v in state.items()}
    assert "embed" in old and "embed_inputs" not in old
    fresh = make("wavernn_lpc+phase")
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(old)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
