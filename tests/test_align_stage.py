"""The ``sps align`` stage: inputs as ``sps ingest`` writes them, outputs the later stages read,
bad utterances reported one line each while the rest go on, resume, a trained model reused,
the sharded (file-based) path equal to the one-process run."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sps.align.textgrid import read_textgrid_phones, write_textgrid
from sps.cli import main
from sps.frontend import load_labels
from sps.io import read_json, read_list, read_scp

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "slt_festival"
SENTENCES = dict(line.split("\t", 1) for line in (CORPUS / "sentences.txt").read_text().splitlines())
TINY = ["aligner.flat_iterations=2", "aligner.mixtures=[1,2]", "aligner.iterations=1"]
festival = pytest.mark.skipif(shutil.which("festival") is None, reason="festival is not installed")


def make_input(exp: Path, utts: list[str], text: dict | None = None, wavs: dict | None = None,
               labels: dict | None = None, textgrids: dict | None = None) -> None:
    """The files ``sps ingest`` writes: lists, wav.scp, text (and the optional scp files)."""
    data = exp / "data"
    data.mkdir(parents=True, exist_ok=True)
    wavs = {u: str(CORPUS / "wav" / f"{u}.flac") for u in utts} | (wavs or {})
    text = {u: SENTENCES.get(u, "") for u in utts} | (text or {})
    (data / "wav.scp").write_text("".join(f"{u} {wavs[u]}\n" for u in utts))
    (data / "text").write_text("".join(f"{u} {text[u]}\n" for u in utts if u in text))
    (data / "train.list").write_text("".join(u + "\n" for u in utts[:-1]))
    (data / "dev.list").write_text(utts[-1] + "\n")
    (data / "eval.list").write_text("")
    for name, table in (("lab_untimed", labels), ("textgrid", textgrids)):
        if table:
            (data / f"{name}.scp").write_text("".join(f"{u} {p}\n" for u, p in table.items()))


def frames_of(path) -> int:
    info = sf.info(str(path))
    return round(info.frames / info.samplerate / 0.005)


def check_outputs(exp: Path, utts: list[str]) -> None:
    scp = read_scp(exp / "data" / "lab.scp")
    assert sorted(scp) == sorted(utts)
    for u in utts:
        lab = load_labels(scp[u])
        assert lab.num_frames() == frames_of(CORPUS / "wav" / f"{u}.flac")
        assert (lab.times % 50000 == 0).all()
        state = load_labels(exp / "align" / "lab_state" / f"{u}.lab")
        assert state.num_states == 5 and state.contexts == lab.contexts
        np.testing.assert_array_equal(state.times[:, [0, 5]], lab.times)
        entries, end = read_textgrid_phones(exp / "align" / "textgrid" / f"{u}.TextGrid")
        assert [e[2] for e in entries] == [c.split("-")[1].split("+")[0] for c in lab.contexts]


@festival
@pytest.mark.slow
def test_align_stage_end_to_end_with_bad_utterances(tmp_path, capsys):
    good = ["slt_0001", "slt_0003", "slt_0005", "slt_0008", "slt_0012", "slt_0016"]
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(800) + 0.01 * np.random.default_rng(0).normal(size=800), 16000)
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    bad = {"empty": "", "nothing": "!!! ???", "short": SENTENCES["slt_0002"], "missing": "Hello there.",
           "broken": "Hello there."}
    wavs = {"short": str(short), "missing": str(tmp_path / "nope.wav"), "broken": str(broken),
            "empty": str(CORPUS / "wav" / "slt_0004.flac"), "nothing": str(CORPUS / "wav" / "slt_0006.flac")}
    exp = tmp_path / "exp"
    make_input(exp, good + list(bad), text=bad, wavs=wavs)
    assert main(["align", "--exp-dir", str(exp), "--max-failed", "0.5", *TINY]) == 0
    out = capsys.readouterr()
    report = read_json(exp / "align" / "report.json")
    assert report["aligned"] == len(good) and report["failed"] == len(bad)
    reasons = {u: f["reason"] for u, f in report["failures"].items()}
    assert "empty text" in reasons["empty"]
    assert "no speakable text" in reasons["nothing"]
    assert "too short" in reasons["short"]
    assert "not found" in reasons["missing"]
    assert "unreadable" in reasons["broken"]
    text = (exp / "align" / "report.txt").read_text()
    for u in bad:     # one line each in the summary
        assert sum(line.startswith(f"  {u}: ") for line in text.splitlines()) == 1
    check_outputs(exp, good)
    lists = read_list(exp / "data" / "train.list") + read_list(exp / "data" / "dev.list")
    assert sorted(lists) == sorted(good)
    assert set(line.split("\t")[0] for line in (exp / "data" / "rejected" / "align.txt").read_text().splitlines()) \
        == set(bad)
    state = torch.load(exp / "align" / "model.pt", weights_only=True)
    assert state["format"] == "sps-aligner-1"
    assert "align: 6 of 11 utterances aligned, 5 failed" in out.out

    # a rerun resumes: nothing is redone
    stamp = (exp / "align" / "lab" / "slt_0001.lab").stat().st_mtime_ns
    assert main(["align", "--exp-dir", str(exp), "--max-failed", "0.5", *TINY]) == 0
    assert (exp / "align" / "lab" / "slt_0001.lab").stat().st_mtime_ns == stamp

    # the trained aligner aligns a new experiment without training
    exp2 = tmp_path / "exp2"
    make_input(exp2, good[:2])
    assert main(["align", "--exp-dir", str(exp2), f"model={exp / 'align' / 'model.pt'}"]) == 0
    assert not (exp2 / "align" / "train").exists()
    for u in good[:2]:
        assert (exp2 / "align" / "lab" / f"{u}.lab").read_text() == (exp / "align" / "lab" / f"{u}.lab").read_text()


@festival
@pytest.mark.slow
def test_sharded_steps_equal_the_one_process_run(tmp_path):
    utts = ["slt_0001", "slt_0003", "slt_0005", "slt_0007"]
    one, many = tmp_path / "one", tmp_path / "many"
    for exp in (one, many):
        make_input(exp, utts)
    assert main(["align", "--exp-dir", str(one), *TINY]) == 0
    d = ["--exp-dir", str(many)]
    for k in (1, 2):
        assert main(["align", *d, "--shard", f"{k}/2", "step=prepare", *TINY]) == 0
    assert main(["align", *d, "step=update", *TINY]) == 0
    rounds = 0
    while not (many / "align" / "model.pt").exists():
        for k in (1, 2):
            assert main(["align", *d, "--shard", f"{k}/2", "step=accumulate", *TINY]) == 0
        assert main(["align", *d, "step=update", *TINY]) == 0
        rounds += 1
    assert rounds == 4
    for k in (1, 2):
        assert main(["align", *d, "--shard", f"{k}/2", "step=align", *TINY]) == 0
    assert main(["align", *d, "step=finish", *TINY]) == 0
    a = torch.load(one / "align" / "model.pt", weights_only=True)
    b = torch.load(many / "align" / "model.pt", weights_only=True)
    for key in ("means", "variances", "log_weights", "self_loop", "enter"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-9)
    for u in utts:
        assert (one / "align" / "lab_state" / f"{u}.lab").read_text() == \
            (many / "align" / "lab_state" / f"{u}.lab").read_text()


def test_untimed_labels_and_textgrids_as_input(tmp_path):
    """No Festival needed: untimed labels given instead of text, and a TextGrid used as the
    alignment (its times equal the shipped labels, mapped onto their own contexts)."""
    utts = ["slt_0001", "slt_0003", "slt_0005"]
    labels = {u: str(CORPUS / "lab" / f"{u}.lab") for u in utts}      # times are ignored
    tg = tmp_path / "slt_0009.TextGrid"
    write_textgrid(tg, load_labels(CORPUS / "lab" / "slt_0009.lab"), None)
    labels["slt_0009"] = str(CORPUS / "lab" / "slt_0009.lab")
    exp = tmp_path / "exp"
    make_input(exp, utts + ["slt_0009"], labels=labels, textgrids={"slt_0009": str(tg)})
    (exp / "data" / "text").unlink()
    assert main(["align", "--exp-dir", str(exp), *TINY]) == 0
    report = read_json(exp / "align" / "report.json")
    assert report["sources"] == {"text": 0, "labels": 3, "textgrid": 1}
    ref = load_labels(CORPUS / "lab" / "slt_0009.lab")
    got = load_labels(exp / "align" / "lab" / "slt_0009.lab")
    assert got.contexts == ref.contexts
    np.testing.assert_array_equal(got.times, ref.times)
    assert not (exp / "align" / "lab_state" / "slt_0009.lab").exists()
    speech = lambda lab: [c for c in lab.contexts if "-pau+" not in c]   # noqa: E731
    for u in utts:    # the given phones (the pauses are the aligner's decision)
        lab = load_labels(exp / "align" / "lab" / f"{u}.lab")
        assert [c.split("@")[1] for c in speech(lab)] == [c.split("@")[1] for c in speech(load_labels(labels[u]))]
    # labels=state: data/lab.scp names the state-level labels, unless some utterance has
    # phone-level ones only (the TextGrid): then the phone-level labels of all
    assert main(["align", "--exp-dir", str(exp), "step=finish", "labels=state", *TINY]) == 0
    assert read_scp(exp / "data" / "lab.scp") == {u: str((exp / "align" / "lab" / f"{u}.lab").resolve())
                                                  for u in utts + ["slt_0009"]}
    data = exp / "data"
    for name in ("wav.scp", "lab_untimed.scp", "train.list", "dev.list"):
        (data / name).write_text("".join(line + "\n" for line in (data / name).read_text().splitlines()
                                         if not line.startswith("slt_0009")))
    (data / "textgrid.scp").unlink()
    assert main(["align", "--exp-dir", str(exp), "step=finish", "labels=state", *TINY]) == 0
    scp = read_scp(exp / "data" / "lab.scp")
    assert scp == {u: str((exp / "align" / "lab_state" / f"{u}.lab").resolve()) for u in utts}
    assert all(load_labels(scp[u]).num_states == 5 for u in utts)
    # bad option combinations are one-line errors
    assert main(["align", "--exp-dir", str(exp), "--shard", "1/2", "step=update"]) == 1
    assert main(["align", "--exp-dir", str(exp), "aligner.mixtures=[4,2]"]) == 1


def test_P12_inputs_changed_in_place_are_refused_naming_them_and_force_redoes(tmp_path, capsys):
    """An utterance's audio overwritten after its features were made (a re-ingest): the
    rerun refuses in one line naming it, files unchanged; --force redoes it like a clean run."""
    utts = ["slt_0001", "slt_0003", "slt_0005"]
    labels = {u: str(CORPUS / "lab" / f"{u}.lab") for u in utts}
    wav = tmp_path / "slt_0003.flac"
    shutil.copyfile(CORPUS / "wav" / "slt_0003.flac", wav)
    exp = tmp_path / "exp"
    make_input(exp, utts, labels=labels, wavs={"slt_0003": str(wav)})
    assert main(["align", "--exp-dir", str(exp), "step=prepare"]) == 0
    feats = {p: p.read_bytes() for p in (exp / "align" / "feats").iterdir()}
    shutil.copyfile(CORPUS / "wav" / "slt_0005.flac", wav)             # other audio, same path
    capsys.readouterr()
    for step in ("prepare", "update", "align"):
        assert main(["align", "--exp-dir", str(exp), f"step={step}"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "1 utterance(s) changed" in err and "(slt_0003)" in err, err
    assert {p: p.read_bytes() for p in (exp / "align" / "feats").iterdir()} == feats
    assert main(["align", "--exp-dir", str(exp), "--force", "step=prepare"]) == 0
    clean = tmp_path / "clean"
    make_input(clean, utts, labels=labels, wavs={"slt_0003": str(wav)})
    assert main(["align", "--exp-dir", str(clean), "step=prepare"]) == 0
    for u in utts:
        f = Path("align") / "feats" / f"{u}.npy"
        assert (exp / f).read_bytes() == (clean / f).read_bytes(), u
    assert (exp / "align" / "feats" / "slt_0003.npy").read_bytes() != feats[exp / "align" / "feats" / "slt_0003.npy"]
    assert main(["align", "--exp-dir", str(exp), "step=prepare"]) == 0     # the record follows
