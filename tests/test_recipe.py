"""The recipe script itself, as a user runs it: stages 0-3 on a tiny subset."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sps.io import read_json, read_list

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "slt_festival" / "run.sh"
PIPELINE = ROOT / "recipes" / "common" / "pipeline.sh"


def _run(*args, exp):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(RUN), "--exp-dir", str(exp), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


def test_help_lists_stages():
    out = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("prepare", "features", "linguistic", "stats", "synth", "eval", "vocode", "report"):
        assert word in out.stdout


def test_unknown_argument_fails(tmp_path):
    out = _run("--bogus", exp=tmp_path)
    assert out.returncode == 2 and "unknown argument" in out.stderr


@pytest.mark.slow
def test_stages_0_to_3_with_overrides_and_resume(tmp_path):
    exp = tmp_path / "exp"
    args = ["--stage", "0", "--stop-stage", "3", "--jobs", "1",
            "prepare.corpus.max_utts=2", "features.f0_method=dio", "features.mgc_order=24"]
    out = _run(*args, exp=exp)
    assert out.returncode == 0, out.stderr[-3000:]
    utts = read_list(exp / "data" / "train.list")
    assert len(utts) == 2
    spec = read_json(exp / "dump" / "out_acoustic.json")
    assert spec["streams"][0]["static_dim"] == 25  # the override reached the features stage
    assert spec["analysis"]["f0_method"] == "dio"
    for utt in utts:
        y = np.load(exp / "dump" / "train" / "out_acoustic" / f"{utt}.npy")
        x = np.load(exp / "dump" / "train" / "in_acoustic" / f"{utt}.npy")
        d = np.load(exp / "dump" / "train" / "out_duration" / f"{utt}.npy")
        assert y.shape[0] == x.shape[0] == int(d.sum()) and y.shape[1] == spec["dim"]
    stats = np.load(exp / "stats" / "out_acoustic.npz")
    assert stats["mean"].shape == (spec["dim"],)
    # a rerun resumes: nothing is recomputed, files stay byte-identical
    before = {p: p.read_bytes() for p in (exp / "dump").rglob("*.npy")}
    out = _run(*args, exp=exp)
    assert out.returncode == 0
    assert "0 ok" in out.stdout
    assert {p: p.read_bytes() for p in (exp / "dump").rglob("*.npy")} == before


@pytest.mark.parametrize("gpu", [0, 1])
def test_model_names_come_from_conf(gpu):
    out = subprocess.run(["bash", "-c", f"source {PIPELINE}; conf_dirs=({RUN.parent}/conf); gpu={gpu}; "
                          "echo $(for f in $(acoustic_confs dnn) $(acoustic_confs conv lstm); do conf_name $f; done)"],
                         capture_output=True, text=True, timeout=60)
    names = out.stdout.split()
    if gpu:   # --gpu: the *_gpu.yaml configs only, MSE models before their MGE fine-tuning
        assert names == ["acoustic_conv_gpu", "acoustic_lstm_gpu", "acoustic_conv_mge_gpu", "acoustic_lstm_mge_gpu"]
    else:
        assert names == ["acoustic_dnn", "acoustic_dnn_mge", "acoustic_conv", "acoustic_conv_mge"], out.stderr


@pytest.mark.slow
def test_cmd_prefix_runs_per_utterance_stages_as_shard_jobs(tmp_path):
    exp = tmp_path / "exp"
    calls = tmp_path / "calls.txt"
    prefix = tmp_path / "submit.sh"      # a stand-in for srun/qsub: records, then runs
    prefix.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\nexec "$@"\n')
    prefix.chmod(0o755)
    out = _run("--stage", "0", "--stop-stage", "2", "--cmd", str(prefix), "--nj", "2",
               "prepare.corpus.max_utts=2", "features.f0_method=dio", exp=exp)
    assert out.returncode == 0, out.stderr[-3000:]
    recorded = calls.read_text().splitlines()
    for stage in ("features", "linguistic"):
        shards = sorted(line.split("--shard ")[1].split()[0] for line in recorded if f"sps {stage} " in line)
        assert shards == ["1/2", "2/2"], recorded
    assert not any("sps prepare" in line for line in recorded)     # not a per-utterance stage
    for split in ("train", "dev", "eval"):
        for utt in read_list(exp / "data" / f"{split}.list"):
            assert (exp / "dump" / split / "out_acoustic" / f"{utt}.npy").exists()
            assert (exp / "dump" / split / "in_acoustic" / f"{utt}.npy").exists()
    logs = sorted(p.name for p in (exp / "log").iterdir())
    assert any(n.startswith("prepare.") for n in logs) and sum(n.startswith("features.") for n in logs) == 2
    # a failing stage stops the recipe with the log path
    out = _run("--stage", "3", "--stop-stage", "3", "stats.std_floor=abc", exp=exp)
    assert out.returncode != 0 and "stats.std_floor: expected float" in out.stdout + out.stderr
    assert "failed" in out.stderr and "log/stats." in out.stderr
