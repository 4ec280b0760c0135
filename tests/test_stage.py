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
    summary = run_utterances(utts, process, desc="t", jobs=jobs, report=tmp_path / "report.txt")
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
