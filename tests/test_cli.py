import subprocess
import sys

import numpy as np
import pytest

from sps.cli import STAGES, main
from sps.io import read_list, read_scp

sf = pytest.importorskip("soundfile", reason="needs soundfile (audio files)")


def _corpus(root, n=10, lists=True):
    (root / "wav").mkdir(parents=True)
    (root / "lab").mkdir()
    ids = [f"utt{i:02d}" for i in range(n)]
    for u in ids:
        sf.write(root / "wav" / f"{u}.flac", np.zeros(1600), 16000)
        (root / "lab" / f"{u}.lab").write_text("0 1000000 x^pau-pau+pau=x\n")
    sf.write(root / "wav" / "orphan.wav", np.zeros(10), 16000)  # no label: left out
    if lists:
        (root / "train.list").write_text("\n".join(ids[:6]) + "\n")
        (root / "dev.list").write_text("\n".join(ids[6:8]) + "\n")
        (root / "eval.list").write_text("\n".join(ids[8:] + ["unknown"]) + "\n")
    return ids


def test_prepare_local_corpus_with_lists(tmp_path):
    ids = _corpus(tmp_path / "corpus")
    exp = tmp_path / "exp"
    assert main(["prepare", "--exp-dir", str(exp), f"corpus.path={tmp_path / 'corpus'}"]) == 0
    assert read_list(exp / "data/train.list") == ids[:6]
    assert read_list(exp / "data/eval.list") == ids[8:]  # 'unknown' has no files
    wavs = read_scp(exp / "data/wav.scp")
    assert sorted(wavs) == ids and wavs["utt03"].endswith("wav/utt03.flac")
    assert read_scp(exp / "data/lab.scp")["utt03"].endswith("lab/utt03.lab")


def test_prepare_makes_splits_and_caps(tmp_path):
    ids = _corpus(tmp_path / "corpus", n=40, lists=False)
    exp = tmp_path / "exp"
    assert main(["prepare", "--exp-dir", str(exp), f"corpus.path={tmp_path / 'corpus'}"]) == 0
    splits = {s: read_list(exp / f"data/{s}.list") for s in ("train", "dev", "eval")}
    assert [len(splits[s]) for s in ("train", "dev", "eval")] == [36, 2, 2]
    assert sorted(sum(splits.values(), [])) == ids
    main(["prepare", "--exp-dir", str(exp), f"corpus.path={tmp_path / 'corpus'}", "corpus.max_utts=3"])
    assert read_list(exp / "data/train.list") == ids[:3]


def test_prepare_missing_corpus_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", "--exp-dir", str(tmp_path), f"corpus.path={tmp_path / 'nowhere'}"]) == 1
    assert "nowhere" in capsys.readouterr().err


def test_console_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "sps.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for stage in STAGES:
        assert stage in out.stdout


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_registered_stage_resolves(stage):
    from sps.cli import resolve
    assert callable(resolve(STAGES[stage][0]))
