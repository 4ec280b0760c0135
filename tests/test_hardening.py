"""Attacks and faults, one test per finding of the hardening review.

Where a finding belongs to one module its test lives with that module's tests and is
named here: checkpoints that carry code (``test_train.py::
test_checkpoint_with_code_is_refused_and_runs_nothing``), training resumed with other
options and a torn log (``test_train.py::test_resume_with_other_options_...``), stale
temporary files and workers that outlive their stage (``test_stage.py``), a failing
stage stopping ``run.sh`` with its log (``test_recipe.py::test_failing_stage_...``).
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sps.cli import main
from sps.io import read_list, read_wav
from sps.stages import features, linguistic, stats
from sps.stages.experiment import Experiment
from sps.stages.runner import StageContext

sf = pytest.importorskip("soundfile", reason="needs soundfile (audio files)")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "slt_festival"
needs_festival = pytest.mark.skipif(shutil.which("festival") is None,
                                    reason="festival is not installed (apt-get install festival festvox-us-slt-hts)")
XSS_ID = "q'onerror='alert(1)'b='"


# ------------------------------------------------------------------ 2, 3: XSS and paths
def test_report_escapes_hostile_names(tmp_path):
    from sps.stages.report import build_report, esc
    assert "'" not in esc(XSS_ID) and '"' not in esc('a"b')
    exp = tmp_path / "exp"
    (exp / "data").mkdir(parents=True)
    (exp / "data" / "eval.list").write_text("u1\n")
    evil = 'x"><img src=x onerror=alert(1)>'
    (exp / "synth" / evil / "eval").mkdir(parents=True)
    sf.write(exp / "synth" / evil / "eval" / "u1.wav", np.zeros(160), 16000)
    page = build_report(Experiment(exp)).read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'src="../synth/x&quot;&gt;&lt;img' in page          # attribute values stay quoted


@pytest.mark.parametrize("bad", ["../../x", XSS_ID, "a/b", ".hidden", "a#b", "..", "a\\b"])
def test_hostile_ids_are_rejected_where_they_enter(tmp_path, bad):
    lst = tmp_path / "train.list"
    lst.write_text(f"ok_1\n{bad}\n")
    with pytest.raises(ValueError, match=r"train.list:2: invalid utterance id"):
        read_list(lst)
    (tmp_path / "x.scp").write_text(f"{bad} /etc/passwd\n")
    from sps.io import read_scp
    with pytest.raises(ValueError, match="invalid utterance id"):
        read_scp(tmp_path / "x.scp")


def test_comment_lines_stay_comments(tmp_path):
    lst = tmp_path / "l.list"
    lst.write_text("# a comment\nutt_1  # trailing words are ignored, Kaldi style\n  \nutt.2\n")
    assert read_list(lst) == ["utt_1", "utt.2"]


def test_prepare_leaves_out_files_with_unsafe_names(tmp_path, caplog):
    corpus = tmp_path / "corpus"
    (corpus / "wav").mkdir(parents=True)
    (corpus / "lab").mkdir()
    for name in ("good", ".sneaky"):
        sf.write(corpus / "wav" / f"{name}.wav", np.zeros(1600), 16000)
        (corpus / "lab" / f"{name}.lab").write_text("0 1000000 x^pau-pau+pau=x\n")
    assert main(["prepare", "--exp-dir", str(tmp_path / "exp"), f"corpus.path={corpus}"]) == 0
    assert sum(len(read_list(tmp_path / "exp" / "data" / f"{s}.list")) for s in ("train", "dev", "eval")) == 1
    assert "not valid ids" in caplog.text


# ------------------------------------------------------------------ 4: Scheme injection
@pytest.mark.parametrize("voice", ['kal_diphone) (system "touch /tmp/pwned") (', "a b", "x;y", ""])
def test_festival_voice_must_be_an_identifier(voice, monkeypatch):
    from sps.frontend import text_to_labels
    monkeypatch.setattr(shutil, "which", lambda name: pytest.fail("festival must not run"))
    with pytest.raises(ValueError, match="invalid Festival voice name"):
        text_to_labels("Hello.", voice=voice)


# ------------------------------------------------------------------ 5: poisoned statistics
@pytest.mark.slow
def test_a_rejected_utterance_reaches_no_later_stage(tmp_path, corpus_exp):
    """A label claiming 2,000 s: features and linguistic reject it, stats never see it."""
    lab = (CORPUS / "lab" / "slt_0005.lab").read_text().splitlines()
    start, end, ctx = lab[-1].split()
    lab[-1] = f"{start} {2000 * 10 ** 7} {ctx}"
    bad = tmp_path / "long.lab"
    bad.write_text("\n".join(lab) + "\n")
    exp, utts = corpus_exp(3, extra=[("long", CORPUS / "wav" / "slt_0005.flac", bad)])
    ctx = lambda cfg: StageContext(exp_dir=exp, config=cfg, max_failed=1.0)  # noqa: E731
    assert "long" in features.run(ctx({"f0_method": "dio"}))["train"].failed
    summaries = linguistic.run(ctx({}))
    assert "long" not in summaries["train"].failed             # features rejected it already:
    assert not (exp / "dump" / "train" / "in_duration" / "long.npy").exists()   # left out
    stats.run(ctx({}))
    dur = Experiment(exp).stats("out_duration")
    assert dur["count"] == sum(len(np.load(exp / "dump" / "train" / "out_duration" / f"{u}.npy"))
                               for u, _, _ in utts[:3])
    assert dur["mean"][0] < 100
    # linguistic alone (no features run) checks labels against the audio length itself
    shutil.rmtree(exp / "data" / "rejected")
    out = linguistic.run(ctx({}))
    assert "long" in out["train"].failed and "max_frame_mismatch" in out["train"].failed["long"]


# ------------------------------------------------------------------ 6: silent and out-of-range audio
def test_silent_audio_is_rejected_and_loud_audio_clipped(tmp_path, caplog):
    sf.write(tmp_path / "zeros.wav", np.zeros(16000), 16000)
    with pytest.raises(ValueError, match="zeros.wav: silent audio"):
        read_wav(tmp_path / "zeros.wav")
    x = np.sin(np.arange(1600) / 5.0) * 8.0
    sf.write(tmp_path / "loud.wav", x, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        y, _ = read_wav(tmp_path / "loud.wav")
    assert np.abs(y).max() <= 1.0 and "clipped" in caplog.text and "loud.wav" in caplog.text


def test_audio_without_voiced_frames_is_rejected(tmp_path):
    from sps.features import FeatureConfig, extract_utterance
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "noise.wav", rng.uniform(-0.5, 0.5, 16000), 16000)
    (tmp_path / "n.lab").write_text("0 10000000 x^pau-pau+pau=x\n")
    with pytest.raises(ValueError, match="no voiced frame"):
        extract_utterance(tmp_path / "noise.wav", tmp_path / "n.lab", FeatureConfig(f0_method="dio"))


# ------------------------------------------------------------------ 7: changed settings on rerun
def test_changed_question_file_is_refused_unless_forced(tmp_path, corpus_exp):
    exp, _ = corpus_exp(2)
    linguistic.run(StageContext(exp_dir=exp, config={}))
    small = tmp_path / "small.hed"
    small.write_text('QS "C-a" {*-aa+*}\nCQS "n" {@(\\d+)_}\n')
    with pytest.raises(ValueError, match="another question file"):
        linguistic.run(StageContext(exp_dir=exp, config={"frontend": {"question_file": str(small)}}))
    linguistic.run(StageContext(exp_dir=exp, config={"frontend": {"question_file": str(small)}}, force=True))
    assert np.load(exp / "dump" / "train" / "in_duration" / f"{read_list(exp / 'data' / 'train.list')[0]}.npy"
                   ).shape[1] == 2


# ------------------------------------------------------------------ 8: unknown phones, bad question lines
def test_unknown_phones_and_damaged_contexts_are_counted(tmp_path, corpus_exp, caplog):
    lab = tmp_path / "odd.lab"
    good = (CORPUS / "lab" / "slt_0001.lab").read_text().splitlines()
    s, e, c = good[3].split()
    good[3] = f"{s} {e} {c.replace('-' + c.split('-')[1].split('+')[0] + '+', '-zz+')}"
    s, e, _ = good[5].split()
    good[5] = f"{s} {e} garbage"
    lab.write_text("\n".join(good) + "\n")
    exp, _ = corpus_exp(0, extra=[("odd", CORPUS / "wav" / "slt_0001.flac", lab)])
    with caplog.at_level(logging.WARNING):
        linguistic.run(StageContext(exp_dir=exp, config={}))
    assert "odd.lab: 1 labels with phones the question file does not know ('zz' x1), 1 damaged" in caplog.text


def test_question_line_with_two_groups_is_an_error(tmp_path):
    from sps.frontend import load_questions
    q = tmp_path / "q.hed"
    q.write_text('QS "ok" {*-a+*}\nQS "two" {*-a+*}{*-b+*}\n')
    with pytest.raises(ValueError, match=r"q.hed:2: question 'two' has more than one"):
        load_questions(q)


# ------------------------------------------------------------------ 9: numbers
@pytest.mark.parametrize("backend", ["torch", "native"])
@pytest.mark.parametrize("bad,what", [("var", -1.0), ("var", 0.0), ("var", float("nan")), ("mean", float("nan"))])
def test_mlpg_rejects_bad_variances_and_means(backend, bad, what):
    from sps.mlpg import mlpg
    from sps.mlpg.native import library
    if backend == "native" and library() is None:
        pytest.skip("no C compiler")
    m, v = torch.randn(3, 20, 9), torch.rand(3, 20, 9) + 0.1
    (v if bad == "var" else m)[2, 11, 4] = what
    kind = "variance" if bad == "var" else "mean"
    with pytest.raises(ValueError, match=rf"{kind} .* at \(batch 2, frame 11, dim 4: window 1 of static dim 1\)"):
        mlpg(m, v, backend=backend)
    # the same values where the edge rule gives no weight are harmless
    m2, v2 = torch.randn(1, 20, 9), torch.rand(1, 20, 9) + 0.1
    (v2 if bad == "var" else m2)[0, 0, 4] = what          # delta window at frame 0: unused
    assert torch.isfinite(mlpg(m2, v2, backend=backend)).all()


def test_mlpg_rejects_float_lengths_and_holey_masks():
    from sps.mlpg import mlpg
    m, v = torch.randn(2, 6, 3), torch.ones(3)
    with pytest.raises(ValueError, match="lengths must be integers"):
        mlpg(m, v, lengths=torch.tensor([6.0, 4.5]))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 0]], dtype=torch.bool)
    with pytest.raises(ValueError, match="mask row 1 is not a prefix"):
        mlpg(m, v, lengths=mask)


def test_banded_solver_names_an_indefinite_system():
    from sps.mlpg import solve_banded
    from sps.mlpg.native import library
    if library() is None:
        pytest.skip("no C compiler")
    ab = torch.ones(3, 2, 8)
    ab[:, 0] = 4.0
    ab[1, 0, 5] = -10.0
    with pytest.raises(ValueError, match=r"system \(0, 1\) is not positive definite"):
        solve_banded(ab, torch.ones(3, 8), backend="native")


def test_lfilter_on_an_empty_time_axis():
    from sps.dsp import lfilter
    y, zf = lfilter(torch.zeros(2, 0), torch.tensor([1.0, -0.5]), torch.tensor([1.0]),
                    torch.full((2, 1), 3.0), return_final=True)
    assert y.shape == (2, 0) and torch.equal(zf, torch.full((2, 1), 3.0))


# ------------------------------------------------------------------ 10: seeds
def test_same_seed_same_weights(tmp_path):
    from sps.stages.train import train
    rng = np.random.default_rng(0)
    exp = tmp_path / "exp"
    for split, n in (("train", 4), ("dev", 2)):
        (exp / "data").mkdir(parents=True, exist_ok=True)
        (exp / "data" / f"{split}.list").write_text("".join(f"{split}{i}\n" for i in range(n)))
        for i in range(n):
            for kind, d in (("in_duration", 5), ("out_duration", 1)):
                p = exp / "dump" / split / kind / f"{split}{i}.npy"
                p.parent.mkdir(parents=True, exist_ok=True)
                np.save(p, rng.normal(size=(7, d)).astype(np.float32))
    stats.run(StageContext(exp_dir=exp, config={}))
    cfg = {"kind": "duration", "model": {"hidden_dim": 8, "num_layers": 1},
           "train": {"epochs": 1, "batch_size": 2, "seed": 7, "plot": False}}
    weights = []
    for name in ("a", "b"):
        torch.manual_seed(len(name) * 1000 + ord(name))     # different global state before each run
        train(StageContext(exp_dir=exp, config={**cfg, "name": name}))
        weights.append(torch.load(exp / "models" / name / "best.pt", weights_only=True)["model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# ------------------------------------------------------------------ 13, 14: clean failures
def test_stage_exits_non_zero_when_every_utterance_fails(tmp_path, corpus_exp, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF junk")
    exp, _ = corpus_exp(0, extra=[("b1", bad, CORPUS / "lab" / "slt_0001.lab")])
    assert main(["features", "--exp-dir", str(exp), "f0_method=dio"]) == 1
    err = capsys.readouterr().err
    assert "1 of 1 utterances failed" in err and "features_report.txt" in err and "Traceback" not in err


@pytest.mark.parametrize("override,message", [
    ("f0_floor=[1,", "override f0_floor=[1,: not a valid YAML value"),
    ("mgc_order=abc", "features.mgc_order: expected int, got 'abc'"),
    ("mcg_order=24", "unknown key 'mcg_order'; did you mean 'mgc_order'"),
])
def test_bad_overrides_give_one_line(tmp_path, override, message):
    out = subprocess.run([sys.executable, "-m", "sps.cli", "features", "--exp-dir", str(tmp_path), override],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    debug = subprocess.run([sys.executable, "-m", "sps.cli", "features", "--exp-dir", str(tmp_path),
                            "--debug", override], capture_output=True, text=True, cwd=ROOT)
    assert "Traceback" in debug.stderr


# ------------------------------------------------------------------ 15: text to speech
def test_text_is_cleaned_or_refused(caplog):
    from sps.frontend.festival import clean_text, split_text
    with caplog.at_level(logging.WARNING):
        assert clean_text("naïve café") == "naive cafe"
    assert "naive cafe" in caplog.text
    for bad, match in (("", "empty text"), ("   ", "empty text"), ("hello\0world", "NUL"),
                       ("😀😀", "no speakable text"), ("你好", "no speakable text")):
        with pytest.raises(ValueError, match=match):
            clean_text(bad)
    words = " ".join(f"w{i}" for i in range(200)) + ". Last sentence here."
    chunks = split_text(words, 60)
    assert all(len(c.split()) <= 60 for c in chunks) and " ".join(chunks).split() == words.split()
    assert chunks[-1].endswith("Last sentence here.")


@needs_festival
def test_cli_text_errors_are_one_line(tmp_path):
    for text, message in (("", "empty text"), ("😀", "no speakable text")):
        out = subprocess.run([sys.executable, "-m", "sps.cli", "synth", "--exp-dir", str(tmp_path), "--text", text],
                             capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr


@needs_festival
def test_long_text_is_synthesised_in_chunks_and_festival_failures_are_clear():
    from sps.frontend import text_to_labels
    sentence = "The quick brown fox jumps over the lazy dog near the river bank today."
    labels = text_to_labels(" ".join([sentence] * 12))       # 168 words: three Festival calls
    assert len(labels) > 12 * 30
    with pytest.raises(RuntimeError, match="festival produced no labels .* voice 'no_such_voice'"):
        text_to_labels("Hello.", voice="no_such_voice")
    with pytest.raises(RuntimeError, match="did not finish within 0.001 s"):
        text_to_labels("Hello there.", timeout=0.001)
