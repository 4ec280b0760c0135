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

import json
import logging
import os
import re
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


def trained_duration_exp(tmp_path):
    """:func:`duration_exp` with statistics and a tiny trained model ``models/dur``; returns
    the experiment and the ``sps train`` arguments that trained it."""
    exp = duration_exp(tmp_path)
    stats.run(StageContext(exp_dir=exp, config={}))
    args = ["train", "--exp-dir", str(exp), "kind=duration", "name=dur", "model.hidden_dim=4", "model.num_layers=1",
            "train.epochs=1", "train.plot=false"]
    assert main(args) == 0
    return exp, args


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
    exp, args = trained_duration_exp(tmp_path)
    model_dir = exp / "models" / "dur"
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    assert {"best.pt", "done.json", "config.yaml"} <= set(before)
    for bad, match in (("train.lr=.nan", "train.train.lr: expected a finite number, got nan"),
                       ("train.epochs=0", "epochs must be >= 1"), ("model.dropout=.inf", "finite number"),
                       ("name=../../escaped", "name: invalid name '../../escaped'")):
        one_line_error(capsys, 1, [*args, bad, "--force"], match)
        assert {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()} == before
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


def _default_signals():
    from sps.interrupt import SIGNALS
    for s in SIGNALS:
        signal.signal(s, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_P5_run_sh_forwards_signals_and_waits_for_its_stage(tmp_path, sig):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sps"
    fake.write_text(_FAKE_SPS.format(python=sys.executable))
    fake.chmod(0o755)
    out = tmp_path / "fake"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SPS_OUT": str(out)}
    # with the signals' default dispositions: a shell cannot trap a signal it inherits as ignored
    # (pytest started in the background of a script ignores SIGINT, under nohup SIGHUP)
    proc = subprocess.Popen(["bash", str(RUN), "--exp-dir", str(tmp_path / "exp"), "--stage", "0",
                             "--stop-stage", "3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_signals)
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


# ------------------------------------------------------------------ P1: outputs know what made them
def _dump(exp, kinds=("out_acoustic", "lf0_raw", "mel", "wav")):
    return {p.relative_to(exp): p.read_bytes() for k in kinds for p in sorted((exp / "dump").glob(f"*/{k}/*.npy"))}


def _records(stamps: Path) -> list[Path]:
    """The finished per-utterance records of a stage (not a record's temporary file)."""
    return [p for p in stamps.glob("*.json") if not p.name.startswith(".")] if stamps.is_dir() else []


def test_P1_a_killed_forced_run_then_a_plain_rerun_redoes_exactly_the_stale_utterances(corpus_exp, capsys):
    exp, utts = corpus_exp(4)
    ref, _ = corpus_exp(4, name="ref")
    assert main(["features", "--exp-dir", str(ref), "f0_method=dio", "f0_floor=90"]) == 0
    assert main(["features", "--exp-dir", str(exp), "f0_method=dio"]) == 0
    stamps = exp / "dump" / "train" / ".stamps" / "features"
    old = {p.name: p.read_text() for p in _records(stamps)}
    # `--force` with another F0 floor (same dimensions), killed with SIGKILL after its first utterance
    proc = subprocess.Popen([sys.executable, "-m", "sps.cli", "features", "--exp-dir", str(exp), "f0_method=dio",
                             "f0_floor=90", "--force"], cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and all(p.read_text() == old[p.name] for p in _records(stamps)):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    capsys.readouterr()
    stale = sum(p.read_text() == old[p.name] for p in _records(stamps))
    assert 1 <= stale < 4, "the kill came too late"
    # statistics refuse the mix, naming the stage to rerun
    one_line_error(capsys, 1, ["stats", "--exp-dir", str(exp)], "were made with other settings than")
    # the plain rerun (the spec now says floor 90) redoes exactly the stale ones and says how many
    assert main(["features", "--exp-dir", str(exp), "f0_method=dio", "f0_floor=90"]) == 0
    assert f"features train: {stale} ok ({stale} stale: redone), {4 - stale} skipped" in capsys.readouterr().err
    assert _dump(exp) == _dump(ref)                       # nothing of the old setting is left
    assert not [p for p in exp.rglob(".*sps-*")]          # no temporary file survived the kill
    assert main(["stats", "--exp-dir", str(exp)]) == 0


def test_P1_re_preparing_another_corpus_redoes_what_changed_down_to_the_metrics(tmp_path, capsys):
    from conftest import CORPUS
    corpora = {}
    for name, picks in (("A", ["slt_0001", "slt_0002", "slt_0003"]), ("B", ["slt_0001", "slt_0004", "slt_0003"])):
        root = tmp_path / name
        (root / "wav").mkdir(parents=True)
        (root / "lab").mkdir()
        for i, src in enumerate(picks):       # same ids, B's u1 has other audio and labels
            (root / "wav" / f"u{i}.flac").symlink_to(CORPUS / "wav" / f"{src}.flac")
            (root / "lab" / f"u{i}.lab").symlink_to(CORPUS / "lab" / f"{src}.lab")
            (root / f"{'train' if i < 2 else 'eval'}.list").open("a").write(f"u{i}\n")
        (root / "dev.list").write_text("")
        corpora[name] = root
    exp = tmp_path / "exp"
    steps = [["features", "f0_method=dio"], ["linguistic"], ["synth", "copy_synthesis=true", "splits=[train]"],
             ["eval", "split=train"]]
    assert main(["prepare", "--exp-dir", str(exp), f"corpus.path={corpora['A']}"]) == 0
    for step in steps:
        assert main([step[0], "--exp-dir", str(exp), *step[1:]]) == 0, step
    before = json.loads((exp / "eval" / "world_copy" / "train" / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["prepare", "--exp-dir", str(exp), f"corpus.path={corpora['B']}"]) == 0
    for step in steps:
        assert main([step[0], "--exp-dir", str(exp), *step[1:]]) == 0, step
    err = capsys.readouterr().err
    for desc in ("features train", "linguistic train", "synth world_copy train"):
        assert f"{desc}: 1 ok (1 stale: redone), 1 skipped" in err, desc
    assert "features eval: 0 ok, 1 skipped" in err
    after = json.loads((exp / "eval" / "world_copy" / "train" / "metrics.json").read_text())
    assert after["utterances"]["u0"] == before["utterances"]["u0"]
    assert after["utterances"]["u1"] != before["utterances"]["u1"]      # scored again, on B's u1
    n = len(np.load(exp / "dump" / "train" / "out_acoustic" / "u1.npy"))
    assert after["utterances"]["u1"]["frames"] == n
    lab_end = int((CORPUS / "lab" / "slt_0004.lab").read_text().split()[-2])
    assert n == round(lab_end / 50000)                                   # B's u1, not A's


def _write(out_dir, utt):
    save_array(Path(out_dir) / f"{utt}.npy", np.arange(6.0).reshape(3, 2) * len(utt))


@pytest.mark.parametrize("damage", ["flip a byte, same size and time", "truncate", "delete", "garbage record",
                                    "no record", "input changed"])
def test_P1_damaged_or_unrecorded_outputs_are_redone(tmp_path, damage):
    import functools
    from sps.stages.runner import run_utterances
    from sps.stages.stamps import Stamps, digest
    out, inputs = tmp_path / "out", {"a": "1", "bb": "2", "ccc": "3"}

    def stamps():
        return Stamps(tmp_path, tmp_path / ".stamps", outputs=lambda u: [out / f"{u}.npy"],
                      key=lambda u: digest(inputs[u]))
    process = functools.partial(_write, str(out))
    assert run_utterances(list(inputs), process, desc="t", stamps=stamps()).ok == 3
    victim = out / "bb.npy"
    if damage.startswith("flip"):
        st, data = victim.stat(), bytearray(victim.read_bytes())
        data[-1] ^= 0x01
        victim.write_bytes(bytes(data))
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:-8])
    elif damage == "delete":
        victim.unlink()
    elif damage == "garbage record":
        (tmp_path / ".stamps" / "bb.json").write_text("{not json")
    elif damage == "no record":
        (tmp_path / ".stamps" / "bb.json").unlink()
    else:
        inputs["bb"] = "changed"
    summary = run_utterances(list(inputs), process, desc="t", stamps=stamps())
    assert (summary.ok, summary.stale, summary.skipped) == (1, 1, 2)
    assert np.array_equal(np.load(victim), np.arange(6.0).reshape(3, 2) * 2)
    assert run_utterances(list(inputs), process, desc="t", stamps=stamps()).skipped == 3


def test_P1_a_model_trained_on_other_data_is_retrained(tmp_path, capsys):
    exp, args = trained_duration_exp(tmp_path)
    first = json.loads((exp / "models" / "dur" / "done.json").read_text())["data_digest"]
    assert main(args) == 0 and "is complete (done.json, same data)" in capsys.readouterr().out
    y = np.load(exp / "dump" / "train" / "out_duration" / "train0.npy")
    save_array(exp / "dump" / "train" / "out_duration" / "train0.npy", y + 1)      # the data changed
    assert main(args) == 0
    assert "models/dur is stale (it was trained on other data" in capsys.readouterr().err
    assert json.loads((exp / "models" / "dur" / "done.json").read_text())["data_digest"] != first
    assert not (exp / "models" / "dur" / ".replaced").exists()


# ------------------------------------------------------------------ P4, P9: non-finite input fails its utterance alone
def _nan_into(path, frame=2, col=1):
    x = np.load(path)
    x[frame, col] = np.nan
    np.save(path, x)


def test_P4_vocode_names_a_non_finite_file_and_fails_when_everything_fails(corpus_exp, capsys):
    exp, utts = corpus_exp(3)
    (exp / "data" / "eval.list").write_text(f"{utts[0][0]}\n{utts[1][0]}\n")
    assert main(["features", "--exp-dir", str(exp), "f0_method=dio", "mgc_order=24"]) == 0
    assert main(["stats", "--exp-dir", str(exp)]) == 0
    conf = ROOT / "recipes" / "slt_festival" / "conf" / "source_filter.yaml"
    vocode = ["vocode", "--exp-dir", str(exp), "--config", str(conf), "vocode.metrics=false"]
    bad = exp / "dump" / "eval" / "out_acoustic" / f"{utts[1][0]}.npy"
    _nan_into(bad)
    assert main([*vocode, "--max-failed", "0.5"]) == 0          # one of two fails, alone and named
    err = capsys.readouterr().err
    assert "source_filter_copy/eval: 1 ok, 0 skipped (already done), 1 failed" in err
    assert (exp / "synth" / "source_filter_copy" / "eval" / f"{utts[0][0]}.wav").exists()
    assert not (exp / "synth" / "source_filter_copy" / "eval" / f"{utts[1][0]}.wav").exists()
    _nan_into(exp / "dump" / "eval" / "out_acoustic" / f"{utts[0][0]}.npy")
    assert main([*vocode, "--force"]) == 1                     # everything failed: the stage fails
    summary, line = capsys.readouterr().err.strip().splitlines()
    assert summary == "vocode source_filter_copy/eval: 0 ok, 0 skipped (already done), 2 failed"
    assert line.startswith("sps vocode: error: StageFailed: vocode: source_filter_copy/eval: 2 of 2 failed")
    assert f"{utts[0][0]}.npy: non-finite conditioning value nan at frame 2" in line


def test_P9_stats_train_and_eval_leave_out_a_non_finite_utterance_and_say_so(tmp_path, capsys, caplog):
    from sps.stages import evaluate
    exp = duration_exp(tmp_path, n_train=6)
    bad = exp / "dump" / "train" / "in_duration" / "train3.npy"
    _nan_into(bad)
    assert main(["stats", "--exp-dir", str(exp)]) == 0
    err = capsys.readouterr().err
    assert "stats: 1 of 6 train utterances left out" in err and "train3.npy: non-finite value nan at frame 2" in err
    good = [f"train{i}" for i in range(6) if i != 3]
    for kind in ("in_duration", "out_duration"):   # exactly the statistics of the other five
        x = np.concatenate([np.load(exp / "dump" / "train" / kind / f"{u}.npy") for u in good]).astype(np.float64)
        st = np.load(exp / "stats" / f"{kind}.npz")
        np.testing.assert_allclose(st["mean"], x.mean(0), rtol=1e-6)
        np.testing.assert_allclose(st["std"], np.maximum(x.std(0), 1e-5), rtol=1e-5)
        assert st["count"] == len(x)
    with caplog.at_level(logging.ERROR):
        assert main(["train", "--exp-dir", str(exp), "kind=duration", "name=dur", "model.hidden_dim=4",
                     "model.num_layers=1", "train.epochs=1", "train.plot=false"]) == 0
    assert "train3: left out of train" in caplog.text and "non-finite" in caplog.text
    # eval: a generated file with NaN fails that utterance; the table counts what it averaged
    spec = {"kind": "out_acoustic", "dim": 4, "sample_rate": 16000, "frame_shift_ms": 5.0,
            "windows": [[0, 0, [1.0]]], "streams": [{"name": n, "start": i, "static_dim": 1, "num_windows": 1}
                                                    for i, n in enumerate(["mgc", "lf0", "vuv", "bap"])]}
    from sps.io import write_json
    write_json(exp / "dump" / "out_acoustic.json", spec)
    rng = np.random.default_rng(1)
    write_list(exp / "data" / "eval.list", ["e0", "e1", "e2"])
    for u in ("e0", "e1", "e2"):
        nat = np.column_stack([rng.normal(size=20), np.full(20, 5.0), np.ones(20), rng.normal(size=20)])
        save_array(exp / "dump" / "eval" / "out_acoustic" / f"{u}.npy", nat)
        save_array(exp / "synth" / "sys" / "eval" / f"{u}.npy", nat + 0.1)
    _nan_into(exp / "synth" / "sys" / "eval" / "e1.npy")
    assert main(["eval", "--exp-dir", str(exp), "systems=[sys]"]) == 0
    m = json.loads((exp / "eval" / "sys" / "eval" / "metrics.json").read_text())
    assert m["num_utterances"] == 2 and sorted(m["utterances"]) == ["e0", "e2"] and "e1.npy" in m["failed"]["e1"]
    table = capsys.readouterr().out
    assert "2 (+1 failed)" in table
    assert m["mean"]["mcd_db"] == pytest.approx(np.mean([m["utterances"][u]["mcd_db"] for u in ("e0", "e2")]))


# ------------------------------------------------------------------ P9: clear messages, one line each
@pytest.mark.parametrize("override,message", [
    ("fft_size=7", "features: fft_size must be a power of two, got 7"),
    ("mgc_order=100000", "mgc_order must be in [1, 255], got 100000"),
    ("fft_size=64", "fft_size 64 is too small for order 59 (needs >= 120)"),
    ("f0_floor=.nan", "features.f0_floor: expected a finite number, got nan"),
    ("num_mels=100000", "num_mels must be in"),
])
def test_P9_impossible_analysis_settings_fail_before_any_native_call(corpus_exp, capsys, override, message):
    exp, _ = corpus_exp(1)
    one_line_error(capsys, 1, ["features", "--exp-dir", str(exp), override], message)
    assert not (exp / "dump").exists()


def test_P9_messages_name_the_file(tmp_path, capsys):
    exp = duration_exp(tmp_path)
    stats.run(StageContext(exp_dir=exp, config={}))
    assert main(["--version"]) == 0 and capsys.readouterr()
    line = one_line_error(capsys, 2, ["stats", "--exp-dir", str(exp), "--log-level", "LOUD"], "--log-level 'LOUD'")
    assert "not a level" in line
    binary = tmp_path / "conf.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    one_line_error(capsys, 1, ["stats", "--exp-dir", str(exp), "--config", str(binary)],
                   f"{binary}: not a UTF-8 text file")
    one_line_error(capsys, 1, ["stats", "--exp-dir", str(exp), "--config", str(tmp_path)], "is a directory")
    npz = exp / "stats" / "in_duration.npz"
    npz.write_bytes(npz.read_bytes()[:200])                       # truncated
    one_line_error(capsys, 1, ["train", "--exp-dir", str(exp), "kind=duration", "name=d"],
                   f"{npz}: not a readable statistics file")
    stats.run(StageContext(exp_dir=exp, config={}))
    (exp / "models" / "empty").mkdir(parents=True)
    (exp / "models" / "empty" / "config.yaml").write_text("")
    one_line_error(capsys, 1, ["train", "--exp-dir", str(exp), "kind=duration", "init_from=empty"],
                   "empty/config.yaml: not a model config (missing model, in_dim")
    one_line_error(capsys, 1, ["stats", "--exp-dir", str(tmp_path / "nowhere")], "experiment directory not found")


@pytest.mark.parametrize("override", ["name=../../outside", "name=/tmp/abs", "acoustic_model=../x",
                                      "splits=[../../x]", "duration_model=a/b"])
def test_P8_names_never_become_paths_unchecked(tmp_path, capsys, override):
    exp = duration_exp(tmp_path)
    one_line_error(capsys, 1, ["synth", "--exp-dir", str(exp), override], "invalid name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_P9_out_to_a_directory_is_refused_naming_it(tmp_path):
    from sps.io import write_wav
    with pytest.raises(IsADirectoryError, match=f"{tmp_path}: is a directory"):
        write_wav(tmp_path, np.zeros(160), 16000)
    assert list(tmp_path.iterdir()) == []                       # and no temporary file left


# ------------------------------------------------------------------ P9: full disk
def test_P9_a_file_size_limit_during_checkpointing_names_the_checkpoint(tmp_path, capsys):
    exp = duration_exp(tmp_path)
    stats.run(StageContext(exp_dir=exp, config={}))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))      # (Python ignores SIGXFSZ: writes fail)
    try:
        line = one_line_error(capsys, 1, ["train", "--log-level", "error", "--exp-dir", str(exp), "kind=duration",
                                          "name=dur", "model.hidden_dim=64", "train.epochs=1", "train.plot=false"],
                              ".pt: cannot write: file too large")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "models/dur/" in line
    assert not [p for p in (exp / "models" / "dur").iterdir() if ".sps-" in p.name]   # no temp file left


def test_P9_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path):
    """A real ENOSPC on a small tmpfs (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        from sps.io import save_array as save
        target = mnt / "x.npy"
        save(target, np.zeros(1000))
        before = target.read_bytes()
        with pytest.raises(OSError, match=f"{target}: cannot write: no space left on device"):
            save(target, np.zeros(1_000_000))
        assert target.read_bytes() == before
        assert [p.name for p in mnt.iterdir()] == ["x.npy"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ------------------------------------------------------------------ P5: kill, race
def _wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError
        time.sleep(0.02)


def test_P5_sigterm_ends_a_stage_cleanly_and_the_rerun_finishes_the_same_files(corpus_exp, capsys):
    exp, _ = corpus_exp(3)
    ref, _ = corpus_exp(3, name="ref")
    assert main(["features", "--exp-dir", str(ref), "f0_method=dio"]) == 0
    stamps = exp / "dump" / "train" / ".stamps" / "features"
    proc = subprocess.Popen([sys.executable, "-m", "sps.cli", "features", "--exp-dir", str(exp), "f0_method=dio"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _records(stamps))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "sps features: interrupted (SIGTERM)" in err
    assert (exp / ".sps.lock").read_text() == ""                    # the lock and its record are gone
    assert not [p for p in exp.rglob(".*sps-*")]                    # and every temporary file
    done = len(_records(stamps))
    capsys.readouterr()
    assert main(["features", "--exp-dir", str(exp), "f0_method=dio"]) == 0
    # an utterance whose features were written but whose record was not is redone as stale
    assert re.search(rf"{3 - done} ok( \(\d stale: redone\))?, {done} skipped", capsys.readouterr().err)
    assert _dump(exp) == _dump(ref)


def test_P5_a_signal_inside_a_deferred_block_is_raised_when_it_ends():
    from sps.interrupt import Interrupted, deferred, signals_interrupt
    from sps.train.trainer import _SignalSafeWriter

    done = []

    class Writer:           # stands in for a SummaryWriter: a signal arrives halfway through a call
        def add_scalar(self, tag, value, step):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)                      # the handler has run by now
            done.append((tag, value, step))

    with signals_interrupt():
        with pytest.raises(Interrupted) as err:
            _SignalSafeWriter(Writer()).add_scalar("train/loss", 1.0, 3)
        assert err.value.signum == signal.SIGTERM and done == [("train/loss", 1.0, 3)]   # finished, then raised
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN                       # clean-up is not interrupted
    with signals_interrupt():
        with pytest.raises(Interrupted), deferred():
            with deferred():                      # nested: raised by the outermost block only
                os.kill(os.getpid(), signal.SIGTERM)    # (not SIGHUP: under nohup it stays ignored)
                time.sleep(0.05)
            done.append("outer")
        assert done[-1] == "outer"
    with signals_interrupt():
        with pytest.raises(Interrupted):          # outside a deferred block: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
            done.append("never")
    assert done[-1] == "outer"


def test_P5_a_second_training_on_one_experiment_is_refused_and_the_first_is_untouched(tmp_path, capsys):
    exp = duration_exp(tmp_path)
    stats.run(StageContext(exp_dir=exp, config={}))
    args = [sys.executable, "-m", "sps.cli", "train", "--exp-dir", str(exp), "kind=duration", "name=dur",
            "model.hidden_dim=8", "model.num_layers=1", "train.max_steps=100000", "train.epochs=100000",
            "train.checkpoint_every=50",
            "train.plot=false", "train.log_every=1"]
    err_path = tmp_path / "first.err"
    with open(err_path, "w") as err:     # faulthandler: a process that hangs shows where, on SIGABRT
        first = subprocess.Popen(args, cwd=ROOT, stderr=err, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        _wait_for(lambda: (exp / "models" / "dur" / "log.jsonl").exists())     # training
        line = one_line_error(capsys, 1, args[3:], f"is in use by sps train, pid {first.pid}")
        assert "train.max_steps=100000" in line
        assert first.poll() is None                                 # the first trains on
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(timeout=60)
        except subprocess.TimeoutExpired:
            first.send_signal(signal.SIGABRT)
            first.wait()
            pytest.fail(f"SIGTERM did not end the training within 60 s:\n{err_path.read_text()[-6000:]}")
    assert first.returncode == 128 + signal.SIGTERM
    log = (exp / "models" / "dur" / "log.jsonl").read_text().splitlines()
    steps = [r["step"] for r in map(json.loads, log) if "train_loss" in r]
    assert steps and steps == sorted(set(steps))                    # one writer: no duplicated records


_NS_WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from sps.io import atomic_path
with atomic_path({target!r}) as tmp:
    tmp.write_bytes(b"half written")
    print(tmp.name, flush=True)
    time.sleep(60)
"""


def test_P7_a_live_writer_in_another_pid_namespace_keeps_its_temp_file(tmp_path):
    """Another PID namespace stands in for another node sharing the directory: its PIDs
    mean nothing here, so the sweep must leave its files alone (it used to delete them)."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--pid", "--fork", "true"],
                                                        capture_output=True).returncode:
        pytest.skip("cannot make a PID namespace here")
    from sps.io import sweep_temp_files
    script = tmp_path / "writer.py"
    script.write_text(_NS_WRITER.format(root=str(ROOT), target=str(tmp_path / "d" / "x.npy")))
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable, str(script)],
                            stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        assert "-2-" in name or "-1-" in name          # a tiny PID, dead or someone else's out here
        assert sweep_temp_files(tmp_path) == 0
        assert (tmp_path / "d" / name).exists()
    finally:
        proc.kill()
        proc.wait()


def test_P7_the_sweep_stays_in_the_directories_a_stage_writes(tmp_path):
    from sps.io import atomic_path, node_id
    written, other = tmp_path / "exp" / "stats", tmp_path / "exp" / "notes"
    for d in (written, other):
        d.mkdir(parents=True)
        (d / f".x.npz.sps-{node_id()}-999999999-abcdefgh.npz").write_bytes(b"left by a killed run")
    with atomic_path(written / "y.npz") as tmp:     # this process's first write there sweeps it
        tmp.write_bytes(b"new")
    assert [p.name for p in written.iterdir()] == ["y.npz"]
    assert len(list(other.iterdir())) == 1    # a directory the stage does not write is not touched
