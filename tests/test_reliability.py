"""Reliability probes: interruption, concurrency, corruption, full disks, degenerate data, hostile names.

Each test is one probe of ``docs/reliability.md`` (the ``P<n>`` in its name is the row of the
probe table): it does what a careless or hostile user would do and asserts that nothing
stale is trusted and nothing is lost. Probes that belong to one module live with that
module's tests and are listed in the table: a torn checkpoint (``test_train.py::
test_torn_latest_checkpoint_falls_back_to_the_one_before``), a killed fresh training run
(``test_train.py::test_fresh_run_sets_the_old_run_aside_until_it_succeeds``), the temp-file
sweep of another node (``test_stage.py::test_stale_temp_files_are_swept``).
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sps.cli import main
from sps.features import Normalizer, RunningStats
from sps.io import save_array, write_list
from sps.models import TrainedModel
from sps.stages import stats
from sps.stages.runner import StageContext
from sps.synthesis import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "slt_festival" / "run.sh"


def one_line_error(capsys, code, argv, match):
    """``sps argv`` fails with exit status ``code`` and one stderr line containing ``match``."""
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0] and "Traceback" not in err[0], err
    return err[0]


def duration_exp(tmp_path, constant_col=True, n_train=4, seed=0):
    """A small duration-model experiment; with ``constant_col`` question 0 never fires in training."""
    rng = np.random.default_rng(seed)
    exp = tmp_path / "exp"
    for split, n in (("train", n_train), ("dev", 2)):
        utts = [f"{split}{i}" for i in range(n)]
        write_list(exp / "data" / f"{split}.list", utts)
        for u in utts:
            x = rng.integers(0, 2, (9, 4)).astype(np.float32)
            if constant_col:
                x[:, 0] = 0.0
            save_array(exp / "dump" / split / "in_duration" / f"{u}.npy", x)
            save_array(exp / "dump" / split / "out_duration" / f"{u}.npy", rng.integers(2, 9, (9, 1)))
    return exp


class Linear(nn.Module):
    """A duration network reacting strongly to its first input (``(B, T, D), lengths -> (B, T, 1)``)."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.tensor(w, dtype=torch.float32)

    def forward(self, x, lengths=None):
        return x @ self.w[:, None]


# ------------------------------------------------------------------ P2: bounded synthesis
def test_P2_constant_dimension_is_marked_and_left_unscaled(tmp_path):
    exp = duration_exp(tmp_path)
    stats.run(StageContext(exp_dir=exp, config={"kinds": ["in_duration", "out_duration"]}))
    st = dict(np.load(exp / "stats" / "in_duration.npz"))
    assert st["constant"].tolist() == [True, False, False, False]
    norm = Normalizer(st, dict(np.load(exp / "stats" / "out_duration.npz")))
    x = np.array([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    scaled = norm.inputs(x)
    # the constant column moves by its raw difference (span 1), the others span [0.01, 0.99]
    assert scaled[:, 0].tolist() == pytest.approx([0.01 + 0.98 * 1.0, 0.01])
    np.testing.assert_allclose(scaled[:, 1:], [[0.99, 0.01, 0.99], [0.01, 0.99, 0.01]])
    t = norm.inputs(torch.from_numpy(x))
    assert torch.allclose(t, torch.from_numpy(scaled))


def test_P2_predicted_durations_are_clamped_with_a_count_and_the_frame_budget_holds(tmp_path, caplog):
    exp = duration_exp(tmp_path)
    stats.run(StageContext(exp_dir=exp, config={"kinds": ["in_duration", "out_duration"]}))
    st_in, st_out = dict(np.load(exp / "stats" / "in_duration.npz")), dict(np.load(exp / "stats" / "out_duration.npz"))
    longest = float(st_out["max"][0])
    # de-normalised output = 1e6 * scaled[0] - 1e6 * scaled[1] (+ std scaling): huge either way
    model = TrainedModel(Linear([1e6, -1e6, 0.0, 0.0]), Normalizer(st_in, st_out))
    syn = Synthesizer(None, {"frame_shift_ms": 5.0}, duration=model, max_frames=500)
    x = np.zeros((20, 4))
    x[:5, 0] = 1.0          # fires: unseen in training
    x[5:12, 1] = 1.0        # pushes the prediction far below 1
    with caplog.at_level(logging.WARNING):
        d = syn.predict_durations(x)
    assert d.dtype == np.int64 and d.min() >= 1 and d.max() <= 2 * longest
    assert d[:5, 0].tolist() == [2 * longest] * 5 and d[5:12, 0].tolist() == [1] * 7
    assert f"12 of 20 predicted durations clamped to [1, {2 * longest:g}] frames" in caplog.text
    # 60 phones at the top of the range exceed 500 frames: a clear error, no allocation
    with pytest.raises(ValueError, match=r"utterance of \d+ frames .* exceeds the per-utterance budget "
                                         r"max_frames=500"):
        syn.predict_durations(np.tile(x[:5], (12, 1)))
    with pytest.raises(ValueError, match="max_frames=500"):
        syn.acoustic_params(np.zeros((501, 3)))
    # a network that returns NaN is named, not rounded to a random integer
    bad = TrainedModel(Linear([float("nan"), 0.0, 0.0, 0.0]), Normalizer(st_in, st_out))
    with pytest.raises(ValueError, match="non-finite predicted duration for phone 0"):
        Synthesizer(None, {}, duration=bad).predict_durations(x)


# ------------------------------------------------------------------ P3: validate, then destroy
def test_P3_forced_training_with_a_nan_option_destroys_nothing(tmp_path, capsys):
    exp = duration_exp(tmp_path)
    stats.run(StageContext(exp_dir=exp, config={}))
    args = ["train", "--exp-dir", str(exp), "kind=duration", "name=dur", "model.hidden_dim=4", "model.num_layers=1",
            "train.epochs=1", "train.plot=false"]
    assert main(args) == 0
    model_dir = exp / "models" / "dur"
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    assert {"best.pt", "done.json", "config.yaml"} <= set(before)
    for bad, match in (("train.lr=.nan", "train.train.lr: expected a finite number, got nan"),
                       ("train.epochs=0", "epochs must be >= 1"), ("model.dropout=.inf", "finite number"),
                       ("name=../../escaped", "name: invalid name '../../escaped'")):
        one_line_error(capsys, 1, [*args, bad, "--force"], match)
        assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    assert not (tmp_path / "escaped").exists()
    stats_before = (exp / "stats" / "in_duration.npz").read_bytes()
    one_line_error(capsys, 1, ["stats", "--exp-dir", str(exp), "std_floor=nan"], "stats.std_floor: expected a finite")
    one_line_error(capsys, 1, ["stats", "--exp-dir", str(exp), "std_floor=0"], "std_floor must be > 0")
    assert (exp / "stats" / "in_duration.npz").read_bytes() == stats_before


# ------------------------------------------------------------------ P5: one writer per experiment
_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from sps.io.lock import experiment_lock
shard = tuple(int(v) for v in sys.argv[4].split("/")) if len(sys.argv) > 4 else None
with experiment_lock(sys.argv[1], sys.argv[2], shared=sys.argv[3] == "shared", shard=shard,
                     command="holder " + " ".join(sys.argv[1:])):
    print("locked", flush=True)
    time.sleep(120)
"""


def hold(tmp_path, exp, stage, mode, shard=None):
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER.format(root=str(ROOT)))
    proc = subprocess.Popen([sys.executable, str(script), str(exp), stage, mode, *([shard] if shard else [])],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def try_lock(exp, stage, shared=False, shard=None):
    """Take and release the lock in a fresh process (POSIX locks never conflict inside one)."""
    code = ("import sys; sys.path.insert(0, %r)\nfrom sps.io.lock import experiment_lock, ExperimentLocked\n"
            "try:\n    experiment_lock(%r, %r, %r, %r).acquire()\n    print('ok')\n"
            "except ExperimentLocked as e:\n    print(e)") % (str(ROOT), str(exp), stage, shared, shard)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()


def test_P5_a_second_writer_gets_one_line_naming_the_holder(tmp_path, capsys):
    exp = duration_exp(tmp_path)
    holder = hold(tmp_path, exp, "train", "exclusive")
    try:
        line = one_line_error(capsys, 1, ["stats", "--exp-dir", str(exp)], "is in use by sps train")
        assert f"pid {holder.pid}" in line and "holder " in line and ".sps.lock" in line
        assert not (exp / "stats").exists()                                  # refused before writing
        assert "in use" in try_lock(exp, "features", shared=True, shard=(1, 2))   # shards too
    finally:
        holder.kill()
        holder.wait()
    # kill -9 of the holder frees the experiment at once, and its record goes
    assert main(["stats", "--exp-dir", str(exp)]) == 0
    assert (exp / "stats" / "in_duration.npz").exists()
    assert (exp / ".sps.lock").read_text() == ""


def test_P5_shards_share_the_lock_and_exclusive_stages_wait_for_all(tmp_path):
    exp = tmp_path / "exp"
    a = hold(tmp_path, exp, "features", "shared", "1/2")
    b = hold(tmp_path, exp, "features", "shared", "2/2")
    try:
        lines = (exp / ".sps.lock").read_text().splitlines()
        assert len(lines) == 2 and all("\tfeatures\t" in ln for ln in lines)
        assert try_lock(exp, "linguistic", shared=True, shard=(1, 2)) == "ok"   # another stage's shard
        same = try_lock(exp, "features", shared=True, shard=(1, 2))
        assert same.startswith("shard 1/2 of sps features is in use by sps features (shard 1/2)")
        assert "is in use" in try_lock(exp, "features", shared=True)        # unsharded: every shard
        assert "is in use" in try_lock(exp, "stats")                         # exclusive
    finally:
        a.kill()
        b.kill()
        a.wait()
        b.wait()
    assert try_lock(exp, "stats") == "ok"


# ------------------------------------------------------------------ P5: run.sh passes signals on
_FAKE_SPS = """#!{python}
import os, signal, sys, time
out = os.environ["FAKE_SPS_OUT"]
def stop(sig, frame):
    time.sleep(0.3)                       # a stage that needs a moment to clean up
    open(out + ".signal", "w").write(signal.Signals(sig).name)
    sys.exit(128 + sig)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, stop)
open(out + ".tmp", "w").write(str(os.getpid()))
os.replace(out + ".tmp", out + ".pid")
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_P5_run_sh_forwards_signals_and_waits_for_its_stage(tmp_path, sig):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sps"
    fake.write_text(_FAKE_SPS.format(python=sys.executable))
    fake.chmod(0o755)
    out = tmp_path / "fake"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SPS_OUT": str(out)}
    proc = subprocess.Popen(["bash", str(RUN), "--exp-dir", str(tmp_path / "exp"), "--stage", "0",
                             "--stop-stage", "3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 30
    while not Path(f"{out}.pid").exists() and time.time() < deadline:
        time.sleep(0.05)
    stage_pid = int(Path(f"{out}.pid").read_text())
    os.kill(proc.pid, sig)                    # the script only, as a scheduler or `kill` does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert Path(f"{out}.signal").read_text() == sig.name      # the stage got it and cleaned up
    assert not Path(f"/proc/{stage_pid}").exists()            # and it ended before run.sh did
    assert f"interrupted by {sig.name}" in err and "sps prepare" in err
    assert "=== sps features" not in err                      # no later stage started
