import json

import numpy as np
import pytest

from sps.io import (atomic_path, load_array, read_label_file, read_list, read_scp, read_wav,
                    save_array, write_json, write_list, write_scp, write_wav)

sf = pytest.importorskip("soundfile", reason="needs soundfile (audio files)")


def test_wav_round_trip_matches_soundfile(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.9, 0.9, 1600)
    write_wav(tmp_path / "a.flac", x, 16000)
    y, sr = read_wav(tmp_path / "a.flac", sample_rate=16000)
    ref, ref_sr = sf.read(tmp_path / "a.flac")
    assert sr == ref_sr == 16000
    np.testing.assert_array_equal(y, ref)
    assert np.max(np.abs(y - x)) < 1.0 / 32768 + 1e-12  # 16-bit quantisation only


@pytest.mark.parametrize("problem", ["empty", "corrupt", "rate", "missing"])
def test_bad_audio_errors_name_file(tmp_path, problem):
    path = tmp_path / f"{problem}.wav"
    if problem == "empty":
        sf.write(path, np.zeros(0), 16000)
    elif problem == "corrupt":
        path.write_bytes(b"RIFF\x00\x00garbage" * 10)
    elif problem == "rate":
        sf.write(path, np.zeros(100), 22050)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        read_wav(path, sample_rate=16000)
    assert str(path) in str(err.value)
    if problem == "rate":
        assert "22050" in str(err.value)


def test_write_wav_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "x.wav", [0.0, np.nan], 16000)
    assert not (tmp_path / "x.wav").exists()


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.npy"
    save_array(target, np.ones((2, 3)))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    np.testing.assert_array_equal(load_array(target), np.ones((2, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]


def test_lists_scp_json(tmp_path):
    write_list(tmp_path / "a.list", ["u1", "u2"])
    (tmp_path / "b.list").write_text("u1\n\n# comment\nu3  extra\n")
    assert read_list(tmp_path / "a.list") == ["u1", "u2"]
    assert read_list(tmp_path / "b.list") == ["u1", "u3"]
    write_scp(tmp_path / "w.scp", {"u1": "/x/u1.wav", "u2": "/x/my file.wav"})
    assert read_scp(tmp_path / "w.scp") == {"u1": "/x/u1.wav", "u2": "/x/my file.wav"}
    (tmp_path / "dup.scp").write_text("u1 a\nu1 b\n")
    with pytest.raises(ValueError, match="dup.scp:2"):
        read_scp(tmp_path / "dup.scp")
    write_json(tmp_path / "s.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": [1, 2]}


def test_label_reader(tmp_path):
    p = tmp_path / "a.lab"
    p.write_text("0 50000 x^pau-a+b\n50000 1200000 pau^a-b+c\n\n")
    lines = read_label_file(p)
    assert [(l.start, l.end) for l in lines] == [(0, 50000), (50000, 1200000)]
    assert lines[1].context == "pau^a-b+c"
    p.write_text("a\nb\n")
    assert [l.start for l in read_label_file(p)] == [None, None]


@pytest.mark.parametrize("text,needle", [
    ("0 100 a\n50 200 b\n", ":2: segment starts"),
    ("0 100 a\n100 100 b\n", ":2: bad segment"),
    ("0 x a\n", ":1: start/end"),
    ("0 100 a b c\n", ":1: expected"),
    ("0 100 a\nb\n", ":2: mixes"),
    ("\n", "empty label file"),
])
def test_label_reader_errors(tmp_path, text, needle):
    p = tmp_path / "bad.lab"
    p.write_text(text)
    with pytest.raises(ValueError, match=needle) as err:
        read_label_file(p)
    assert str(p) in str(err.value)


def test_atomic_outputs_get_default_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        save_array(tmp_path / "a.npy", np.zeros(2))
    finally:
        os.umask(umask)
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == 0o644
