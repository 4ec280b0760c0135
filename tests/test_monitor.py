"""Watching training: TensorBoard events (read back with tensorboard's own reader), the
log without tensorboard installed, validation metrics against analytic values, vocoder
audio samples."""
import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from sps.train import fit, trainer as trainer_mod
from test_train import CFG, Net, SeqData, collate, step_fn

#: the tests that read events back need tensorboard; the others (no package, metrics) run without it
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="tensorboard not installed (the 'tensorboard' extra)")


def _events(log_dir):
    """The events under ``log_dir`` through tensorboard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    ea.Reload()
    return ea


def _records(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


class Metric:
    """A hook that records a validation metric through the trainer."""

    def on_validate(self, trainer, loss):
        trainer.log_metrics({"valid_twice_loss": 2 * loss})


@needs_tensorboard
def test_tensorboard_events_match_the_log_and_survive_a_resume(tmp_path, one_thread):
    cfg = {**CFG, "max_steps": 10, "checkpoint_every": 5, "valid_every": 5, "lr_schedule": "noam"}
    torch.manual_seed(0)
    fit(Net(), step_fn, SeqData(20, 0), SeqData(6, 1), tmp_path, {**cfg, "max_steps": 5}, collate_fn=collate,
        hooks=[Metric()])
    torch.manual_seed(0)
    fit(Net(), step_fn, SeqData(20, 0), SeqData(6, 1), tmp_path, cfg, collate_fn=collate, resume=True,
        hooks=[Metric()])
    recs = _records(tmp_path)
    ea = _events(tmp_path / "tensorboard")
    for tag, key in (("train/loss", "train_loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm"),
                     ("valid/loss", "valid_loss"), ("valid/twice_loss", "valid_twice_loss")):
        logged = [(r["step"], r[key]) for r in recs if key in r]
        events = [(e.step, e.value) for e in ea.Scalars(tag)]
        assert len(logged) >= 2 and [s for s, _ in events] == [s for s, _ in logged], tag   # no step twice
        np.testing.assert_allclose([v for _, v in events], [v for _, v in logged], rtol=1e-6)
    assert [r["valid_twice_loss"] for r in recs if "valid_twice_loss" in r] == pytest.approx(
        [2 * r["valid_loss"] for r in recs if "valid_loss" in r])
    assert all(r["grad_norm"] > 0 for r in recs if "grad_norm" in r)


def test_no_tensorboard_package_no_error(tmp_path, one_thread, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tensorboard", None)          # `import tensorboard` fails
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setattr(trainer_mod, "_TB_MISSING_LOGGED", False)
    caplog.set_level("INFO", logger="sps.train.trainer")
    out = fit(Net(), step_fn, SeqData(12, 0), None, tmp_path, {**CFG, "max_steps": 4}, collate_fn=collate,
              hooks=[Metric()])
    assert out["step"] == 4 and not (tmp_path / "tensorboard").exists()
    assert any("valid_twice_loss" in r for r in _records(tmp_path))   # log.jsonl as always
    assert "no TensorBoard logs" in caplog.text
    fit(Net(), step_fn, SeqData(12, 0), None, tmp_path / "off", {**CFG, "max_steps": 2, "tensorboard": False},
        collate_fn=collate)
    assert not (tmp_path / "off" / "tensorboard").exists()



class SineVocoder(Net):
    """A stand-in vocoder: ``generate`` gives a 1 kHz sine of amplitude 0.5 at 16 kHz, 80
    samples per conditioning frame."""

    def generate(self, cond, lengths, generator=None):
        t = torch.arange(int(lengths[0]) * 80, dtype=torch.float64) / 16000
        return (0.5 * torch.sin(2 * math.pi * 1000 * t)).float()[None]


def _decoded_audio(event):
    """A TensorBoard audio event's samples as floats (its 16-bit WAV, read by ``wave``)."""
    import io
    import wave
    with wave.open(io.BytesIO(event.encoded_audio_string)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32767.0


def _peak_hz(event, sr=16000, n_fft=512):
    """The frequency of the brightest row of a spectrogram image event (PNG, PIL's reader;
    row 0 is the highest bin)."""
    import io
    from PIL import Image
    img = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("L"), dtype=float)
    assert img.shape == (event.height, event.width) == (n_fft // 2 + 1, img.shape[1])
    return (n_fft // 2 - int(np.argmax(img.mean(axis=1)))) * sr / n_fft


@needs_tensorboard
def test_vocoder_audio_samples_and_spectrograms(tmp_path, one_thread):
    from sps.stages.monitor import AudioSamples
    frames = 50
    t = np.arange(frames * 80) / 16000
    natural = (0.25 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    hook = AudioSamples(np.zeros((frames, 3), np.float32), natural, 16000)
    fit(SineVocoder(), step_fn, SeqData(12, 0), SeqData(4, 1), tmp_path, {**CFG, "max_steps": 4, "valid_every": 2},
        collate_fn=collate, hooks=[hook])
    ea = _events(tmp_path / "tensorboard")
    natural_events, generated = ea.Audio("samples/natural"), ea.Audio("samples/generated")
    steps = [r["step"] for r in _records(tmp_path) if "valid_loss" in r]
    assert len(natural_events) == 1 and [e.step for e in generated] == steps and len(steps) >= 2
    tol = 1.5 / 32767                                         # 16-bit quantisation
    np.testing.assert_allclose(_decoded_audio(natural_events[0]), natural, atol=tol)
    for e in generated:
        np.testing.assert_allclose(_decoded_audio(e), 0.5 * np.sin(2 * np.pi * 1000 * t), atol=tol)
    bin_hz = 16000 / 512
    assert abs(_peak_hz(ea.Images("spectrogram/natural")[0]) - 3000) <= bin_hz
    assert all(abs(_peak_hz(e) - 1000) <= bin_hz for e in ea.Images("spectrogram/generated"))

# ---------------------------------------------------------------- validation metrics
SPEC = {"kind": "out_acoustic", "dim": 13, "sample_rate": 16000, "frame_shift_ms": 5.0,
        "windows": [[0, 0, [1.0]], [1, 1, [-0.5, 0.0, 0.5]], [1, 1, [1.0, -2.0, 1.0]]],
        "streams": [{"name": "mgc", "start": 0, "static_dim": 2, "num_windows": 3},
                    {"name": "lf0", "start": 6, "static_dim": 1, "num_windows": 3},
                    {"name": "vuv", "start": 9, "static_dim": 1, "num_windows": 1},
                    {"name": "bap", "start": 10, "static_dim": 1, "num_windows": 3}]}


def _exp_with_identity_inputs(tmp_path):
    """Smooth natural features whose inputs are the outputs themselves: a linear map
    undoing the two normalisations is an exact acoustic model."""
    from sps.features import delta_features
    from sps.io import save_array, write_list
    from sps.stages.stats import accumulate, save_stats
    exp = tmp_path / "exp"
    rng = np.random.default_rng(0)
    for split, utts in (("train", ["t0", "t1", "t2"]), ("dev", ["d0", "d1"])):
        write_list(exp / "data" / f"{split}.list", utts)
        for u in utts:
            T = 300
            t = np.arange(T)[:, None]
            mgc = np.sin(2 * np.pi * t / rng.uniform(60, 120, (1, 2)) + rng.uniform(0, 6, (1, 2)))
            # (fast enough that the dynamic variances are not tiny: MLPG runs in float32)
            lf0 = np.log(150 + 40 * np.sin(2 * np.pi * t / 15 + rng.uniform(0, 6)))
            vuv = (np.sin(2 * np.pi * t / 70 + rng.uniform(0, 6)) > -0.3).astype(float)
            bap = -5 + np.cos(2 * np.pi * t / 50)
            y = np.concatenate([delta_features(mgc), delta_features(lf0), vuv, delta_features(bap)], axis=1)
            for kind in ("in_acoustic", "out_acoustic"):
                save_array(exp / "dump" / split / kind / f"{u}.npy", y.astype(np.float32))
    for kind in ("in_acoustic", "out_acoustic"):
        save_stats(exp / "stats" / f"{kind}.npz", accumulate(sorted((exp / "dump" / "train" / kind).glob("*.npy"))),
                   1e-5)
    return exp


class Oracle(nn.Module):
    """``y_norm = a * x_scaled + b``: the inverse of the input scaling, then the output
    standardisation; ``offset`` (natural units) is added to the outputs."""

    def __init__(self, norm, offset):
        super().__init__()
        span = norm.in_max - norm.in_min
        a = span / 0.98 / norm.out_std
        b = (norm.in_min - 0.01 * span / 0.98 - norm.out_mean + offset) / norm.out_std
        self.register_buffer("a", torch.tensor(a, dtype=torch.float32))
        self.register_buffer("b", torch.tensor(b, dtype=torch.float32))

    def forward(self, x, lengths):
        return x * self.a + self.b


def test_valid_metrics_of_exact_and_offset_models(tmp_path):
    from sps.metrics import MCD_CONST
    from sps.stages.datasets import FeatureDataset
    from sps.stages.experiment import Experiment
    from sps.stages.monitor import ValidMetrics
    exp = Experiment(_exp_with_identity_inputs(tmp_path))
    ds = FeatureDataset(exp, "dev", "in_acoustic", "out_acoustic")
    hook = ValidMetrics(ds, "acoustic", SPEC, batch_size=1)
    exact = hook.metrics(Oracle(ds.norm, np.zeros(13)), torch.device("cpu"))
    assert exact["mcd_db"] < 0.01 and exact["bap_db"] < 0.01 and exact["f0_rmse_hz"] < 0.05
    assert exact["vuv_error_pct"] == 0.0 and exact["f0_corr"] > 0.9999
    off = np.zeros(13)
    off[1], off[6], off[10] = 0.05, math.log(1.1), 0.2      # c1 static, lf0 static (+10 %), bap static
    shifted = hook.metrics(Oracle(ds.norm, off), torch.device("cpu"))
    # a constant offset of a static keeps its dynamics: MLPG returns it (but near the ends)
    assert shifted["mcd_db"] == pytest.approx(MCD_CONST * 0.05, rel=0.02)
    assert shifted["bap_db"] == pytest.approx(0.2, rel=0.02)
    f0 = [np.exp(ds.load(i)[1][:, 6])[ds.load(i)[1][:, 9] > 0.5] for i in range(len(ds))]
    expected = np.mean([np.sqrt(np.mean((0.1 * f) ** 2)) for f in f0])          # RMSE of +10 % of F0
    assert shifted["f0_rmse_hz"] == pytest.approx(expected, rel=0.02)


@needs_tensorboard
def test_train_stage_logs_validation_metrics(tmp_path):
    from sps.io import write_json, write_list
    from sps.stages.runner import StageContext
    from sps.stages.train import train
    exp = _exp_with_identity_inputs(tmp_path)
    write_json(exp / "dump" / "out_acoustic.json", SPEC)
    write_list(exp / "data" / "dev.list", ["d0", "d1"])
    train(StageContext(exp, {"name": "m", "model": {"type": "dnn", "hidden_dim": 8, "num_layers": 1},
                             "train": {"batch_size": 2, "max_steps": 4, "valid_every": 2, "plot": False}}))
    recs = _records(exp / "models" / "m")
    metrics = [r for r in recs if "valid_mcd_db" in r]
    assert [r["step"] for r in metrics] == [2, 4] and all(r["valid_mcd_db"] > 0 for r in metrics)
    assert "valid/mcd_db" in _events(exp / "models" / "m" / "tensorboard").Tags()["scalars"]
