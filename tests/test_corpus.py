"""Checks of the shipped corpus ``data/slt_festival`` and of the script that makes it."""
from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from sps.io import read_label_file

sf = pytest.importorskip("soundfile", reason="needs soundfile (audio files)")

CORPUS = Path(__file__).resolve().parents[1] / "data" / "slt_festival"
SPLITS = ("train", "dev", "eval")
FRAME = 50000                      # 5 ms in 100 ns units
# HTS full context as Festival's hts_dump_feats writes it: pp^p-c+n=nn@..., then /A: ... /J:
CONTEXT = re.compile(r"^[^\^]+\^[^-]+-([^+]+)\+[^=]+=[^@]+@[^/]+/A:[^/]+/B:[^/]+/C:[^/]+/D:[^/]+"
                     r"/E:[^/]+/F:[^/]+/G:[^/]+/H:[^/]+/I:[^/]+/J:\S+$")


def load_script():
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture(scope="module")
def sentences(script):
    return script.read_sentences([CORPUS / "sentences.txt"])


@pytest.fixture(scope="module")
def splits():
    return {name: (CORPUS / f"{name}.list").read_text().split() for name in SPLITS}


def test_sentences(sentences):
    assert len(sentences) >= 300
    words = np.array([len(text.split()) for text in sentences.values()])
    assert words.min() >= 3 and words.max() <= 25
    assert len(set(sentences.values())) == len(sentences), "duplicate sentences"
    assert sum(text.endswith("?") for text in sentences.values()) >= 20
    assert sum(text.endswith("!") for text in sentences.values()) >= 10
    assert sum(bool(re.search(r"\d", text)) for text in sentences.values()) >= 20


def test_splits_disjoint_and_complete(sentences, splits):
    members = [u for name in SPLITS for u in splits[name]]
    assert len(members) == len(set(members)), "an utterance is in two splits"
    assert set(members) == set(sentences)
    assert len(splits["dev"]) >= 15 and len(splits["eval"]) >= 15
    assert {p.stem for p in (CORPUS / "wav").glob("*.flac")} == set(sentences)
    assert {p.stem for p in (CORPUS / "lab").glob("*.lab")} == set(sentences)


def test_audio_headers_and_label_timing(sentences):
    for utt in sentences:
        info = sf.info(str(CORPUS / "wav" / f"{utt}.flac"))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16"), utt
        labels = read_label_file(CORPUS / "lab" / f"{utt}.lab")   # checks integer, monotonic times
        assert labels[0].start == 0, utt
        assert all(a.end == b.start for a, b in zip(labels, labels[1:])), f"{utt}: gap between phones"
        assert all(line.start % FRAME == 0 and line.end % FRAME == 0 for line in labels), f"{utt}: off the 5 ms grid"
        assert abs(labels[-1].end * 1e-7 - info.frames / info.samplerate) <= 0.005, utt
        phones = []
        for line in labels:
            match = CONTEXT.match(line.context)
            assert match, f"{utt}: not an HTS full-context label: {line.context}"
            phones.append(match.group(1))
        assert phones[0] == phones[-1] == "pau", utt
        assert len(phones) >= 5, utt


def test_audio_content_matches_labels(sentences):
    """On a sample: audio is finite, not clipped, and pauses are much quieter than phones."""
    for utt in list(sentences)[::15]:
        x, sr = sf.read(str(CORPUS / "wav" / f"{utt}.flac"), dtype="float64")
        assert np.all(np.isfinite(x)) and np.abs(x).max() < 0.999, utt
        pause = np.zeros(x.size, dtype=bool)
        for line in read_label_file(CORPUS / "lab" / f"{utt}.lab"):
            if "-pau+" in line.context:
                pause[line.start * sr // 10**7:line.end * sr // 10**7] = True
        speech_rms = np.sqrt(np.mean(x[~pause] ** 2))
        pause_rms = np.sqrt(np.mean(x[pause] ** 2))
        assert speech_rms > 0.01, f"{utt}: speech too quiet ({speech_rms:.4f})"
        assert pause_rms < 0.2 * speech_rms, f"{utt}: pauses not silent ({pause_rms:.4f} vs {speech_rms:.4f})"


def test_split_rule(script, sentences, splits, tmp_path):
    """The shipped lists are what the script's rule gives, and the rule itself holds."""
    ids = list(sentences)
    assert script.write_splits(ids, tmp_path, 0.1, 15) == splits
    made = script.write_splits([f"u{i}" for i in range(100)], tmp_path, 0.1, 15)
    assert [len(made[s]) for s in SPLITS] == [70, 15, 15]
    assert made["dev"] == [f"u{i}" for i in range(70, 100, 2)]
    with pytest.raises(ValueError, match="too few"):
        script.write_splits(["a", "b"], tmp_path, 0.1, 15)


def test_read_sentences_errors(script, tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("a_1\tHello there.\na_1\tAgain.\n")
    with pytest.raises(ValueError, match=r"s\.txt:2: duplicate id a_1"):
        script.read_sentences([path])
    path.write_text("a_1 no tab here\n")
    with pytest.raises(ValueError, match=r"s\.txt:1: expected"):
        script.read_sentences([path])


def test_convert_labels_checks(script, tmp_path):
    good = "x^x-pau+hh=ax@x_x/A:0"
    lab = tmp_path / "u.lab"
    lab.write_text(f"   0    1650002 {good}\n   1649999    1999996 {good}\n")   # float noise is snapped
    assert script.convert_labels(lab, 3200, 16000) == [(0, 1650000, good), (1650000, 2000000, good)]
    with pytest.raises(ValueError, match="waveform lasts"):
        script.convert_labels(lab, 4000, 16000)              # 0.25 s of audio vs 0.2 s of labels
    lab.write_text(f"0 1650000 {good}\n1650000 1654000 {good}\n")
    with pytest.raises(ValueError, match="u.lab:2: time 1654000 .* not on the 5 ms frame grid"):
        script.convert_labels(lab, 3200, 16000)
    lab.write_text(f"0 1650000 {good}\n1700000 2000000 {good}\n")
    with pytest.raises(ValueError, match="does not continue"):
        script.convert_labels(lab, 3200, 16000)
    lab.write_text(f"0 1650000 {good}\n1650000 2000000 {good.replace('-pau+', '-hh+')}\n")
    with pytest.raises(ValueError, match="last phone is 'hh'"):
        script.convert_labels(lab, 3200, 16000)


@pytest.mark.skipif(shutil.which("festival") is None, reason="needs festival + festvox-us-slt-hts")
def test_regenerates_shipped_utterances(script, sentences, tmp_path):
    """Festival reproduces three shipped utterances: identical labels, same audio."""
    chosen = ["slt_0005", "slt_0100", "slt_0200"]
    sub = tmp_path / "sentences.txt"
    sub.write_text("".join(f"{u}\t{sentences[u]}\n" for u in chosen))
    assert script.main(["--sentences", str(sub), "--out", str(tmp_path), "--jobs", "1",
                        "--held-out", "0.5", "--min-held-out", "1"]) == 0
    for utt in chosen:
        assert (tmp_path / "lab" / f"{utt}.lab").read_text() == (CORPUS / "lab" / f"{utt}.lab").read_text()
        new, _ = sf.read(str(tmp_path / "wav" / f"{utt}.flac"), dtype="int16")
        old, _ = sf.read(str(CORPUS / "wav" / f"{utt}.flac"), dtype="int16")
        assert new.shape == old.shape
        assert np.abs(new.astype(int) - old.astype(int)).max() <= 1, utt


# ------------------------------------------------------------------ the kal diphone voice (--voice kal)
def test_kal_voice_script_and_ids(script, tmp_path):
    kal = script.VOICES["kal"]
    assert script.corpus_id("slt_0005", kal) == "kal_0005"
    assert script.corpus_id("slt_0005", script.VOICES["slt"]) == "slt_0005"
    text = 'He said "stop" \\ then (left).'
    prog = script.festival_script([("kal_0001", text)], tmp_path, kal)
    lines = prog.splitlines()
    # the HTS voice first (it defines hts_dump_feats), then the diphone voice; the text only quoted
    assert lines[:2] == ["(voice_cmu_us_slt_arctic_hts)", "(voice_kal_diphone)"]
    assert '"He said \\"stop\\" \\\\ then (left)."' in lines[-1]
    script.write_metadata({"kal_0001": "Hello there.", "kal_0002": "Two."}, tmp_path)
    assert (tmp_path / "metadata.csv").read_text() == "kal_0001|Hello there.|Hello there.\nkal_0002|Two.|Two.\n"


def test_convert_labels_off_the_grid(script, tmp_path):
    good = "x^x-pau+hh=ax@x_x/A:0"
    lab = tmp_path / "u.lab"
    lab.write_text(f"0 1650002 {good}\n1650002 1999996 {good}\n")
    # off the grid: times kept to 100 ns, the last pause runs to the waveform's end (0.22 s)
    assert script.convert_labels(lab, 3520, 16000, on_grid=False) == [(0, 1650002, good), (1650002, 2200000, good)]
    with pytest.raises(ValueError, match="waveform lasts"):
        script.convert_labels(lab, 3520 + 800, 16000, on_grid=False)       # 55 ms past the labels
    with pytest.raises(ValueError, match="waveform lasts"):
        script.convert_labels(lab, 3200 - 160, 16000, on_grid=False)       # 10 ms short of them


@pytest.mark.skipif(shutil.which("festival") is None, reason="needs festival + festvox-kallpc16k")
def test_kal_voice_makes_its_own_timings(script, sentences, tmp_path):
    sub = tmp_path / "sentences.txt"
    sub.write_text("".join(f"{u}\t{sentences[u]}\n" for u in ("slt_0005", "slt_0100", "slt_0200")))
    try:
        code = script.main(["--voice", "kal", "--sentences", str(sub), "--out", str(tmp_path / "kal"),
                            "--jobs", "1", "--held-out", "0.5", "--min-held-out", "1"])
    except SystemExit as err:
        if "has no voice" not in str(err):      # only a missing voice package is a reason to skip
            raise
        pytest.skip(str(err))
    assert code == 0
    out = tmp_path / "kal"
    text = sentences["slt_0005"]
    assert (out / "metadata.csv").read_text().splitlines()[0] == f"kal_0005|{text}|{text}"
    off_grid = 0
    for utt in ("kal_0005", "kal_0100"):
        x, sr = sf.read(str(out / "wav" / f"{utt}.flac"))
        assert sr == 16000
        labels = read_label_file(out / "lab" / f"{utt}.lab")
        assert labels[0].start == 0 and all(a.end == b.start for a, b in zip(labels, labels[1:]))
        assert labels[-1].end == round(x.size / sr * 1e7)
        ref = read_label_file(CORPUS / "lab" / f"slt_{utt[4:]}.lab")
        # the kal voice's front end reduces some vowels to ax ("the" -> dh ax); the phones correspond 1:1
        phones = [CONTEXT.match(ln.context).group(1) for ln in labels]
        ref_phones = [CONTEXT.match(ln.context).group(1) for ln in ref]
        assert len(phones) == len(ref_phones)
        assert all(a == b or a == "ax" for a, b in zip(phones, ref_phones)), utt
        off_grid += sum(line.end % FRAME != 0 for line in labels[:-1])
        pause = np.zeros(x.size, dtype=bool)
        for line in labels:
            if "-pau+" in line.context:
                pause[line.start * sr // 10**7:line.end * sr // 10**7] = True
        assert np.sqrt(np.mean(x[pause] ** 2)) < 0.2 * np.sqrt(np.mean(x[~pause] ** 2)), utt
    assert off_grid >= 10                       # the diphone voice's times are not on the 5 ms grid
