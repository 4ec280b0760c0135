"""Gradual block pruning and the block-sparse generation kernels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sps.vocoders.pruning import GradualPruning, block_mask, cubic_sparsity
from sps.vocoders.wavernn import WaveRNN
from sps.vocoders.wavernn import native

needs_native = pytest.mark.skipif(native.library() is None, reason="no C compiler (or SPS_NO_NATIVE=1)")


pytestmark = pytest.mark.usefixtures("one_thread")


def test_cubic_schedule():
    assert cubic_sparsity(0, 0.9, 10, 110) == 0.0 and cubic_sparsity(110, 0.9, 10, 110) == 0.9
    assert cubic_sparsity(500, 0.9, 10, 110) == 0.9
    assert cubic_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    s = [cubic_sparsity(t, 0.95, 0, 100) for t in range(101)]
    assert all(b >= a for a, b in zip(s, s[1:]))                          # monotonic


@pytest.mark.parametrize("block", [(16, 1), (4, 4)])
def test_block_mask_keeps_the_largest_blocks(block):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, generator=g)
    m = block_mask(w, 0.75, block)
    br, bc = block
    blocks = m.reshape(64 // br, br, 32 // bc, bc)
    assert torch.all((blocks == blocks[:, :1, :, :1]))                     # whole blocks
    kept = blocks[:, 0, :, 0]
    assert kept.sum() == round(0.25 * kept.numel())
    norms = w.reshape(64 // br, br, 32 // bc, bc).square().sum((1, 3))
    assert norms[kept == 1].min() >= norms[kept == 0].max()               # brute force: the largest kept


def test_block_csr_round_trip():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(48, 20, generator=g) * block_mask(torch.randn(48, 20, generator=g), 0.7, (16, 1))
    ptr, idx, val = native.block_csr(w, bf16=False)
    dense = torch.zeros_like(w)
    for r in range(48 // 16):
        for j in range(int(ptr[r]), int(ptr[r + 1])):
            dense[16 * r:16 * r + 16, int(idx[j])] = val[j]
    assert torch.equal(dense, w)
    assert native.block_density(w) == pytest.approx(len(idx) / (3 * 20))


def _pruned_wavernn(H=64, sparsity=0.85, block=(16, 1)):
    torch.manual_seed(0)
    m = WaveRNN(5, hidden=H, cond_channels=8, cond_kernel=3, hop_length=10).eval()
    with torch.no_grad():
        for w in (m.R, m.O1.weight, m.O2.weight, m.O3.weight, m.O4.weight):
            w.mul_(block_mask(w, sparsity, block))
        m.O2.weight.mul_(6)
        m.O4.weight.mul_(6)
    return m


@needs_native
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("fold", [False, True])
def test_sparse_kernel_matches_dense_draw_for_draw(precision, fold):
    m = _pruned_wavernn()
    cond = torch.randn(3, 12, 5)
    kw = dict(backend="native", precision=precision, fold=fold, fold_frames=4, warmup_frames=2, overlap_frames=1)
    dense = m.generate(cond, generator=torch.Generator().manual_seed(7), sparse=False, **kw)
    sparse = m.generate(cond, generator=torch.Generator().manual_seed(7), sparse=True, **kw)
    auto = m.generate(cond, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(dense, sparse) and torch.equal(sparse, auto)
    ref = m.generate(cond, generator=torch.Generator().manual_seed(7), backend="torch", precision=precision,
                     fold=fold, fold_frames=4, warmup_frames=2, overlap_frames=1)
    assert (ref == sparse).float().mean() > 0.99


@needs_native
def test_sparse_kernel_serves_the_lpc_wavernn():
    from sps.vocoders import build_vocoder
    torch.manual_seed(0)
    feats = {"sample_rate": 8000, "alpha": 0.31, "mgc": [0, 6], "lf0": 6, "vuv": 7}
    m = build_vocoder("wavernn_lpc", {"features": feats, "hidden": 32, "cond_channels": 8, "hop_length": 20,
                                      "order": 4}, 9).eval()
    with torch.no_grad():
        for w in (m.R, m.O1.weight, m.O2.weight):
            w.mul_(block_mask(w, 0.8, (16, 1)))
        m.O2.weight.mul_(6)
    cond = torch.randn(2, 6, 9)
    u = torch.rand(2, 120, generator=torch.Generator().manual_seed(2))
    a = m.generate(cond, uniforms=u, backend="native", sparse=False)
    b = m.generate(cond, uniforms=u, backend="native", sparse=True)
    assert torch.equal(a, b)
    # and the sparse kernel against the PyTorch loop, in float32 and bfloat16 (same draws)
    for precision in ("float32", "bfloat16"):
        ref, qr = m.generate(cond, uniforms=u, backend="torch", precision=precision, return_excitation=True)
        got, qn = m.generate(cond, uniforms=u, backend="native", precision=precision, sparse=True,
                             return_excitation=True)
        assert (qr == qn).float().mean() > 0.995, precision
        if precision == "float32":
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3)


class _Data(torch.utils.data.Dataset):
    def __init__(self, n=12):
        g = torch.Generator().manual_seed(3)
        self.items = [(torch.rand(40, generator=g) * 0.4 - 0.2, torch.randn(4, 5, generator=g)) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _collate(items):
    return {"wav": torch.stack([w for w, _ in items]), "cond": torch.stack([c for _, c in items])}


def _fit(out_dir, max_steps, resume=False):
    from sps.train import fit
    torch.manual_seed(0)
    m = WaveRNN(5, hidden=32, cond_channels=8, cond_kernel=3, hop_length=10)
    hook = GradualPruning({"R": m.R, "O1": m.O1.weight}, target=0.75, start=2, end=8, every=2)
    cfg = dict(batch_size=4, lr=1e-2, max_steps=max_steps, checkpoint_every=5, plot=False, log_every=1,
               bucket=False, device="cpu")
    fit(m, lambda model, b: model.loss(b["wav"], b["cond"]), _Data(), None, out_dir, cfg, collate_fn=_collate,
        resume=resume, hooks=[hook])
    return m, hook


def test_gradual_pruning_reaches_the_target_and_resumes_exactly(tmp_path):
    full, hook = _fit(tmp_path / "a", 12)
    for w in (full.R, full.O1.weight):
        assert native.block_density(w) == pytest.approx(0.25, abs=0.01)     # 75 % of the blocks are zero
    # interrupted at step 5 (mid-schedule), resumed: the same weights and masks
    _fit(tmp_path / "b", 5)
    resumed, hook_b = _fit(tmp_path / "b", 12, resume=True)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(torch.equal(hook.masks[k], hook_b.masks[k]) for k in hook.masks)


def test_best_checkpoint_waits_for_the_target_sparsity(tmp_path):
    from sps.train import load_checkpoint
    _fit(tmp_path / "a", 12)
    best = WaveRNN(5, hidden=32, cond_channels=8, cond_kernel=3, hop_length=10)
    load_checkpoint(tmp_path / "a" / "best.pt", best)
    # the dense early model validates best (no validation set: the train loss), but is not eligible
    assert native.block_density(best.R) == pytest.approx(0.25, abs=0.01)


def test_one_shot_magnitude_pruning_with_blocks():
    from sps.vocoders.wavernn import magnitude_prune
    torch.manual_seed(0)
    m = WaveRNN(5, hidden=32, cond_channels=8, cond_kernel=3, hop_length=10)
    before = {k: w.detach().clone() for k, w in m.prunable().items()}
    magnitude_prune(m, 0.5, block=(16, 1))
    for k, w in m.prunable().items():
        assert native.block_density(w) == pytest.approx(0.5, abs=0.02), k
        kept = w != 0
        assert torch.equal(w[kept], before[k][kept])          # survivors untouched
    magnitude_prune(m, 0.9)                                   # single weights by |w|
    assert (m.R == 0).float().mean() == pytest.approx(0.9, abs=0.01)


def test_pruning_config_errors():
    from sps.config import ConfigError, bind
    from sps.stages.vocoder import VocoderTrainConfig
    from sps.vocoders.pruning import PruningConfig, pruning_hook
    from sps.vocoders.wavenet import WaveNet
    m = WaveRNN(5, hidden=32, cond_channels=8, cond_kernel=3, hop_length=10)
    assert pruning_hook(m, PruningConfig()) is None
    cfg = bind(VocoderTrainConfig, {"prune": {"target": 0.9, "start": 10, "end": 20, "block": [4, 4]}})
    hook = pruning_hook(m, cfg.prune)
    assert set(hook.params) == {"R", "O1", "O2", "O3", "O4"} and hook.block == (4, 4)
    with pytest.raises(ConfigError, match="prune.target"):
        bind(VocoderTrainConfig, {"prune": {"target": 1.0}})
    with pytest.raises(ConfigError, match="start <= end"):
        bind(VocoderTrainConfig, {"prune": {"target": 0.5, "start": 20, "end": 10}})
    with pytest.raises(ValueError, match="no prunable matrix 'W'"):
        pruning_hook(m, PruningConfig(target=0.5, end=5, matrices=("W",)))
    with pytest.raises(ValueError, match=r"O1 \(16 x 16\) does not split"):
        pruning_hook(m, PruningConfig(target=0.5, end=5, block=(3, 1)))
    with pytest.raises(ValueError, match="has no prunable matrices"):
        pruning_hook(WaveNet(5, layers=2, max_dilation=2, upsample_scales=(), hop_length=4),
                     PruningConfig(target=0.5, end=5))                 # the protocol's default: none


@needs_native
def test_stage_trains_a_pruned_wavernn_and_vocodes_it_sparse(tmp_path):
    pytest.importorskip("soundfile", reason="needs soundfile (the stage writes wavs)")
    from test_wavenet import make_exp
    from sps.io import read_wav
    from sps.stages import vocoder as stage
    from sps.stages.runner import StageContext
    exp, spec, hop = make_exp(tmp_path)
    cfg = {"vocoder": "wavernn", "name": "rnn",
           "model": {"hidden": 32, "cond_channels": 4, "cond_kernel": 3},
           "train": {"segment_frames": 4, "batch_size": 2, "max_steps": 8, "checkpoint_every": 4,
                     "log_every": 1, "plot": False, "device": "cpu",
                     "prune": {"target": 0.8, "start": 2, "end": 6, "every": 2, "matrices": ["R", "O1"]}},
           "vocode": {"batch_size": 2, "metrics": False, "max_utts": 1}}
    stage.train(StageContext(exp_dir=exp, config=cfg))
    model = stage.load_vocoder(stage.Experiment(exp), "rnn", stage.Experiment(exp).conditioning(),
                               torch.device("cpu"))
    assert native.block_density(model.R) == pytest.approx(0.2, abs=0.02)
    assert native.block_density(model.O1.weight) == pytest.approx(0.2, abs=0.07)
    assert native.block_density(model.O3.weight) == 1.0                   # not named: dense
    stage.vocode(StageContext(exp_dir=exp, config=cfg))
    x, _ = read_wav(exp / "synth" / "rnn_copy" / "eval" / "eval_0.wav")
    assert np.isfinite(x).all() and np.abs(x).max() > 0
