"""WaveNet vocoder: causality, incremental == full forward, nv-wavenet layout, C == torch,
training, and the generic vocoder recipe stages on a tiny synthetic experiment."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sps.vocoders import get_vocoder
from sps.dsp import mu_law_decode, mu_law_encode
from sps.vocoders.wavenet import WaveNet, dilations
from sps.vocoders.wavenet.generate import generate
from sps.vocoders.wavenet.native import library as native_lib

HOP = 8


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(cond_dim=5, *, layers=6, max_dilation=4, tanh=True, scales=(2, 4), seed=0, **kw) -> WaveNet:
    torch.manual_seed(seed)
    model = WaveNet(cond_dim, hop_length=HOP, out_channels=32, residual_channels=8, skip_channels=12,
                    layers=layers, max_dilation=max_dilation, cond_channels=6, upsample_scales=scales,
                    use_embed_tanh=tanh, **kw)
    # larger output weights than the init: peaky distributions exercise sampling better
    with torch.no_grad():
        model.conv_end.weight.mul_(3.0)
    return model.eval()


needs_native = pytest.mark.skipif(native_lib() is None, reason="no C compiler / SPS_NO_NATIVE=1")


def test_registry_and_mu_law():
    assert get_vocoder("wavenet") is WaveNet
    with pytest.raises(ValueError, match="unknown vocoder"):
        get_vocoder("nope")
    x = torch.linspace(-1, 1, 1001)
    q = mu_law_encode(x, 256)
    mu = 255.0
    ref = np.floor((np.sign(x.numpy()) * np.log1p(mu * np.abs(x.numpy())) / np.log1p(mu) + 1) / 2 * mu + 0.5)
    assert torch.equal(q, torch.from_numpy(ref).long())
    assert mu_law_encode(torch.zeros(1)).item() == 128
    # decoding the class centres is the exact inverse of the companding curve
    f = 2 * np.arange(256) / mu - 1
    assert np.allclose(mu_law_decode(torch.arange(256)).numpy(),
                       np.sign(f) * ((1 + mu) ** np.abs(f) - 1) / mu, atol=1e-6)
    assert torch.equal(mu_law_encode(mu_law_decode(torch.arange(256))), torch.arange(256))


def test_dilations_follow_nv_wavenet():
    assert dilations(20, 512) == [2 ** (i % 10) for i in range(20)]
    assert dilations(7, 300) == [1, 2, 4, 8, 16, 32, 64]
    assert dilations(11, 4) == [1, 2, 4, 1, 2, 4, 1, 2, 4, 1, 2]
    assert tiny().receptive_field == 2 + sum([1, 2, 4, 1, 2, 4])


def test_causality():
    model = tiny()
    cond = torch.randn(2, 12, 5)
    y = torch.randint(0, 32, (2, 12 * HOP))
    base = model(y, cond)
    assert base.shape == (2, 32, 12 * HOP)
    for k in (0, 17, 50, 90):
        y2 = y.clone()
        y2[:, k:] = torch.randint(0, 32, y2[:, k:].shape)
        out = model(y2, cond)
        assert torch.equal(out[..., :k + 1], base[..., :k + 1])   # y[k] only reaches t > k
        assert not torch.allclose(out[..., k + 1:], base[..., k + 1:])


@pytest.mark.parametrize("tanh", [True, False])
def test_incremental_matches_full_forward(tanh):
    """Logits of each generated step equal the teacher-forced forward on the generated samples."""
    from sps.vocoders.wavenet.generate import Packed, TorchState
    model = tiny(tanh=tanh, layers=7, max_dilation=8)
    B, T = 2, 9
    cond = torch.randn(B, T, 5)
    P = Packed(model, torch.device("cpu"))
    state = TorchState(P, B, torch.device("cpu"), 1.0, False)
    state.record = []
    u = torch.rand(B, T * HOP, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ups = model.upsample(cond)
        N = T * HOP
        y = torch.cat([state.run(P.cond_chunk(ups, t0, min(N, t0 + 20)), u[:, t0:t0 + 20], t0)
                       for t0 in range(0, N, 20)], 1)
        full = model(y, cond)
    inc = torch.stack(state.record, -1)
    assert torch.allclose(inc, full, atol=2e-5, rtol=1e-4)
    # and the samples follow the inverse-CDF rule on those distributions
    cum = torch.softmax(full, 1).cumsum(1)
    expect = (cum <= u[:, None, :]).sum(1).clamp(max=31)
    assert torch.equal(y, expect)


def test_nv_wavenet_round_trip():
    model = tiny(layers=5)
    weights, cond_fn = model.to_nv_wavenet()
    R, S, A, L = 8, 12, 32, 5
    assert weights["embedding_prev"].shape == (A, R) and weights["embedding_curr"].shape == (A, R)
    assert weights["conv_out_weight"].shape == (A, S, 1) and weights["conv_end_weight"].shape == (A, A, 1)
    assert len(weights["dilate_weights"]) == L and weights["dilate_weights"][0].shape == (2 * R, R, 2)
    assert len(weights["res_weights"]) == L - 1 and weights["res_weights"][0].shape == (R, R, 1)
    assert weights["skip_weights"][0].shape == (S, R, 1) and weights["max_dilation"] == 4
    cond = torch.randn(3, 7, 5)
    ci = cond_fn(cond)
    assert ci.shape == (2 * R, 3, L, 7 * HOP)
    other = WaveNet.from_nv_wavenet(weights, 5, hop_length=HOP, cond_channels=6, upsample_scales=(2, 4))
    other.upsample.load_state_dict(model.upsample.state_dict())
    other.cond_proj.load_state_dict(model.cond_proj.state_dict())
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    # nv-wavenet pads res_weights with an unused last layer: accepted
    padded = dict(weights, res_weights=weights["res_weights"] + [torch.zeros(R, R, 1)],
                  res_biases=weights["res_biases"] + [torch.zeros(R)])
    tiny(layers=5, seed=9).load_nv_wavenet(padded)
    with pytest.raises(ValueError, match="embedding_curr"):
        tiny(layers=5).load_nv_wavenet(dict(weights, embedding_curr=torch.zeros(A, R + 1)))


def nv_reference_generate(w: dict, cond_input: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Straightforward nv-wavenet-layout generator (plain loops, float64).

    cond_input (2R, B, L, N), u (B, N) -> classes (B, N). Written from the layout
    description: x0 = act(E_prev[y[t-2]] + E_curr[y[t-1]]) with y[<0] = A/2; per layer
    h = W[:, :, 0] x[t-d] + W[:, :, 1] x[t] + b + cond; z = tanh(h[:R]) sigmoid(h[R:]);
    skip += W_skip z + b_skip; x += W_res z + b_res (not after the last layer); then
    softmax(W_end relu(W_out relu(skip))) and the first class with u < cumulative p.
    """
    f = {k: (v.double().numpy() if torch.is_tensor(v) else
             [t.double().numpy() for t in v] if isinstance(v, list) else v) for k, v in w.items()}
    twoR, B, L, N = cond_input.shape
    R = twoR // 2
    A = f["embedding_curr"].shape[0]
    dil, d = [], 1
    for _ in range(L):
        dil.append(d)
        d *= 2
        if d > f["max_dilation"]:
            d = 1
    out = np.zeros((B, N), dtype=np.int64)
    for b in range(B):
        hist = [[None] * N for _ in range(L)]           # layer inputs x_l[t]
        yp = yc = A // 2
        for t in range(N):
            x = f["embedding_prev"][yp] + f["embedding_curr"][yc]
            if f["use_embed_tanh"]:
                x = np.tanh(x)
            skip = np.zeros(f["skip_weights"][0].shape[0])
            for l in range(L):
                hist[l][t] = x
                xd = hist[l][t - dil[l]] if t >= dil[l] else np.zeros(R)
                W = f["dilate_weights"][l]
                h = W[:, :, 0] @ xd + W[:, :, 1] @ x + f["dilate_biases"][l] + cond_input[:, b, l, t]
                z = np.tanh(h[:R]) / (1 + np.exp(-h[R:]))
                skip = skip + f["skip_weights"][l][:, :, 0] @ z + f["skip_biases"][l]
                if l < L - 1:
                    x = x + f["res_weights"][l][:, :, 0] @ z + f["res_biases"][l]
            a = f["conv_out_weight"][:, :, 0] @ np.maximum(skip, 0)
            logits = f["conv_end_weight"][:, :, 0] @ np.maximum(a, 0)
            p = np.exp(logits - logits.max())
            p /= p.sum()
            cum, y = 0.0, A - 1
            for k in range(A):
                cum += p[k]
                if u[b, t] < cum:
                    y = k
                    break
            out[b, t] = y
            yp, yc = yc, y
    return out


@pytest.mark.parametrize("backend", ["torch", pytest.param("native", marks=needs_native)])
def test_generate_matches_nv_layout_reference(backend):
    model = tiny(layers=6, max_dilation=4)
    B, T = 2, 12
    cond = torch.randn(B, T, 5)
    weights, cond_fn = model.to_nv_wavenet()
    u = torch.rand(B, T * HOP, generator=torch.Generator().manual_seed(7))
    ref = nv_reference_generate(weights, cond_fn(cond).double().numpy(), u.double().numpy())
    # a model rebuilt from the exported weights generates the same samples from the same draws
    rebuilt = WaveNet.from_nv_wavenet(weights, 5, hop_length=HOP, cond_channels=6, upsample_scales=(2, 4))
    rebuilt.upsample.load_state_dict(model.upsample.state_dict())
    rebuilt.cond_proj.load_state_dict(model.cond_proj.state_dict())
    got = generate(rebuilt, cond, generator=torch.Generator().manual_seed(7), backend=backend,
                   return_classes=True)
    assert len(np.unique(ref)) > 5                                 # really sampling, not constant
    assert np.array_equal(got.numpy(), ref)


@needs_native
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("temperature,argmax", [(1.0, False), (0.6, False), (1.0, True)])
def test_native_equals_torch(temperature, argmax, precision):
    model = tiny(layers=7, max_dilation=8, scales=())
    cond = torch.randn(3, 11, 5)
    kw = dict(temperature=temperature, argmax=argmax, return_classes=True, precision=precision)
    a = generate(model, cond, generator=torch.Generator().manual_seed(1), backend="torch", **kw)
    b = generate(model, cond, generator=torch.Generator().manual_seed(1), backend="native", threads=1, **kw)
    assert torch.equal(a, b)
    # two threads: groups of streams (B = 3), or splitting the weight rows (B = 1, partial
    # sums combined in another order); each utterance alone gives the same samples
    c = generate(model, cond, generator=torch.Generator().manual_seed(1), backend="native", threads=2, **kw)
    assert torch.equal(a, c)
    u = torch.rand(3, 11 * HOP, generator=torch.Generator().manual_seed(1))
    d = generate(model, cond[1:2], uniforms=u[1:2], backend="native", threads=2, **kw)
    assert torch.equal(d[0], a[1])


@needs_native
def test_native_chunks_and_lengths(monkeypatch):
    """Chunked conditioning and ring buffers carry state across calls; lengths zero the tail."""
    import sps.vocoders.wavenet.generate as gen_mod
    model = tiny(layers=6, max_dilation=4)
    cond = torch.randn(2, 10, 5)
    whole = generate(model, cond, torch.tensor([10, 6]), generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(gen_mod, "CHUNK_FLOATS", 2 * 6 * 16 * 7)   # 7-sample chunks
    pieces = generate(model, cond, torch.tensor([10, 6]), generator=torch.Generator().manual_seed(5))
    assert torch.equal(whole, pieces)
    assert whole.shape == (2, 80) and torch.all(whole[1, 48:] == 0) and whole[1, :48].abs().sum() > 0
    assert whole.abs().max() <= 1.0


def test_generate_bad_input():
    model = tiny()
    with pytest.raises(ValueError, match="cond must have shape"):
        model.generate(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.randn(1, 4, 5), temperature=0.0)
    with pytest.raises(ValueError, match="unknown backend"):
        model.generate(torch.randn(1, 4, 5), backend="gpu")
    with pytest.raises(ValueError, match="needs CUDA"):
        model.generate(torch.randn(1, 4, 5), backend="cuda_graph")
    for bad in ([5], [0], [4, 4]):                       # past T, empty, one too many
        with pytest.raises(ValueError, match="lengths"):
            model.generate(torch.randn(1, 4, 5), lengths=bad)


@pytest.mark.cuda
def test_cuda_graph_equals_torch():
    model = tiny(layers=6, max_dilation=4)
    cond = torch.randn(2, 70, 5)
    a = generate(model, cond, generator=torch.Generator().manual_seed(2), backend="torch", return_classes=True)
    b = generate(model.cuda(), cond.cuda(), generator=torch.Generator().manual_seed(2), backend="cuda_graph",
                 return_classes=True)
    assert (a == b.cpu()).float().mean() > 0.99


def test_training_reduces_loss():
    torch.manual_seed(0)
    model = tiny(layers=4, max_dilation=2).train()
    # a learnable signal: a sine whose frequency is given by the conditioning
    T = 16
    f = torch.rand(4, 1, 1) * 0.3 + 0.05
    cond = f.expand(4, T, 5).clone()
    wav = 0.5 * torch.sin(torch.arange(T * HOP)[None, :] * f[:, :, 0] * math.pi)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        loss = model.loss(wav, cond)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.85 * first
    assert all(p.grad is not None for p in model.parameters())


def test_build_from_config():
    from sps.vocoders import build_vocoder
    m = build_vocoder("wavenet", {"residual_channels": 4, "skip_channels": 6, "layers": 3, "max_dilation": 2,
                                  "out_channels": 16, "cond_channels": 3, "upsample_scales": [80]}, 7)
    assert (m.R, m.S, m.L, m.A, m.cond_dim) == (4, 6, 3, 16, 7)
    with pytest.raises(ValueError, match="unknown key 'residual'; did you mean 'residual_channels'"):
        build_vocoder("wavenet", {"residual": 4}, 7)
    with pytest.raises(ValueError, match="wavenet.model.layers: expected int"):
        build_vocoder("wavenet", {"layers": "many"}, 7)
    with pytest.raises(ValueError, match="multiply to"):
        build_vocoder("wavenet", {"upsample_scales": [4, 4]}, 7)


# ---------------------------------------------------------------------- recipe stages
def make_exp(tmp_path, sr=2000, n_utts=(3, 1, 2)):
    """A synthetic experiment: sines with a WORLD-like spec (static + delta columns)."""
    exp = tmp_path / "exp"
    hop = sr // 200
    streams = [("mgc", 4, 3), ("lf0", 1, 3), ("vuv", 1, 1), ("bap", 1, 3)]
    spec = {"kind": "out_acoustic", "sample_rate": sr, "frame_shift_ms": 5.0,
            "windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
            "streams": [], "analysis": {"f0_method": "dio", "f0_floor": 71.0, "f0_ceil": 400.0,
                                        "mgc_order": 3, "alpha": 0.1, "fft_size": None}}
    start = 0
    for name, d, w in streams:
        spec["streams"].append({"name": name, "start": start, "static_dim": d, "num_windows": w})
        start += d * w
    spec["dim"] = start
    (exp / "dump").mkdir(parents=True)
    (exp / "dump" / "out_acoustic.json").write_text(json.dumps(spec))
    (exp / "data").mkdir()
    rng = np.random.default_rng(0)
    allfeat = []
    for split, n in zip(("train", "dev", "eval"), n_utts):
        utts = [f"{split}_{i}" for i in range(n)]
        (exp / "data" / f"{split}.list").write_text("".join(u + "\n" for u in utts))
        for utt in utts:
            T = int(rng.integers(30, 50))
            f0 = rng.uniform(100, 200)
            t = np.arange(T * hop) / sr
            wav = (0.4 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)[:, None]
            feat = rng.normal(size=(T, spec["dim"])).astype(np.float32)
            feat[:, 12] = np.log(f0)      # lf0 static
            feat[:, 15] = rng.random(T) > 0.3   # vuv
            for kind, arr in (("wav", wav), ("out_acoustic", feat)):
                (exp / "dump" / split / kind).mkdir(parents=True, exist_ok=True)
                np.save(exp / "dump" / split / kind / f"{utt}.npy", arr)
            allfeat.append(feat)
    allfeat = np.concatenate(allfeat)
    (exp / "stats").mkdir()
    np.savez(exp / "stats" / "out_acoustic.npz", mean=allfeat.mean(0), std=allfeat.std(0),
             count=np.array(len(allfeat)))
    return exp, spec, hop


def stage_config(hop):
    return {"vocoder": "wavenet", "name": "wn",
            "model": {"residual_channels": 8, "skip_channels": 8, "layers": 4, "max_dilation": 4,
                      "out_channels": 32, "cond_channels": 4, "upsample_scales": [hop]},
            "train": {"segment_frames": 8, "batch_size": 2, "max_steps": 6, "lr": 3e-3,
                      "checkpoint_every": 3, "log_every": 1, "plot": False, "device": "cpu"},
            "vocode": {"batch_size": 2, "metrics": False}}


def test_stage_conditioning_and_segments(tmp_path):
    from sps.stages.datasets import SegmentDataset, collate_segments as collate
    from sps.stages.experiment import Experiment
    exp, spec, hop = make_exp(tmp_path)
    cond = Experiment(exp).conditioning()
    assert cond.hop_length == hop and cond.dim == 4 + 1 + 1 + 1
    assert list(cond.cols) == [0, 1, 2, 3, 12, 15, 16]
    feat = np.load(exp / "dump" / "train" / "out_acoustic" / "train_0.npy")
    with np.load(exp / "stats" / "out_acoustic.npz") as st:
        expect = (feat[:, cond.cols] - st["mean"][cond.cols]) / st["std"][cond.cols]
    assert np.allclose(cond(feat), expect, atol=1e-5)
    assert np.allclose(cond(feat[:, cond.cols]), expect, atol=1e-5)     # static layout accepted
    with pytest.raises(ValueError, match="expected"):
        cond(feat[:, :5], "x.npy")
    ds = SegmentDataset(Experiment(exp), "train", cond, 8, train=True)
    torch.manual_seed(0)
    wav, c = ds[0]
    assert wav.shape == (8 * hop,) and c.shape == (8, cond.dim)
    # the segment's features and samples come from the same frames
    full_wav = np.load(exp / "dump" / "train" / "wav" / "train_0.npy")[:, 0]
    normed = cond(feat)
    start = int(np.argmin(np.abs(normed[:len(normed) - 7, 0] - c[0, 0].item())))
    assert np.allclose(c.numpy(), normed[start:start + 8], atol=1e-6)
    assert np.array_equal(wav.numpy(), full_wav[start * hop:(start + 8) * hop])
    long = SegmentDataset(Experiment(exp), "train", cond, 100, train=False)
    w2, c2 = long[0]
    assert w2.shape == (100 * hop,) and c2.shape == (100, cond.dim)
    batch = collate([ds[0], ds[1]])
    assert batch["wav"].shape == (2, 8 * hop) and batch["cond"].shape == (2, 8, cond.dim)


def test_stage_train_and_vocode(tmp_path):
    pytest.importorskip("soundfile", reason="needs soundfile (the stage writes wavs)")
    from sps.stages import vocoder as stage
    from sps.stages.experiment import Experiment
    from sps.stages.runner import StageContext
    exp, spec, hop = make_exp(tmp_path)
    cfg = stage_config(hop)
    result = stage.train(StageContext(exp_dir=exp, config=cfg))
    mdir = exp / "models" / "wn"
    assert result["step"] == 6 and (mdir / "best.pt").exists() and (mdir / "config.yaml").exists()
    log = [json.loads(l) for l in (mdir / "log.jsonl").read_text().splitlines()]
    train_losses = [r["train_loss"] for r in log if "train_loss" in r]
    assert train_losses[-1] < train_losses[0]
    # acoustic-model output (static layout, de-normalised) for one eval utterance
    (exp / "synth" / "am" / "eval").mkdir(parents=True)
    cond_cols = Experiment(exp).conditioning().cols
    nat = np.load(exp / "dump" / "eval" / "out_acoustic" / "eval_1.npy")
    np.save(exp / "synth" / "am" / "eval" / "eval_1.npy", nat[:, cond_cols])
    stage.vocode(StageContext(exp_dir=exp, config=cfg))
    from sps.io import read_wav
    for utt in ("eval_0", "eval_1"):
        x, sr = read_wav(exp / "synth" / "wn_copy" / "eval" / f"{utt}.wav")
        n = len(np.load(exp / "dump" / "eval" / "out_acoustic" / f"{utt}.npy"))
        assert sr == 2000 and len(x) == n * hop and np.abs(x).max() > 0
    x, _ = read_wav(exp / "synth" / "am_wn" / "eval" / "eval_1.wav")
    assert len(x) == len(nat) * hop
    assert not (exp / "synth" / "am_wn" / "eval" / "eval_0.wav").exists()
    # rerun: everything is done already; --force regenerates
    before = (exp / "synth" / "wn_copy" / "eval" / "eval_0.wav").stat().st_mtime_ns
    stage.vocode(StageContext(exp_dir=exp, config=cfg))
    assert (exp / "synth" / "wn_copy" / "eval" / "eval_0.wav").stat().st_mtime_ns == before


def test_stage_metrics(tmp_path):
    """Vocoded wavs are scored like WORLD copy synthesis (re-analysis against natural features)."""
    pytest.importorskip("pyworld")
    pytest.importorskip("pysptk")
    from sps.features import FeatureConfig, world_features
    from sps.stages.evaluate import write_system_metrics
    from sps.stages.experiment import Experiment
    from sps.io import write_wav
    sr = 16000
    exp, spec, hop = make_exp(tmp_path, sr=sr, n_utts=(1, 1, 1))
    # natural features = WORLD analysis of a harmonic signal; the "generated" wav is the same
    t = np.arange(40 * hop) / sr
    rng = np.random.default_rng(1)
    wav = sum(0.3 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 30)) + 0.01 * rng.normal(size=t.size)
    fc = FeatureConfig(sample_rate=sr, f0_method="dio", f0_floor=71.0, f0_ceil=400.0, mgc_order=3,
                       alpha=0.1)
    s = world_features(wav, fc)
    nat = np.zeros((len(s["mgc"]), spec["dim"]), dtype=np.float32)
    nat[:, 0:4], nat[:, 12], nat[:, 15], nat[:, 16] = s["mgc"], s["lf0"][:, 0], s["vuv"][:, 0], s["bap"][:, 0]
    np.save(exp / "dump" / "eval" / "out_acoustic" / "eval_0.npy", nat)
    write_wav(exp / "synth" / "x" / "eval" / "eval_0.wav", wav, sr)
    mean = write_system_metrics(Experiment(exp), "x", "eval", source="audio")
    saved = json.loads((exp / "eval" / "x" / "eval" / "metrics.json").read_text())
    assert saved["num_utterances"] == 1 and set(mean) >= {"mcd_db", "f0_rmse_hz", "vuv_error_pct"}
    # same waveform (16-bit rounding only) -> near-zero distortion
    assert mean["mcd_db"] < 0.5 and mean["vuv_error_pct"] < 5 and mean["f0_rmse_hz"] < 2.0
    # a waveform 30 Hz higher: F0 RMSE about 30 Hz
    wav2 = sum(0.3 / k * np.sin(2 * np.pi * 180 * k * t) for k in range(1, 30)) + 0.01 * rng.normal(size=t.size)
    write_wav(exp / "synth" / "x" / "eval" / "eval_0.wav", wav2, sr)
    mean2 = write_system_metrics(Experiment(exp), "x", "eval", source="audio")
    assert 20.0 < mean2["f0_rmse_hz"] < 40.0 and mean2["mcd_db"] > mean["mcd_db"]


def test_stage_preemphasis_segments_and_deemphasised_output(tmp_path, monkeypatch):
    """Training targets are the pre-emphasised waveform (scipy reference, exact at segment
    starts); vocoded audio is de-emphasised with the coefficient saved with the model."""
    pytest.importorskip("soundfile", reason="needs soundfile (the stage writes wavs)")
    from scipy.signal import lfilter as sp_lfilter
    from sps.stages import vocoder as stage
    from sps.stages.datasets import SegmentDataset
    from sps.stages.experiment import Experiment
    from sps.stages.runner import StageContext
    exp, spec, hop = make_exp(tmp_path)
    cond = Experiment(exp).conditioning()
    ds = SegmentDataset(Experiment(exp), "train", cond, 8, train=True, preemphasis=0.9)
    full = np.load(exp / "dump" / "train" / "wav" / "train_0.npy")[:, 0].astype(np.float64)
    emphasised = sp_lfilter([1.0, -0.9], [1.0], full)
    torch.manual_seed(3)
    for _ in range(5):
        w, c = ds[0]
        normed = cond(np.load(exp / "dump" / "train" / "out_acoustic" / "train_0.npy"))
        start = int(np.argmin(np.abs(normed[:len(normed) - 7, 0] - c[0, 0].item())))
        np.testing.assert_allclose(w.numpy(), emphasised[start * hop:(start + 8) * hop], atol=1e-6)
    cfg = stage_config(hop)
    cfg["model"] = {**cfg["model"], "preemphasis": 0.9}     # the one place pre-emphasis is set
    with pytest.raises(ValueError, match="model.preemphasis"):
        stage.vocoder_config({**cfg, "preemphasis": 0.9})
    cfg["train"] = {**cfg["train"], "max_steps": 2}
    stage.train(StageContext(exp_dir=exp, config=cfg))
    model = stage.load_vocoder(Experiment(exp), "wn", cond, torch.device("cpu"))
    assert model.preemphasis == 0.9 and model.target_preemphasis == 0.9
    raw = []
    real_generate = type(model).generate

    def spy(self, *args, **kwargs):
        out = real_generate(self, *args, **kwargs)
        raw.extend(out.detach().clone())
        return out
    monkeypatch.setattr(type(model), "generate", spy)
    monkeypatch.setattr(stage, "load_vocoder", lambda *a, **k: model)
    stage.vocode(StageContext(exp_dir=exp, config=cfg))
    from sps.io import read_wav
    # one of the rows generated (every call's) is eval_0's, before de-emphasis
    x, _ = read_wav(exp / "synth" / "wn_copy" / "eval" / "eval_0.wav")
    expect = [sp_lfilter([1.0], [1.0, -0.9], row.numpy().astype(np.float64))[:len(x)] for row in raw]
    assert any(np.max(np.abs(np.clip(e, -1, 1) - x)) < 2.0 / 32768 for e in expect)


def test_stage_export_and_init_from(tmp_path):
    """A trained vocoder exports to one weights-only file; a new run starts from it
    (weights equal before its first step); another architecture is refused by name."""
    from sps.stages import vocoder as stage
    from sps.stages.experiment import Experiment
    from sps.stages.runner import StageContext
    from sps.train import load_checkpoint, read_checkpoint
    exp, spec, hop = make_exp(tmp_path)
    cfg = stage_config(hop)
    stage.train(StageContext(exp_dir=exp, config=cfg))
    out = tmp_path / "pretrained" / "wn.pt"
    stage.export(StageContext(exp_dir=exp, config={**cfg, "out": str(out)}))
    payload = read_checkpoint(out)                               # weights_only load
    assert set(payload) == {"model", "metadata", "step"} and payload["metadata"]["vocoder"] == "wavenet"
    trained = load_checkpoint(exp / "models" / "wn")["model"]
    assert all(torch.equal(trained[k], payload["model"][k]) for k in trained)
    # a new model from the file: one step at a vanishing learning rate keeps the weights
    cfg2 = {**cfg, "name": "wn2", "init_from": str(out),
            "train": {**cfg["train"], "max_steps": 1, "lr": 1e-12, "checkpoint_every": 1}}
    stage.train(StageContext(exp_dir=exp, config=cfg2))
    tuned = load_checkpoint(exp / "models" / "wn2")["model"]
    for k, v in trained.items():
        torch.testing.assert_close(tuned[k], v, atol=1e-6, rtol=0), k
    cfg3 = {**cfg2, "name": "wn3", "model": {**cfg["model"], "residual_channels": 4}}
    with pytest.raises(ValueError, match="different architecture"):
        stage.train(StageContext(exp_dir=exp, config=cfg3))
    with pytest.raises(FileNotFoundError, match="init_from nowhere"):
        stage.train(StageContext(exp_dir=exp, config={**cfg2, "name": "wn4", "init_from": "nowhere"}))
    assert Experiment(exp).model_dir("wn").exists()


def test_stage_vocodes_with_the_classical_vocoder_without_training(tmp_path):
    pytest.importorskip("soundfile", reason="needs soundfile (the stage writes wavs)")
    from sps.io import read_wav
    from sps.stages import vocoder as stage
    from sps.stages.runner import StageContext
    exp, spec, hop = make_exp(tmp_path)
    cfg = {"vocoder": "source_filter", "name": "sf", "model": {"order": 4, "mixed": True},
           "vocode": {"batch_size": 2, "metrics": False}}
    with pytest.raises(ValueError, match="nothing to train"):
        stage.train(StageContext(exp_dir=exp, config=cfg))
    stage.vocode(StageContext(exp_dir=exp, config=cfg))
    x, sr = read_wav(exp / "synth" / "sf_copy" / "eval" / "eval_0.wav")
    n = len(np.load(exp / "dump" / "eval" / "out_acoustic" / "eval_0.npy"))
    assert sr == 2000 and len(x) == n * hop and np.isfinite(x).all() and np.abs(x).max() > 0


def test_ground_truth_aligned_segments(tmp_path):
    """Generated-feature segments line up with the natural waveform hop-exactly; a missing,
    non-finite or misaligned generated file is named and its utterance left out."""
    from sps.stages.datasets import SegmentDataset
    from sps.stages.experiment import Experiment
    exp, spec, hop = make_exp(tmp_path, n_utts=(6, 1, 1))
    e = Experiment(exp)
    cond = e.conditioning()
    gen_dir = exp / "synth" / "am" / "train"
    gen_dir.mkdir(parents=True)
    utts = e.utterances("train")
    for utt in utts:
        nat = np.load(e.dump_path("train", "out_acoustic", utt))
        gen = nat[:, cond.cols].copy()
        gen[:, 0] = np.arange(len(gen))            # frame index, readable after normalisation
        np.save(gen_dir / f"{utt}.npy", gen.astype(np.float32))
        n = len(nat) * hop                          # waveform: its own sample index
        np.save(e.dump_path("train", "wav", utt), (np.arange(n) / 1e5).astype(np.float32)[:, None])
    bad = {utts[1]: "not found", utts[2]: "non-finite", utts[3]: "natural durations"}
    (gen_dir / f"{utts[1]}.npy").unlink()
    g = np.load(gen_dir / f"{utts[2]}.npy"); g[3, 1] = np.nan; np.save(gen_dir / f"{utts[2]}.npy", g)
    g = np.load(gen_dir / f"{utts[3]}.npy"); np.save(gen_dir / f"{utts[3]}.npy", np.concatenate([g, g]))
    ds = SegmentDataset(e, "train", cond, 8, train=True, features=gen_dir)
    assert sorted(ds.failed) == sorted(bad)
    for utt, why in bad.items():
        assert f"{utt}.npy" in ds.failed[utt] and why in ds.failed[utt]
    assert [u for u, _, _ in ds.items] == [u for u in utts if u not in bad]
    mean, std = cond.mean[0], cond.std[0]
    torch.manual_seed(1)
    for i in range(len(ds)):
        for _ in range(3):
            wav, c = ds[i]
            frames = np.rint(c[:, 0].numpy() * std + mean).astype(int)
            assert np.array_equal(frames, frames[0] + np.arange(8))
            expect = (frames[0] * hop + np.arange(8 * hop)) / 1e5
            assert np.allclose(wav.numpy(), expect, rtol=0, atol=1e-7)
    noisy = SegmentDataset(e, "train", cond, 8, train=True, features=gen_dir, cond_noise=0.5)
    torch.manual_seed(2); w1, c1 = ds[0]
    torch.manual_seed(2); w2, c2 = noisy[0]
    assert torch.equal(w1, w2) and 0.3 < float((c2 - c1).std()) < 0.7
    assert noisy.digest != ds.digest
    from sps.stages.vocoder import VocoderTrainConfig, generated_features
    with pytest.raises(FileNotFoundError, match="no train synthesis of am .*sps synth"):
        generated_features(e, VocoderTrainConfig(features="generated", acoustic_model="am"))
    (gen_dir / "synth.json").write_text(json.dumps({"acoustic_model": "am", "durations": "oracle"}))
    (exp / "data" / "dev.list").unlink()
    assert generated_features(e, VocoderTrainConfig(features="generated", acoustic_model="am")) == {"train": gen_dir}
    assert generated_features(e, VocoderTrainConfig()) == {}


def test_bfloat16_packs_exactly_rounded_matrices():
    """precision="bfloat16" rounds the six stack matrices (round to nearest even, as torch)
    and nothing else; the kernel's bit patterns widen back to the same floats."""
    from sps.vocoders.wavenet.generate import Packed
    from sps.vocoders.wavenet.native import stack_weights
    model = tiny(layers=3, max_dilation=2)
    full, half = Packed(model, torch.device("cpu")), Packed(model, torch.device("cpu"), "bfloat16")
    for name in ("WprevT", "WcurT", "WresT", "WskipT", "WoutT", "WendT"):
        a, b = getattr(full, name), getattr(half, name)
        bits = a.numpy().view(np.uint32)
        lsb = (bits >> 16) & 1                                   # round half to even, by hand
        expect = ((bits + 0x7FFF + lsb) & 0xFFFF0000).view(np.float32)
        assert np.array_equal(b.numpy(), expect) and not torch.equal(a, b), name
    for name in ("Ep", "Ec", "bres", "bskip", "Wc", "bc"):
        assert torch.equal(getattr(full, name), getattr(half, name)), name
    w = stack_weights(half, Ep=half.Ep, Ec=half.Ec)
    assert w.bf16 == 1
    with pytest.raises(ValueError, match="precision"):
        Packed(model, torch.device("cpu"), "float16")
