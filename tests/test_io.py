import json

import numpy as np
import pytest

from sps.io import (atomic_path, audio_info, load_array, loudness_gain, read_label_file, read_list, read_scp,
                    read_wav, save_array, trim_bounds, write_json, write_list, write_scp, write_wav)

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


# ------------------------------------------------------------------ resampling, trimming, loudness
def _tone(freq, sr, seconds, amp):
    return amp * np.sin(2 * np.pi * freq * np.arange(int(round(sr * seconds))) / sr)


def _peak_frequency(x, sr):
    """Frequency of the spectral peak, refined by parabolic interpolation of the log magnitude."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / x.size


def test_stereo_44k_file_to_16k_mono_against_a_sine_and_scipy(tmp_path):
    from scipy.signal import resample_poly
    sr = 44100
    left, right = _tone(1000.0, sr, 1.0, 0.6), _tone(1000.0, sr, 1.0, 0.2)   # mean: a 0.4 sine
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), sr, subtype="FLOAT")
    y, out_sr = read_wav(tmp_path / "st.wav", 16000, resample=True)
    assert out_sr == 16000 and y.ndim == 1 and y.size == 16000
    mid = y[1000:-1000]                       # away from the filter's edges
    assert abs(_peak_frequency(mid, 16000) - 1000.0) < 0.5
    np.testing.assert_allclose(np.abs(mid).max(), 0.4, rtol=2e-3)
    np.testing.assert_allclose(np.sqrt(np.mean(mid ** 2)), 0.4 / np.sqrt(2), rtol=2e-3)
    ref = resample_poly((left + right) / 2, 160, 441)
    assert np.max(np.abs(mid - ref[1000:-1000])) < 2e-3


def test_24_bit_file_reads_exactly_and_resamples(tmp_path):
    sr = 48000
    codes = np.array([0, 1, -1, 2 ** 23 - 1, -2 ** 23, 123456, -654321], dtype=np.int64)
    x = np.concatenate([codes, np.zeros(10)]).astype(np.float64) / 2 ** 23
    sf.write(tmp_path / "a.wav", x, sr, subtype="PCM_24")
    assert sf.info(tmp_path / "a.wav").subtype == "PCM_24"
    y, _ = read_wav(tmp_path / "a.wav")
    np.testing.assert_array_equal(np.round(y[:codes.size] * 2 ** 23).astype(np.int64), codes)
    tone = _tone(440.0, sr, 0.5, 0.5)
    sf.write(tmp_path / "b.flac", tone, sr, subtype="PCM_24")
    z, zsr = read_wav(tmp_path / "b.flac", 16000, resample=True)
    assert zsr == 16000 and z.size == 8000
    assert abs(_peak_frequency(z[500:-500], 16000) - 440.0) < 1.0
    np.testing.assert_allclose(np.abs(z[500:-500]).max(), 0.5, rtol=2e-3)


def test_trim_bounds_by_hand():
    sr = 16000
    # 0.3 s of silence with -70 dB noise, 0.5 s tone, 0.2 s of silence: frames of 160 samples
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(4800), _tone(300.0, sr, 0.5, 0.5), np.zeros(3200)])
    x += 10 ** (-70 / 20) * rng.standard_normal(x.size)
    start, end = trim_bounds(x, sr, threshold_db=40.0, margin=0.1)
    # the tone fills frames 30..79 exactly; 0.1 s = 1600 samples kept either side
    assert (start, end) == (30 * 160 - 1600, 80 * 160 + 1600)
    assert trim_bounds(x, sr, margin=1.0) == (0, x.size)          # the margin stops at the ends
    # a quiet tail 30 dB down is speech at a 40 dB gate, silence at a 20 dB gate
    y = np.concatenate([_tone(300.0, sr, 0.5, 0.5), _tone(300.0, sr, 0.2, 0.5 * 10 ** (-30 / 20)),
                        np.zeros(1600)])
    assert trim_bounds(y, sr, threshold_db=40.0, margin=0.0)[1] == 11200
    assert trim_bounds(y, sr, threshold_db=20.0, margin=0.0)[1] == 8000


def test_loudness_gain_by_hand():
    sr = 16000
    # a 0.1-amplitude sine is at 20 log10(0.1 / sqrt 2) = -23.01 dBFS; silence is not counted
    x = np.concatenate([np.zeros(8000), _tone(200.0, sr, 1.0, 0.1), np.zeros(8000)])
    gain, limited = loudness_gain(x, sr, target_db=-26.0, peak_db=-1.0)
    assert not limited
    assert gain == pytest.approx(-26.0 - 20 * np.log10(0.1 / np.sqrt(2)), abs=1e-3)
    y = x * 10 ** (gain / 20)
    assert 20 * np.log10(np.sqrt(np.mean(y[8000:24000] ** 2))) == pytest.approx(-26.0, abs=1e-3)
    # a target that would lift the peak (0.1) above -1 dBFS puts the peak there instead
    gain, limited = loudness_gain(x, sr, target_db=-2.0, peak_db=-1.0)
    assert limited and gain == pytest.approx(-1.0 - 20 * np.log10(0.1), abs=1e-6)
    # a square wave's level is its amplitude
    sq = 0.25 * np.sign(_tone(100.0, sr, 1.0, 1.0) + 1e-9)
    assert loudness_gain(sq, sr, target_db=0.0, peak_db=None)[0] == pytest.approx(-20 * np.log10(0.25), abs=1e-6)


def test_audio_info_of_a_stereo_file(tmp_path):
    sf.write(tmp_path / "s.flac", np.zeros((441, 2)) + 0.1, 44100, subtype="PCM_24")
    info = audio_info(tmp_path / "s.flac")
    assert info == (441, 44100, 2, "PCM_24") and info.seconds == pytest.approx(0.01)
