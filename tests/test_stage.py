import functools
import os
from pathlib import Path

import numpy as np
import pytest

from sps.config import load_config
from sps.io import save_array
from sps.stages.runner import parse_shard, run_utterances, select_shard


def _square(out_dir, utt):
    if utt == "bad":
        raise ValueError(f"{utt}.wav: corrupt audio")
    save_array(Path(out_dir) / f"{utt}.npy", np.full((3, 2), float(len(utt))))


@pytest.mark.parametrize("jobs", [1, 2])
def test_bad_utterance_is_reported_and_skipped(tmp_path, jobs):
    utts = ["a", "bb", "bad", "ccc"]
    process = functools.partial(_square, str(tmp_path))
    summary = run_utterances(utts, process, desc="t", jobs=jobs, report=tmp_path / "report.txt", max_failed=None)
    assert summary.ok == 3 and list(summary.failed) == ["bad"]
    assert "corrupt audio" in summary.failed["bad"]
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["a.npy", "bb.npy", "ccc.npy"]
    assert "FAILED bad" in (tmp_path / "report.txt").read_text()


def test_resume_skips_done_and_redoes_missing(tmp_path):
    utts = ["a", "bb", "ccc"]
    process = functools.partial(_square, str(tmp_path))
    done = lambda u: (tmp_path / f"{u}.npy").exists()  # noqa: E731
    run_utterances(utts, process, desc="t", done=done)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.npy")}
    os.remove(tmp_path / "bb.npy")
    summary = run_utterances(utts, process, desc="t", done=done)
    assert (summary.ok, summary.skipped) == (1, 2)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.npy")} == before


def test_shards_partition_the_corpus():
    utts = [f"u{i}" for i in range(11)]
    parts = [select_shard(utts, (k, 4)) for k in range(1, 5)]
    assert sorted(sum(parts, [])) == sorted(utts)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "x"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_config_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: 1\nmodel:\n  layers: [2, 3]\n  lr: 0.1\n")
    cfg = load_config(p, ["model.lr=1e-3", "model.kind=lstm", "b.c=null", "a=[1, 2]"],
                      defaults={"model": {"dropout": 0.0}})
    assert cfg == {"a": [1, 2], "model": {"layers": [2, 3], "lr": 1e-3, "kind": "lstm", "dropout": 0.0},
                   "b": {"c": None}}
    with pytest.raises(ValueError, match="key=value"):
        load_config(p, ["nonsense"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_too_many_failures_fail_the_stage_and_are_registered(tmp_path):
    from sps.stages.runner import StageFailed, read_rejected
    process = functools.partial(_square, str(tmp_path))
    reg = tmp_path / "rejected" / "features.txt"
    with pytest.raises(StageFailed, match=r"1 of 2 utterances failed .*max-failed 0.2.*report.txt"):
        run_utterances(["a", "bad"], process, desc="t", report=tmp_path / "report.txt", rejected=reg)
    assert list(read_rejected(reg)) == ["bad"] and "corrupt audio" in read_rejected(reg)["bad"]
    with pytest.raises(StageFailed, match="1 of 1"):           # everything failed: always an error
        run_utterances(["bad"], process, desc="t", max_failed=1.0)
    summary = run_utterances(["a", "bb", "ccc", "dddd", "bad"], process, desc="t", max_failed=0.2, rejected=reg)
    assert summary.ok == 4                                      # 1 of 5 is not more than 0.2


def test_stale_temp_files_are_swept(tmp_path):
    from sps.io import atomic_path, node_id, sweep_temp_files
    target = tmp_path / "d" / "x.npy"
    with atomic_path(target) as live:
        assert f".x.npy.sps-{node_id()}-{os.getpid()}-" in live.name     # temp names carry the node
        live.write_bytes(b"half")
        dead = live.with_name(live.name.replace(f"-{os.getpid()}-", "-999999999-"))
        dead.write_bytes(b"left by a killed process")
        remote = dead.with_name(dead.name.replace(node_id(), "node7+f0"))
        remote.write_bytes(b"another host's writer: its PID means nothing here")
        assert sweep_temp_files(tmp_path) == 1                  # the live one and the remote one stay
        assert live.exists() and not dead.exists() and remote.exists()
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == [remote.name]


_KILL_SCRIPT = """
import functools, os, sys, time
sys.path.insert(0, {root!r})
from sps.stages.runner import run_utterances

def slow(out, utt):
    open(os.path.join(out, utt + ".pid"), "w").write(str(os.getpid()))
    time.sleep(60)

if __name__ == "__main__":
    run_utterances(["a", "b"], functools.partial(slow, {out!r}), desc="t", jobs=2)
"""


def test_workers_die_with_a_killed_stage(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "stage.py"
    script.write_text(_KILL_SCRIPT.format(root=root, out=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2, "workers did not start"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    alive = pids
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in
                 Path(f"/proc/{p}/stat").read_text().split()[2]]
    assert not alive, f"workers outlived their stage: {alive}"
