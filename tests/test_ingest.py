"""The ``ingest`` stage: every corpus layout, audio conditioning, bad input, resume."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sps.io import read_list, read_scp
from sps.stages.runner import StageContext, StageFailed

sf = pytest.importorskip("soundfile", reason="needs soundfile (audio files)")
pytest.importorskip("soxr", reason="needs soxr (resampling)")
from sps.stages import ingest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SLT = ROOT / "data" / "slt_festival"


def _speech(sr, seconds=0.6, amp=0.3, seed=0, lead=0.2):
    """A harmonic tone with an envelope between ``lead`` seconds of silence either side."""
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 2 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * np.hanning(t.size) ** 0.3
    x = amp * x / np.abs(x).max()
    pad = np.zeros(int(sr * lead))
    rng = np.random.default_rng(seed)
    return np.concatenate([pad, x, pad]) + 1e-4 * rng.standard_normal(2 * pad.size + x.size)


def _run(exp, corpus, force=False, max_failed=1.0, jobs=1, **cfg):
    ctx = StageContext(exp_dir=exp, config={"corpus": str(corpus), **cfg}, jobs=jobs, force=force,
                       max_failed=max_failed)
    return ingest.run(ctx)


def _texts(exp):
    path = exp / "data" / "text"
    return dict(line.split(" ", 1) for line in path.read_text().splitlines()) if path.exists() else {}


def test_folder_layout_any_rate_channels_and_width(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    sf.write(corpus / "a.wav", np.stack([_speech(44100), _speech(44100, seed=1)], 1), 44100, subtype="FLOAT")
    sf.write(corpus / "sub" / "b.flac", _speech(48000), 48000, subtype="PCM_24")
    sf.write(corpus / "c.wav", _speech(16000), 16000)
    (corpus / "a.txt").write_text("Hello there.\n")
    (corpus / "sub" / "b.txt").write_text("  A second\nsentence.  ")
    (corpus / "c.lab").write_text("his coffee went cold\n")     # MFA style: a plain transcript
    out = _run(tmp_path / "exp", corpus, trim=False, loudness_db=None)
    data = tmp_path / "exp" / "data"
    assert out["layout"] == "folder" and out["utterances"] == 3 and not out["rejected"]
    assert _texts(tmp_path / "exp") == {"a": "Hello there.", "b": "A second sentence.", "c": "his coffee went cold"}
    wavs = read_scp(data / "wav.scp")
    assert sorted(wavs) == ["a", "b", "c"]
    for utt, src_sr in (("a", 44100), ("b", 48000), ("c", 16000)):
        info = sf.info(wavs[utt])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == int(round(1.0 * 16000))          # 1.0 s at any source rate
    # untouched 16 kHz input comes back sample for sample (16-bit)
    y, _ = sf.read(wavs["c"])
    x, _ = sf.read(corpus / "c.wav")
    np.testing.assert_array_equal(y, x)
    # the deterministic split of sps prepare: the last ids (sorted) go to dev and eval
    assert [read_list(data / f"{s}.list") for s in ("train", "dev", "eval")] == [["a"], ["b"], ["c"]]
    assert not (data / "lab_untimed.scp").exists() and not (data / "textgrid.scp").exists()
    tsv = (data / "ingest" / "audio.tsv").read_text().splitlines()
    assert tsv[1].split("\t")[:3] == ["a", "44100", "2"]


def test_ljspeech_layout_prefers_normalized_text(tmp_path):
    corpus = tmp_path / "lj"
    (corpus / "wavs").mkdir(parents=True)
    for i in range(4):
        sf.write(corpus / "wavs" / f"LJ001-000{i}.wav", _speech(22050, seed=i), 22050)
    (corpus / "metadata.csv").write_text(
        "LJ001-0000|Dr. Smith paid $5.|Doctor Smith paid five dollars.\n"
        "LJ001-0001|No normalized text here.\n"
        "LJ001-0002|Empty third field.|\n"
        "LJ001-0003|In 1884 it was|in eighteen eighty-four it was\n")
    out = _run(tmp_path / "exp", corpus)
    assert out["layout"] == "ljspeech" and out["utterances"] == 4
    assert _texts(tmp_path / "exp") == {"LJ001-0000": "Doctor Smith paid five dollars.",
                                        "LJ001-0001": "No normalized text here.",
                                        "LJ001-0002": "Empty third field.",
                                        "LJ001-0003": "in eighteen eighty-four it was"}


def test_kaldi_layout_refuses_piped_commands(tmp_path, capsys):
    corpus = tmp_path / "kaldi"
    (corpus / "audio").mkdir(parents=True)
    sf.write(corpus / "audio" / "u1.wav", _speech(8000), 8000)
    sf.write(tmp_path / "u2.flac", _speech(16000), 16000)
    (corpus / "wav.scp").write_text(f"u1 audio/u1.wav\nu2 {tmp_path / 'u2.flac'}\n"
                                    "u3 sox /data/u3.wav -t wav - rate 16k |\n")
    (corpus / "text").write_text("u1 the first one\nu2 the second one\nu3 the third one\n")
    out = _run(tmp_path / "exp", corpus)
    assert out["layout"] == "kaldi" and out["utterances"] == 2
    assert list(out["rejected"]) == ["u3"] and out["reasons"] == {"piped command": 1}
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "rejected u3" in ln]
    assert len(lines) == 1 and "wav.scp:3" in lines[0] and "shell" in lines[0]
    (corpus / "segments").write_text("u1 rec 0 1\n")
    with pytest.raises(ValueError, match="segments"):
        _run(tmp_path / "exp2", corpus)


def test_hts_labels_and_textgrids_instead_of_text(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for utt in ("slt_0001", "slt_0002", "slt_0003"):
        x, sr = sf.read(SLT / "wav" / f"{utt}.flac")
        sf.write(corpus / f"{utt}.wav", x, sr)
    untimed = [line.split()[-1] for line in (SLT / "lab" / "slt_0001.lab").read_text().splitlines()]
    (corpus / "slt_0001.lab").write_text("\n".join(untimed) + "\n")                      # untimed labels
    (corpus / "slt_0002.lab").write_text((SLT / "lab" / "slt_0002.lab").read_text())     # timed labels
    grids = tmp_path / "mfa_out"
    grids.mkdir()
    (grids / "slt_0003.TextGrid").write_text(
        'File type = "ooTextFile"\nObject class = "TextGrid"\n\nxmin = 0\nxmax = 1.6\ntiers? <exists>\n'
        'size = 1\nitem []:\n    item [1]:\n        class = "IntervalTier"\n        name = "phones"\n'
        '        xmin = 0\n        xmax = 1.6\n        intervals: size = 1\n        intervals [1]:\n'
        '            xmin = 0\n            xmax = 1.6\n            text = "AH0"\n')
    (corpus / "slt_0003.txt").write_text("Some text.")
    out = _run(tmp_path / "exp", corpus, textgrid_dir=str(grids))
    data = tmp_path / "exp" / "data"
    assert out["utterances"] == 3 and not out["rejected"]
    assert read_scp(data / "lab_untimed.scp") == {u: str(corpus / f"{u}.lab") for u in ("slt_0001", "slt_0002")}
    assert read_scp(data / "textgrid.scp") == {"slt_0003": str(grids / "slt_0003.TextGrid")}
    assert _texts(tmp_path / "exp") == {"slt_0003": "Some text."}
    # the TextGrid's utterance keeps its length (its times stay valid), the others are trimmed
    info = {line.split("\t")[0]: line.split("\t") for line in (data / "ingest" / "audio.tsv").read_text().splitlines()}
    assert sf.info(read_scp(data / "wav.scp")["slt_0003"]).frames == sf.info(SLT / "wav" / "slt_0003.flac").frames
    assert float(info["slt_0001"][9]) < float(info["slt_0001"][4])


def test_bad_input_one_line_each_and_the_rest_go_on(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = ["good1", "good2", "good3"]
    for i, utt in enumerate(good):
        sf.write(corpus / f"{utt}.wav", _speech(16000, seed=i), 16000)
        (corpus / f"{utt}.txt").write_text(f"Sentence number {i}.")
    bad = {
        "empty_text": "empty transcript", "no_word": "no speakable word", "no_text": "missing partner file",
        "no_audio": "missing partner file", "corrupt": "unreadable audio", "zero": "empty audio",
        "silent": "silent audio", "nan": "NaN samples", "dup": "duplicate id", "bad id": "invalid id",
        "latin1": "unreadable transcript", "grid_only": "missing partner file",
    }
    for utt in bad:
        if utt == "grid_only":       # a TextGrid needs the transcript too
            sf.write(corpus / f"{utt}.wav", _speech(16000), 16000)
            (corpus / f"{utt}.TextGrid").write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n')
            continue
        if utt != "no_audio":
            sf.write(corpus / f"{utt}.wav", _speech(16000), 16000)
        if utt != "no_text":
            (corpus / f"{utt}.txt").write_text("A fine sentence.")
    (corpus / "empty_text.txt").write_text("  \n")
    (corpus / "no_word.txt").write_text("... -- !?")
    (corpus / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 4)
    sf.write(corpus / "zero.wav", np.zeros(0), 16000)
    sf.write(corpus / "silent.wav", np.zeros(8000), 16000)
    sf.write(corpus / "nan.wav", np.r_[_speech(16000)[:4000], np.nan, np.zeros(10)], 16000, subtype="FLOAT")
    sf.write(corpus / "dup.flac", _speech(16000), 16000)
    (corpus / "latin1.txt").write_bytes("Caf\xe9 au lait.".encode("latin-1"))
    out = _run(tmp_path / "exp", corpus)
    assert out["utterances"] == 3 and read_scp(tmp_path / "exp" / "data" / "wav.scp").keys() == set(good)
    assert {u: ingest.reason(m) for u, m in out["rejected"].items()} == bad
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ingest: rejected")]
    assert len(printed) == len(bad)
    for utt in bad:
        line = next(ln for ln in printed if ln.startswith(f"ingest: rejected {utt}:"))
        assert str(corpus) in line          # names the file
    report = (tmp_path / "exp" / "data" / "ingest" / "report.txt").read_text()
    assert f"3 utterances" in report and f"{len(bad)} of {len(bad) + 3} rejected" in report
    assert "3 missing partner file" in report and "1 NaN samples" in report
    # more rejected than --max-failed allows: the stage fails, with the report written
    with pytest.raises(StageFailed, match="rejected"):
        _run(tmp_path / "exp2", corpus, max_failed=0.2)
    assert (tmp_path / "exp2" / "data" / "ingest" / "report.txt").exists()


def test_trim_and_loudness_reach_the_written_audio(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sr = 16000
    tone = 0.05 * np.sin(2 * np.pi * 250 * np.arange(8000) / sr)      # -29.03 dBFS, frames 50..99
    sf.write(corpus / "u.wav", np.concatenate([np.zeros(8000), tone, np.zeros(4800)]), sr, subtype="FLOAT")
    (corpus / "u.txt").write_text("A tone.")
    _run(tmp_path / "exp", corpus, trim=True, trim_margin=0.05, loudness_db=-20.0)
    y, _ = sf.read(tmp_path / "exp" / "data" / "wav" / "u.wav")
    assert y.size == 800 + 8000 + 800                                  # 50 ms kept either side
    level = 20 * np.log10(np.sqrt(np.mean(y[800:8800] ** 2)))
    assert level == pytest.approx(-20.0, abs=0.01)                     # within 16-bit rounding


def _three_utterances(tmp_path):
    """A folder of three 24 kHz wavs with their transcripts."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        sf.write(corpus / f"u{i}.wav", _speech(24000, seed=i), 24000)
        (corpus / f"u{i}.txt").write_text(f"Utterance {i}.")
    return corpus


def test_resume_and_changed_settings(tmp_path, capsys):
    corpus = _three_utterances(tmp_path)
    exp = tmp_path / "exp"
    _run(exp, corpus)
    files = {p: p.read_bytes() for p in (exp / "data").rglob("*") if p.is_file()}
    capsys.readouterr()
    _run(exp, corpus)
    assert "0 ok, 3 skipped" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (exp / "data").rglob("*") if p.is_file()} == files
    _run(exp, corpus, loudness_db=-30.0)                                # another level: redone
    assert "3 ok (3 stale: redone), 0 skipped" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["source re-recorded in place (same size and time)", "output wav flipped byte",
                                    "info file deleted", "record deleted", "garbage record"])
def test_P11_ingest_resumes_by_content_and_redoes_exactly_the_stale_utterance(tmp_path, capsys, change):
    # the reference is a clean ingest of the changed corpus into another experiment
    corpus = _three_utterances(tmp_path)
    exp = tmp_path / "exp"
    _run(exp, corpus)
    src, wav, info = corpus / "u1.wav", exp / "data" / "wav" / "u1.wav", exp / "data" / "ingest" / "info" / "u1.json"
    if change.startswith("source"):
        st = src.stat()
        x, sr = sf.read(src)
        sf.write(src, x[::-1].copy(), sr)                 # other audio, same size
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert src.stat().st_size == st.st_size
    elif change.startswith("output"):
        data = bytearray(wav.read_bytes())
        data[-2] ^= 0xFF
        wav.write_bytes(bytes(data))
    elif change.startswith("info"):
        info.unlink()
    else:
        record = exp / "data" / "ingest" / ".stamps" / "u1.json"
        record.unlink() if change.startswith("record") else record.write_text("{not json")
    capsys.readouterr()
    _run(exp, corpus)
    assert "1 ok (1 stale: redone), 2 skipped" in capsys.readouterr().err
    clean = tmp_path / "clean"
    _run(clean, corpus)
    for rel in ("wav/u1.wav", "ingest/info/u1.json", "wav/u0.wav"):
        assert (exp / "data" / rel).read_bytes() == (clean / "data" / rel).read_bytes(), rel
    _run(exp, corpus)
    assert "0 ok, 3 skipped" in capsys.readouterr().err


def test_cli_one_line_errors(tmp_path, capsys):
    from sps.cli import main
    assert main(["ingest", "--exp-dir", str(tmp_path / "exp"), f"corpus={tmp_path / 'nowhere'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0] and "not found" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["ingest", "--exp-dir", str(tmp_path / "exp"), f"corpus={tmp_path / 'empty'}"]) == 1
    assert "no usable utterance" in capsys.readouterr().err
