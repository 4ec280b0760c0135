import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sps.models import ConvNet, FeedForward, RecurrentNet, build_model, gaussian_nll, masked_mse
from sps.train import pad_sequences

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "slt_festival"


# ---------------------------------------------------------------------------- unit tests

def test_build_model_shapes_and_errors():
    x = torch.randn(3, 11, 7)
    assert build_model({"type": "dnn", "hidden_dim": 16, "num_layers": 2}, 7, 5)(x).shape == (3, 11, 5)
    lstm = build_model({"type": "lstm", "hidden_dim": 16, "lstm_dim": 8, "num_layers": 2}, 7, 5)
    assert isinstance(lstm, RecurrentNet) and lstm(x, torch.tensor([11, 4, 9])).shape == (3, 11, 5)
    with pytest.raises(ValueError, match="model.type"):
        build_model({"type": "cnn"}, 7, 5)
    with pytest.raises(ValueError, match="activation"):
        FeedForward(7, 5, activation="swish")


@pytest.mark.parametrize("bidirectional", [True, False])
def test_lstm_padding_does_not_leak(bidirectional):
    torch.manual_seed(0)
    net = RecurrentNet(4, 3, hidden_dim=8, lstm_dim=6, num_layers=2, bidirectional=bidirectional).eval()
    seqs = [torch.randn(n, 4) for n in (9, 5, 2)]
    x, lengths = pad_sequences(seqs, value=100.0)  # loud padding: must not change real frames
    batched = net(x, lengths)
    for b, s in enumerate(seqs):
        single = net(s[None], torch.tensor([len(s)]))[0]
        torch.testing.assert_close(batched[b, :len(s)], single, rtol=1e-5, atol=1e-6)


def test_conv_config_checks():
    from sps.config import ConfigError, bind
    from sps.models import ModelConfig
    conv = build_model({"type": "conv", "hidden_dim": 8, "num_layers": 2, "dilations": [1, 3]}, 7, 5)
    assert isinstance(conv, ConvNet) and conv(torch.randn(2, 9, 7), torch.tensor([9, 3])).shape == (2, 9, 5)
    assert bind(ModelConfig, {"type": "conv", "num_layers": 2, "dilations": [1, 2]}).dilations == (1, 2)
    with pytest.raises(ConfigError, match="dilations"):
        bind(ModelConfig, {"type": "conv", "num_layers": 3, "dilations": [1, 2]})
    with pytest.raises(ConfigError, match="kernel_size"):
        bind(ModelConfig, {"type": "conv", "kernel_size": 4})


def _conv_reference(net: ConvNet, x: np.ndarray) -> np.ndarray:
    """ConvNet on one sequence [shape=(T, D_in)] by explicit loops over frames and taps (float64)."""
    P = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    lin = [k[:-len(".weight")] for k in P if k.startswith("pre.") and k.endswith(".weight")]
    h = x.astype(np.float64)
    for k in lin:
        h = np.maximum(h @ P[k + ".weight"].T + P[k + ".bias"], 0.0)   # relu
    T = len(h)
    for i, conv in enumerate(net.convs):
        mu, var = h.mean(1, keepdims=True), h.var(1, keepdims=True)
        z = (h - mu) / np.sqrt(var + net.norms[i].eps) * P[f"norms.{i}.weight"] + P[f"norms.{i}.bias"]
        W, b = P[f"convs.{i}.weight"], P[f"convs.{i}.bias"]            # (H_out, H_in, K)
        K, d = W.shape[2], conv.dilation[0]
        y = np.tile(b, (T, 1))
        for t in range(T):
            for k in range(K):
                s = t + (k - (K - 1) // 2) * d
                if 0 <= s < T:                                          # zeros outside the sequence
                    y[t] += W[:, :, k] @ z[s]
        h = h + np.maximum(y, 0.0)
    return h @ P["out.weight"].T + P["out.bias"]


def test_conv_net_against_loops_and_batch():
    """ConvNet equals a loop-by-loop float64 reference, per sequence of a padded batch."""
    torch.manual_seed(0)
    net = ConvNet(5, 3, hidden_dim=6, pre_layers=2, num_layers=3, kernel_size=3, dilations=(1, 2, 4),
                  activation="relu").eval()
    with torch.no_grad():   # non-trivial layer-norm affine parameters
        for n in net.norms:
            n.weight.uniform_(0.5, 1.5), n.bias.uniform_(-0.3, 0.3)
    seqs = [torch.randn(n, 5) for n in (13, 6, 1)]
    x, lengths = pad_sequences(seqs, value=100.0)    # loud padding must not reach the real frames
    batched = net(x, lengths)
    for b, s in enumerate(seqs):
        ref = _conv_reference(net, s.numpy())
        np.testing.assert_allclose(batched[b, :len(s)].detach().numpy(), ref, rtol=1e-4, atol=1e-5)


def test_conv_receptive_field():
    """Output frame t depends on input frame s exactly when |t - s| <= (K - 1) / 2 * sum(dilations)."""
    torch.manual_seed(1)
    K, dil = 5, (1, 3)
    net = ConvNet(2, 1, hidden_dim=4, pre_layers=1, num_layers=2, kernel_size=K, dilations=dil).double()
    x = torch.randn(1, 40, 2, dtype=torch.float64, requires_grad=True)
    t = 20
    net(x)[0, t, 0].backward()
    reach = np.flatnonzero(x.grad[0].abs().sum(-1).numpy() > 0)
    half = (K - 1) // 2 * sum(dil)
    assert reach.min() == t - half and reach.max() == t + half


def test_weighted_losses_against_loops():
    g = torch.Generator().manual_seed(3)
    pred, target, log_var = (torch.randn(2, 5, 4, generator=g) for _ in range(3))
    lengths, w = torch.tensor([5, 3]), torch.tensor([1.0, 3.0, 0.0, 4.0])
    wn = w * 4 / w.sum()
    num = den = nll = 0.0
    for b in range(2):
        for t in range(int(lengths[b])):
            for d in range(4):
                num += float(wn[d] * (pred[b, t, d] - target[b, t, d]) ** 2)
                var = math.exp(float(log_var[b, t, d]))
                nll += float(wn[d]) * 0.5 * (math.log(2 * math.pi * var) + float(target[b, t, d] - pred[b, t, d]) ** 2 / var)
                den += 1
    assert float(masked_mse(pred, target, lengths, w)) == pytest.approx(num / den, rel=1e-5)
    assert float(gaussian_nll(pred, log_var, target, lengths, w)) == pytest.approx(nll / den, rel=1e-5)
    with pytest.raises(ValueError, match="weights"):
        masked_mse(pred, target, lengths, torch.ones(3))


def test_column_weights_follow_the_streams():
    from sps.config import ConfigError, bind
    from sps.stages.train import TrainStageConfig, column_weights
    w = column_weights(SPEC, {"lf0": 4.0, "vuv": 2})
    assert w.tolist() == [1.0] * 6 + [4.0] * 3 + [2.0]
    with pytest.raises(ValueError, match="unknown stream"):
        column_weights(SPEC, {"f0": 2.0})
    with pytest.raises(ConfigError, match="stream_weights"):
        bind(TrainStageConfig, {"kind": "duration", "stream_weights": {"lf0": 2.0}})
    with pytest.raises(ConfigError, match="stream_weights.lf0"):
        bind(TrainStageConfig, {"stream_weights": {"lf0": -1}})


def test_masked_mse_and_nll_against_references():
    g = torch.Generator().manual_seed(0)
    pred, target, log_var = (torch.randn(2, 6, 3, generator=g) for _ in range(3))
    lengths = torch.tensor([6, 2])
    ref = torch.cat([((pred[0] - target[0]) ** 2).flatten(), ((pred[1, :2] - target[1, :2]) ** 2).flatten()]).mean()
    torch.testing.assert_close(masked_mse(pred, target, lengths), ref)
    normal = torch.distributions.Normal(pred, torch.exp(0.5 * log_var))
    lp = -normal.log_prob(target)
    ref_nll = torch.cat([lp[0].flatten(), lp[1, :2].flatten()]).mean()
    torch.testing.assert_close(gaussian_nll(pred, log_var, target, lengths), ref_nll)
    with pytest.raises(ValueError, match="shape"):
        masked_mse(pred, target[..., :2])


SPEC = {"kind": "out_acoustic", "dim": 10, "windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
        "streams": [{"name": "mgc", "start": 0, "static_dim": 2, "num_windows": 3},
                    {"name": "lf0", "start": 6, "static_dim": 1, "num_windows": 3},
                    {"name": "vuv", "start": 9, "static_dim": 1, "num_windows": 1}]}


def _fake_exp(tmp_path, n_utts=6, din=6, spec=SPEC):
    """A minimal exp dir: lists, stats and dump arrays of random features."""
    from sps.stages.stats import accumulate, save_stats
    from sps.io import save_array, write_json, write_list
    from sps.features import delta_features
    rng = np.random.default_rng(0)
    w = rng.standard_normal((din // 3, 4))
    exp = tmp_path / "exp"
    for split, utts in (("train", [f"t{i}" for i in range(n_utts)]), ("dev", ["d0", "d1"])):
        write_list(exp / "data" / f"{split}.list", utts)
        for u in utts:
            T = int(rng.integers(8, 20))
            x0 = rng.random((T, din // 3))
            x = delta_features(x0)  # inputs carry their dynamics, so outputs are predictable per frame
            st = x0 @ w + np.arange(4)  # statics (mgc 2, lf0 1, vuv 1) and their true dynamic features
            y = np.concatenate([delta_features(st[:, :2]), delta_features(st[:, 2:3]), st[:, 3:]], axis=1)
            save_array(exp / "dump" / split / "in_acoustic" / f"{u}.npy", x)
            save_array(exp / "dump" / split / "out_acoustic" / f"{u}.npy", y)
    for kind in ("in_acoustic", "out_acoustic"):
        save_stats(exp / "stats" / f"{kind}.npz", accumulate(sorted((exp / "dump" / "train" / kind).glob("*.npy"))),
                   1e-5)
    if spec is not None:
        write_json(exp / "dump" / "out_acoustic.json", spec)
    return exp


def test_dataset_normalises_and_collates(tmp_path):
    from sps.stages.datasets import FeatureDataset, collate_pairs as collate
    from sps.stages.experiment import Experiment
    exp = _fake_exp(tmp_path, spec=SPEC)
    ds = FeatureDataset(Experiment(exp), "train", "in_acoustic", "out_acoustic")
    assert len(ds) == 6 and len(ds.lengths) == 6
    # over the train split, standardised outputs have mean 0 / std 1 and inputs span [0.01, 0.99]
    ys = torch.cat([ds[i]["y"] for i in range(len(ds))])
    xs = torch.cat([ds[i]["x"] for i in range(len(ds))])
    torch.testing.assert_close(ys.mean(0), torch.zeros(10), atol=1e-4, rtol=0)
    torch.testing.assert_close(ys.std(0, unbiased=False), torch.ones(10), atol=1e-4, rtol=0)
    torch.testing.assert_close(xs.min(0).values, torch.full((6,), 0.01), atol=1e-5, rtol=0)
    torch.testing.assert_close(xs.max(0).values, torch.full((6,), 0.99), atol=1e-5, rtol=0)
    b = collate([ds[0], ds[1]])
    assert b["x"].shape == (2, max(ds.lengths[:2]), 6) and b["lengths"].tolist() == ds.lengths[:2]


@pytest.mark.parametrize("model_type", ["dnn", "lstm"])
def test_train_stage_mse_then_mge(tmp_path, model_type):
    """MSE training, then MGE fine-tuning lowers the generation error on the training data."""
    from sps.mlpg import mge_loss
    from sps.config import bind
    from sps.stages.datasets import FeatureDataset, collate_pairs as collate
    from sps.stages.experiment import Experiment
    from sps.stages.runner import StageContext
    from sps.stages.train import TrainStageConfig, make_step_fn, train
    exp = _fake_exp(tmp_path, spec=SPEC)
    tr = {"batch_size": 3, "epochs": 15, "lr": 1e-2, "plot": False}
    model = {"type": model_type, "hidden_dim": 16, "lstm_dim": 8, "num_layers": 1}
    train(StageContext(exp, {"name": "mse", "model": model, "train": tr}))
    train(StageContext(exp, {"name": "mge", "loss": "mge", "init_from": "mse",
                             "train": {**tr, "epochs": 10, "lr": 1e-3}}))
    for name in ("mse", "mge"):
        d = exp / "models" / name
        assert {"config.yaml", "best.pt", "log.jsonl", "done.json"} <= {p.name for p in d.iterdir()}
    recs = [json.loads(l) for l in (exp / "models" / "mse" / "log.jsonl").read_text().splitlines()]
    ep = [r["epoch_train_loss"] for r in recs if "epoch_train_loss" in r]
    assert ep[-1] < 0.5 * ep[0], ep

    ds = FeatureDataset(Experiment(exp), "train", "in_acoustic", "out_acoustic")
    batch = collate([ds[i] for i in range(len(ds))])
    gen_err = {}
    mge_cfg = bind(TrainStageConfig, {"loss": "mge"})
    for name in ("mse", "mge"):
        net = Experiment(exp).load_model(name).net
        with torch.no_grad():
            step = make_step_fn(mge_cfg, ds.norm, SPEC)
            gen_err[name] = float(step(net, batch))
    assert gen_err["mge"] < gen_err["mse"]
    # the step's loss is the std-weighted squared error of MLPG statics (recomputed by hand)
    from sps.mlpg import generate_streams
    net = Experiment(exp).load_model("mge").net
    s = torch.tensor(ds.norm.out_std, dtype=torch.float32)
    m = torch.tensor(ds.norm.out_mean, dtype=torch.float32)
    cols = [0, 1, 6, 9]
    with torch.no_grad():
        gen = generate_streams(net(batch["x"], batch["lengths"]) * s + m, s ** 2, SPEC, batch["lengths"])
        err = ((gen - (batch["y"] * s + m)[..., cols]) / s[cols]) ** 2
        mask = (torch.arange(err.shape[1])[None] < batch["lengths"][:, None]).unsqueeze(-1)
        ref = float((err * mask).sum() / (mask.sum() * len(cols)))
    assert gen_err["mge"] == pytest.approx(ref, rel=1e-4)
    # stream weights: lf0 and vuv weighted 0 leave the mean error of the two mgc columns
    weighted = make_step_fn(bind(TrainStageConfig, {"loss": "mge", "stream_weights": {"lf0": 0, "vuv": 0}}),
                            ds.norm, SPEC)
    with torch.no_grad():
        ref_mgc = float((err[..., :2] * mask).sum() / (mask.sum() * 2))
        assert float(weighted(net, batch)) == pytest.approx(ref_mgc, rel=1e-4)
    # a finished model is skipped; a mismatched init is refused
    train(StageContext(exp, {"name": "mse", "model": model, "train": tr}))
    with pytest.raises(ValueError, match="mge"):
        bind(TrainStageConfig, {"kind": "duration", "loss": "mge"})


def test_postfilter_keeps_energy():
    pysptk = pytest.importorskip("pysptk")
    from sps.features import mgc_to_log_power
    from sps.synthesis import postfilter
    rng = np.random.default_rng(0)
    mgc = rng.standard_normal((4, 25)) * np.exp(-0.3 * np.arange(25))
    np.testing.assert_allclose(mgc_to_log_power(mgc, 0.42, 1024), np.log(pysptk.mc2sp(mgc, 0.42, 1024)), atol=1e-10)
    out = postfilter(mgc, alpha=0.42, beta=1.4, fft_size=1024)
    np.testing.assert_allclose(out[:, 1], mgc[:, 1])
    np.testing.assert_allclose(out[:, 2:], 1.4 * mgc[:, 2:])

    def r0(c):  # zero-lag autocorrelation through the linear cepstrum (SPTK freqt + c2acr)
        return np.array([pysptk.c2acr(pysptk.freqt(np.ascontiguousarray(f), 511, -0.42), 0, 1024)[0] for f in c])
    np.testing.assert_allclose(r0(out), r0(mgc), rtol=1e-3)


# ---------------------------------------------------------------------------- end to end

def _e2e_exp(tmp_path: Path) -> Path:
    from sps.stages import features as fstage, linguistic as lstage, prepare, stats
    from sps.stages.runner import StageContext
    exp = tmp_path / "exp"
    prepare.run(StageContext(exp, {"corpus": {"path": str(CORPUS), "max_utts": 4}}))
    fstage.run(StageContext(exp, {"f0_method": "dio", "f0_floor": 80.0, "f0_ceil": 500.0}))
    lstage.run(StageContext(exp, {}))
    stats.run(StageContext(exp, {}))
    return exp


@pytest.mark.slow
def test_end_to_end_tiny(tmp_path):
    for module in ("soundfile", "pyworld", "pysptk"):
        pytest.importorskip(module, reason=f"needs {module} (audio analysis)")
    from sps.io import load_array, read_json, read_list
    from sps.stages import evaluate, report, synth
    from sps.stages.experiment import Experiment
    from sps.stages.runner import StageContext
    from sps.stages.train import train
    exp = _e2e_exp(tmp_path)
    tr = {"batch_size": 2, "epochs": 4, "lr": 2e-3, "plot": True, "num_threads": 1}
    train(StageContext(exp, {"name": "dur", "kind": "duration", "model": {"hidden_dim": 32, "num_layers": 2},
                             "train": tr}))
    train(StageContext(exp, {"name": "ac", "model": {"type": "lstm", "hidden_dim": 32, "lstm_dim": 32,
                                                     "num_layers": 1}, "train": tr}))
    train(StageContext(exp, {"name": "ac_mge", "loss": "mge", "init_from": "ac",
                             "train": {**tr, "epochs": 2, "lr": 3e-4}}))
    for name in ("dur", "ac", "ac_mge"):
        d = exp / "models" / name
        assert (d / "best.pt").exists() and (d / "loss.png").exists()
        recs = [json.loads(l) for l in (d / "log.jsonl").read_text().splitlines()]
        ep = [r["epoch_train_loss"] for r in recs if "epoch_train_loss" in r]
        assert ep[-1] < ep[0], (name, ep)

    synth.run(StageContext(exp, {"acoustic_model": "ac_mge", "splits": ["eval"]}))
    synth.run(StageContext(exp, {"copy_synthesis": True, "splits": ["eval"]}))
    synth.run(StageContext(exp, {"acoustic_model": "ac", "duration_model": "dur", "durations": "predicted",
                                 "postfilter": True, "splits": ["eval"]}))
    spec = read_json(exp / "dump" / "out_acoustic.json")
    S = sum(s["static_dim"] for s in spec["streams"])
    utts = read_list(exp / "data" / "eval.list")
    for utt in utts:
        natural = load_array(exp / "dump" / "eval" / "out_acoustic" / f"{utt}.npy")
        gen = load_array(exp / "synth" / "ac_mge" / "eval" / f"{utt}.npy")
        assert gen.shape == (len(natural), S) and gen.dtype == np.float32
        for system in ("ac_mge", "world_copy", "ac_durpred"):
            assert (exp / "synth" / system / "eval" / f"{utt}.wav").exists()
        assert (exp / "synth" / "ac_mge" / "eval" / f"{utt}.png").exists()

    evaluate.run(StageContext(exp, {"duration_model": "dur"}))
    copy = read_json(exp / "eval" / "world_copy" / "eval" / "metrics.json")
    model = read_json(exp / "eval" / "ac_mge" / "eval" / "metrics.json")
    assert set(model["utterances"]) == set(utts)
    assert 0 < copy["mean"]["mcd_db"] < model["mean"]["mcd_db"]  # copy synthesis is the ceiling
    assert "duration_rmse_frames" in read_json(exp / "eval" / "dur" / "eval" / "metrics.json")["mean"]
    durpred = read_json(exp / "eval" / "ac_durpred" / "eval" / "metrics.json")   # predicted durations:
    assert durpred["alignment"] == "dtw" and model["alignment"] == "frames"        # DTW-aligned scores
    assert 0 < durpred["mean"]["mcd_db"] < 20 and durpred["duration_model"] == "dur"
    assert durpred["mean"]["duration_rmse_frames"] == pytest.approx(
        read_json(exp / "eval" / "dur" / "eval" / "metrics.json")["mean"]["duration_rmse_frames"])
    assert read_json(exp / "synth" / "ac_durpred" / "eval" / "synth.json")["durations"] == "predicted"

    report.run(StageContext(exp, {}))
    page = (exp / "eval" / "report.html").read_text()
    assert "MCD (dB)" in page and f"../synth/ac_mge/eval/{utts[0]}.wav" in page
    assert f"natural/eval/{utts[0]}.wav" in page and (exp / "eval" / "natural" / "eval" / f"{utts[0]}.wav").exists()

    if shutil.which("festival"):
        wav = synth.synthesize_text(Experiment(exp), "Hello world.", tmp_path / "hello.wav",
                                    synth.SynthConfig(acoustic_model="ac_mge", duration_model="dur"))
        assert (tmp_path / "hello.wav").exists() and len(wav) > 1600 and np.isfinite(wav).all()


SPEC5 = {"kind": "out_acoustic", "dim": 13, "windows": SPEC["windows"], "sample_rate": 16000, "frame_shift_ms": 5.0,
         "streams": [*SPEC["streams"], {"name": "bap", "start": 10, "static_dim": 1, "num_windows": 3}]}


def test_eval_full_tts_dtw_and_duration_rmse(tmp_path):
    """A full-TTS system (synth.json: predicted durations) is DTW-aligned and carries the
    duration RMSE of its duration model; a natural-duration system is compared frame by frame."""
    from sps.io import load_array, save_array, write_json, write_list
    from sps.stages import evaluate
    from sps.stages.experiment import Experiment
    from sps.stages.runner import StageContext
    from sps.stages.stats import accumulate, save_stats
    from sps.stages.synth import SYNTH_INFO
    from sps.stages.train import train
    rng = np.random.default_rng(5)
    exp = tmp_path / "exp"
    for split, utts in (("train", ["t0", "t1", "t2"]), ("dev", ["d0"]), ("eval", ["e0", "e1"])):
        write_list(exp / "data" / f"{split}.list", utts)
        for u in utts:
            n = int(rng.integers(4, 9))
            save_array(exp / "dump" / split / "in_duration" / f"{u}.npy", rng.random((n, 3)))
            save_array(exp / "dump" / split / "out_duration" / f"{u}.npy", rng.integers(1, 9, (n, 1)))
            T = int(rng.integers(15, 30))
            y = rng.standard_normal((T, 13))
            y[:, 6] = np.log(rng.uniform(100, 200, T))                 # lf0
            y[:, 9] = (np.arange(T) % 7 > 1).astype(float)              # vuv
            save_array(exp / "dump" / split / "out_acoustic" / f"{u}.npy", y)
    for kind in ("in_duration", "out_duration"):
        save_stats(exp / "stats" / f"{kind}.npz", accumulate(sorted((exp / "dump" / "train" / kind).glob("*.npy"))),
                   1e-5)
    write_json(exp / "dump" / "out_acoustic.json", SPEC5)
    train(StageContext(exp, {"name": "dur", "kind": "duration", "model": {"hidden_dim": 8, "num_layers": 1},
                             "train": {"epochs": 1, "plot": False}}))
    e = Experiment(exp)
    cols = [0, 1, 6, 9, 10]
    for utt in ("e0", "e1"):
        static = load_array(exp / "dump" / "eval" / "out_acoustic" / f"{utt}.npy")[:, cols]
        save_array(exp / "synth" / "tts" / "eval" / f"{utt}.npy", np.repeat(static, 2, axis=0))  # slower copy
        save_array(exp / "synth" / "nat" / "eval" / f"{utt}.npy", static + 0.1)
        weak = static.copy()
        weak[:, 3] *= 0.7                                           # vuv 0.7 where natural speech is voiced
        save_array(exp / "synth" / "thr" / "eval" / f"{utt}.npy", weak)
    write_json(exp / "synth" / "tts" / "eval" / SYNTH_INFO, {"durations": "predicted", "duration_model": "dur"})
    write_json(exp / "synth" / "nat" / "eval" / SYNTH_INFO, {"durations": "oracle"})
    write_json(exp / "synth" / "thr" / "eval" / SYNTH_INFO, {"durations": "oracle", "vuv_threshold": 0.8})
    tts = evaluate.evaluate_system(e, "tts", "eval")
    assert tts["alignment"] == "dtw" and tts["duration_model"] == "dur"
    for k in ("mcd_db", "bap_db", "f0_rmse_hz", "vuv_error_pct"):    # a time-stretched copy aligns exactly
        assert tts["mean"][k] == pytest.approx(0.0, abs=1e-9), k
    assert tts["mean"]["f0_corr"] == pytest.approx(1.0)
    model = e.load_model("dur")
    top = 2 * max(load_array(p).max() for p in (exp / "dump" / "train" / "out_duration").glob("*.npy"))
    sq = [(np.clip(np.rint(model(load_array(exp / "dump" / "eval" / "in_duration" / f"{u}.npy"))[0]), 1, top)
           - load_array(exp / "dump" / "eval" / "out_duration" / f"{u}.npy")) ** 2 for u in ("e0", "e1")]
    ref = np.mean([np.sqrt(s.mean()) for s in sq])                  # per-utterance RMSE, averaged
    assert tts["mean"]["duration_rmse_frames"] == pytest.approx(ref)
    nat = evaluate.evaluate_system(e, "nat", "eval")
    assert nat["alignment"] == "frames" and "duration_rmse_frames" not in nat["mean"]
    assert nat["mean"]["mcd_db"] == pytest.approx(10 / math.log(10) * math.sqrt(2 * 0.01), rel=1e-5)
    # scored with the V/UV threshold its waveform was made with: 0.7 < 0.8 is unvoiced everywhere
    thr = evaluate.evaluate_system(e, "thr", "eval")
    voiced = [100 * np.mean(load_array(exp / "dump" / "eval" / "out_acoustic" / f"{u}.npy")[:, 9] > 0.5)
              for u in ("e0", "e1")]
    assert thr["mean"]["vuv_error_pct"] == pytest.approx(np.mean(voiced))
    evaluate.run(StageContext(exp, {"systems": ["tts", "nat"]}))
    table = evaluate.metrics_table(e, "eval")
    assert "aligned" in table.splitlines()[0]
    assert [line.split()[-1] for line in table.splitlines()[2:]] == ["frames", "dtw"]
