"""Tests for sps.vocoders.wavernn (model, masking, generation backends, folding)."""
import math

import numpy as np
import pytest
import torch

from sps.vocoders import build_vocoder
from sps.vocoders.sampling import sample_cdf
from sps.vocoders.wavernn import WaveRNN, fold, magnitude_prune, merge_16bit, split_16bit, unfold
from sps.vocoders.wavernn import generate as gen
from sps.vocoders.wavernn import native
from sps.vocoders.wavernn.ops import byte_to_input, pad_frames, upsample
from sps.vocoders.wavernn.rnn import gru_aten, gru_sequence

HOP = 8
needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler")


def small_model(hidden=36, cond_dim=5, seed=0):
    torch.manual_seed(seed)
    m = WaveRNN(cond_dim, hidden=hidden, cond_channels=12, cond_kernel=3, hop_length=HOP).eval()
    with torch.no_grad():  # non-zero biases so every term of the step is exercised
        m.bias.normal_(0, 0.3)
        m.R.mul_(2.0)
    return m


def inputs(B=2, T=6, C=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T * HOP, generator=g) * 2 - 1, torch.randn(B, T, C, generator=g)


# ------------------------------------------------------------------ 16-bit split
def test_split_merge_exact_for_all_16bit_values():
    v = torch.arange(65536)
    x = merge_16bit(v // 256, v % 256)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    c, f = split_16bit(x)
    assert torch.equal(c * 256 + f, v)
    assert torch.equal(c, v // 256) and torch.equal(f, v % 256)


def test_split_quantisation_error_and_clipping():
    x = torch.linspace(-1.2, 1.2, 10001)
    c, f = split_16bit(x)
    assert c.min() == 0 and c.max() == 255 and f.min() == 0 and f.max() == 255
    y = merge_16bit(c, f).double()
    inside = x.abs() <= 1
    assert (y[inside] - x[inside].double()).abs().max() <= 0.5 / 32767.5 + 1e-7
    assert split_16bit(torch.tensor(-1.5))[0] == 0 and split_16bit(torch.tensor(1.5))[0] == 255


# ----------------------------------------------------------------------- masking
def test_mask_by_perturbation():
    m = small_model()
    wav, cond = inputs(B=1)
    t0 = 20
    c, f = split_16bit(wav)
    c2 = c.clone()
    c2[0, t0] = (c[0, t0] + 97) % 256          # new coarse byte at t0, same fine byte
    wav2 = merge_16bit(c2, f)
    with torch.no_grad():
        lc, lf = m.logits(wav, cond)
        lc2, lf2 = m.logits(wav2, cond)
    assert torch.equal(lc[:, :t0 + 1], lc2[:, :t0 + 1])      # coarse logits up to t0 unchanged
    assert torch.equal(lf[:, :t0], lf2[:, :t0])
    assert (lf[:, t0] - lf2[:, t0]).abs().max() > 1e-4        # the fine half sees c_t
    assert (lc[:, t0 + 1] - lc2[:, t0 + 1]).abs().max() > 1e-4


def test_mask_by_gradient():
    m = small_model()
    B, N, t0 = 2, 30, 17
    x = (torch.rand(B, N, 3) * 2 - 1).requires_grad_()
    cond_up = torch.randn(B, N, 12)
    lc, lf = m.heads(m.rnn(x, cond_up))
    gc, = torch.autograd.grad(lc[:, t0].sum(), x, retain_graph=True)
    assert torch.all(gc[:, t0, 2] == 0)                 # coarse output blind to c_t
    assert torch.all(gc[:, t0 + 1:] == 0)               # causal
    assert gc[:, t0, :2].abs().min() > 0 and gc[:, :t0].abs().sum() > 0
    gf, = torch.autograd.grad(lf[:, t0].sum(), x)
    assert gf[:, t0, 2].abs().min() > 0 and torch.all(gf[:, t0 + 1:] == 0)


# -------------------------------------------------------------------- generation
def test_generation_reproduces_teacher_forced_distributions():
    m = small_model()
    _, cond = inputs(B=3, T=5)
    w = gen.gen_weights(m)
    P = pad_frames(m.cond_projection(cond)).detach()
    u = torch.rand(3, 5 * HOP, 2, generator=torch.Generator().manual_seed(5))
    b, lc_gen, lf_gen = gen.run_reference(w, P, u, HOP, return_logits=True)
    wav = merge_16bit(b[..., 0], b[..., 1])
    with torch.no_grad():
        lc, lf = m.logits(wav, cond)
    torch.testing.assert_close(lc_gen, lc, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(lf_gen, lf, atol=2e-5, rtol=1e-4)
    # the drawn bytes are the inverse-CDF draws from those distributions
    assert torch.equal(b[..., 0], sample_cdf(lc.reshape(-1, 256), u[..., 0].reshape(-1)).view(3, -1))
    # and WaveRNN.generate is this loop
    out = m.generate(cond, backend="torch", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, wav, atol=0, rtol=0)


@needs_native
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_native_equals_torch(precision, temperature):
    m = small_model()
    _, cond = inputs(B=6, T=7)              # 6 rows: one block of 4 and one of 2
    w = gen.gen_weights(m, precision)
    P = pad_frames(m.cond_projection(cond)).detach()
    u = torch.rand(6, 7 * HOP, 2, generator=torch.Generator().manual_seed(7))
    ref, lc, lf = gen.run_reference(w, P, u, HOP, temperature, return_logits=True)
    for threads in (1, 2):
        got = native.run(w, P, u, HOP, temperature, threads=threads)
        assert_same_draws(got, ref, lc, lf, u, temperature)


def assert_same_draws(got, ref, lc, lf, u, temperature, max_diverged=1):
    """Equal bytes, except that a row may part ways where its uniform number lies
    within float rounding of a CDF boundary of the reference (different exp/sum
    rounding can flip such a draw to the neighbouring class)."""
    diverged = 0
    for row in range(ref.shape[0]):
        bad = (got[row] != ref[row]).nonzero()
        if len(bad) == 0:
            continue
        t, which = bad[0].tolist()
        diverged += 1
        logits = (lc if which == 0 else lf)[row, t].double() / temperature
        cdf = logits.softmax(-1).cumsum(-1)
        a, b = sorted([int(got[row, t, which]), int(ref[row, t, which])])
        assert b == a + 1, f"row {row} step {t}: classes {a} and {b} are not neighbours"
        assert abs(cdf[a].item() - u[row, t, which].item()) < 1e-5, f"row {row} step {t}: not a boundary draw"
    assert diverged <= max_diverged


def test_bf16_weights_are_rounded_and_packed():
    m = small_model()
    w16, w32 = gen.gen_weights(m, "bfloat16"), gen.gen_weights(m)
    for a, b in zip(w16.matrices(), w32.matrices()):
        assert torch.equal(a, b.bfloat16().float())
    assert (w16.R - w32.R).abs().max() > 0
    # packed layout: word i of a 2*vl chunk holds outputs i (low) and vl + i (high)
    M, K, vl = 40, 3, 8
    W = torch.randn(M, K)
    packed = native.pack(W, True, vl).view(K, M)
    bits = W.t().bfloat16().view(torch.int16)
    for k in range(K):
        for m in range(M):
            c, j = divmod(m, 2 * vl)
            pos = m if m >= 32 else c * 2 * vl + (j % vl) * 2 + j // vl
            assert packed[k, pos] == bits[k, m]
    assert torch.equal(native.pack(W, False, vl), W.t())


def test_generate_protocol_shapes_lengths_and_fallback(monkeypatch):
    m = small_model()
    _, cond = inputs(B=2, T=6)
    out = m.generate(cond, lengths=[6, 4], generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 6 * HOP) and out.abs().max() <= 1
    assert torch.all(out[1, 4 * HOP:] == 0) and out[1, :4 * HOP].abs().sum() > 0
    monkeypatch.setenv("SPS_NO_NATIVE", "1")
    torch.testing.assert_close(m.generate(cond, generator=torch.Generator().manual_seed(0)),
                               m.generate(cond, backend="torch", generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="backend 'native' needs a C compiler"):
        m.generate(cond, backend="native")
    with pytest.raises(ValueError, match="lengths"):
        m.generate(cond, lengths=[7, 1])
    with pytest.raises(ValueError, match="shape"):
        m.generate(cond[..., :3])


# ----------------------------------------------------------------------- folding
@pytest.mark.parametrize("n,seg,warm,ov", [(1003, 100, 20, 10), (1000, 100, 0, 0),
                                          (50, 100, 8, 4), (400, 50, 7, 50)])
def test_fold_then_unfold_is_exact(n, seg, warm, ov):
    x = torch.randn(n, 2)
    y = fold(x, seg, warm, ov)
    assert y.shape == (math.ceil(n / seg), warm + seg + ov, 2)
    assert torch.equal(unfold(y, n, seg, warm, ov), x)


def test_fold_crossfade_blends_neighbours():
    seg, ov = 10, 4
    y = torch.stack([torch.zeros(seg + ov), torch.ones(seg + ov)])
    out = unfold(y, 2 * seg, seg, 0, ov)
    ramp = out[seg:seg + ov]
    assert torch.all(out[:seg] == 0) and torch.all(out[seg + ov:] == 1)
    assert torch.all(ramp > 0) and torch.all(ramp < 1) and torch.all(ramp.diff() > 0)
    torch.testing.assert_close(ramp + ramp.flip(0), torch.ones(ov))   # symmetric ramp


def test_folded_conditioning_equals_global_interpolation():
    T, G, L, W, O = 23, 6, 5, 2, 1
    proj = torch.randn(T, G)
    whole = upsample(pad_frames(proj[None]), HOP)[0]                  # (T * HOP, G)
    segs = fold(proj, L, W, O, context=1)
    for k in range(segs.shape[0]):
        local = upsample(segs[k:k + 1], HOP)[0]                       # (W + L + O) * HOP
        start = (k * L - W) * HOP
        lo, hi = max(start, 0), min(start + local.shape[0], T * HOP)
        torch.testing.assert_close(local[lo - start:hi - start], whole[lo:hi], atol=0, rtol=0)


@pytest.mark.parametrize("backend", ["torch", pytest.param("native", marks=needs_native)])
def test_folded_generation_matches_segment_runs(backend):
    m = small_model()
    _, cond = inputs(B=2, T=13)
    L, W, O = 4, 2, 1
    out = m.generate(cond, lengths=[13, 9], fold=True, fold_frames=L, warmup_frames=W,
                     overlap_frames=O, backend=backend, generator=torch.Generator().manual_seed(2))
    # independent construction: run every segment with the same backend, then unfold
    proj = m.cond_projection(cond).detach()
    segs = [fold(proj[0], L, W, O, context=1), fold(proj[1, :9], L, W, O, context=1)]
    P = torch.cat(segs)
    u = torch.rand(P.shape[0], (L + W + O) * HOP, 2, generator=torch.Generator().manual_seed(2))
    b = gen.run_bytes(gen.gen_weights(m), P, u, HOP, 1.0, backend)
    y = merge_16bit(b[..., 0], b[..., 1])
    want0 = unfold(y[:4], 13 * HOP, L * HOP, W * HOP, O * HOP)
    want1 = unfold(y[4:], 9 * HOP, L * HOP, W * HOP, O * HOP)
    torch.testing.assert_close(out[0], want0, atol=0, rtol=0)
    torch.testing.assert_close(out[1, :9 * HOP], want1, atol=0, rtol=0)
    assert torch.all(out[1, 9 * HOP:] == 0)


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("use_native", [False, pytest.param(True, marks=needs_native)])
def test_gru_sequence_matches_torch_gru_values_and_gradients(use_native):
    g = torch.Generator().manual_seed(4)
    B, N, H, I = 6, 13, 20, 7           # 6 rows: a block of 4 and a partial block
    inp = torch.randn(B, N, I, generator=g)
    w_ih = (torch.randn(3 * H, I, generator=g) * 0.5).requires_grad_()
    b = (torch.randn(3 * H, generator=g) * 0.3).requires_grad_()
    R = (torch.randn(3 * H, H, generator=g) * 0.4).requires_grad_()
    dout = torch.randn(B, N, H, generator=g)
    want = gru_aten(inp, w_ih, b, R)
    grads_want = torch.autograd.grad((want * dout).sum(), [w_ih, b, R])
    got = gru_sequence(torch.nn.functional.linear(inp, w_ih, b), R, use_native=use_native)
    grads_got = torch.autograd.grad((got * dout).sum(), [w_ih, b, R])
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    for a, e in zip(grads_got, grads_want):
        torch.testing.assert_close(a, e, atol=2e-5, rtol=1e-4)


def test_training_reduces_loss():
    torch.manual_seed(0)
    m = WaveRNN(4, hidden=32, cond_channels=8, cond_kernel=3, hop_length=HOP)
    t = torch.arange(40 * HOP, dtype=torch.float32)
    wav = torch.stack([0.5 * torch.sin(2 * math.pi * t / p) for p in (16.0, 23.0)])
    cond = torch.randn(2, 40, 4)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = m.loss(wav, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 10.5                       # ~2 ln 256 at initialisation
    assert losses[-1] < losses[0] - 1.5


def test_loss_is_cross_entropy_of_both_bytes():
    m = small_model()
    wav, cond = inputs(B=2, T=3)
    with torch.no_grad():
        lc, lf = m.logits(wav, cond)
        c, f = split_16bit(wav)
        want = -(lc.log_softmax(-1).gather(-1, c[..., None]).mean()
                 + lf.log_softmax(-1).gather(-1, f[..., None]).mean())
        torch.testing.assert_close(m.loss(wav, cond), want)
    with pytest.raises(ValueError, match="hop_length"):
        m.loss(wav[:, :-1], cond)


def test_from_config_and_prune():
    m = build_vocoder("wavernn", {"hidden": 16, "cond_channels": 4}, 7)
    assert m.hidden == 16 and m.cond_dim == 7 and m.hop_length == 80
    magnitude_prune(m, 0.75)
    for w in (m.R, m.O1.weight, m.O2.weight, m.O3.weight, m.O4.weight):
        assert (w == 0).sum().item() == int(0.75 * w.numel())
    with pytest.raises(ValueError):
        WaveRNN(3, hidden=15)
    assert torch.equal(byte_to_input(torch.tensor([0, 255])), torch.tensor([-1.0, 1.0]))


def test_cuda_graph_frame_loop_equals_reference_on_cpu():
    m = small_model()
    _, cond = inputs(B=3, T=5)
    w = gen.gen_weights(m)
    P = pad_frames(m.cond_projection(cond)).detach()
    u = torch.rand(3, 5 * HOP, 2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(gen.run_cuda_graph(w, P, u, HOP, capture=False), gen.run_reference(w, P, u, HOP))


@pytest.mark.cuda
def test_cuda_graph_equals_torch():
    m = small_model().cuda()
    _, cond = inputs(B=3, T=4)
    cond = cond.cuda()
    w = gen.gen_weights(m)
    P = pad_frames(m.cond_projection(cond)).detach()
    u = torch.rand(3, 4 * HOP, 2, device="cuda")
    ref = gen.run_reference(w, P, u, HOP)
    assert (gen.run_cuda_graph(w, P, u, HOP) == ref).float().mean() > 0.99
