"""Voice files (``sps pack``), :class:`sps.Voice` and ``sps speak``.

One tiny real experiment (four utterances of the shipped corpus, WORLD features, small
duration/acoustic models and an LPC WaveNet trained for a few steps, synthesized and
scored by the recipe's stages) is packed once per module; the tests check the file
against the experiment it came from, its integrity checks, and the speaking API.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

for _module in ("soundfile", "pyworld", "pysptk"):
    pytest.importorskip(_module, reason=f"needs {_module} (audio analysis)")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "slt_festival"
HAS_FESTIVAL = shutil.which("festival") is not None
TR = {"batch_size": 2, "epochs": 3, "lr": 2e-3, "plot": False, "num_threads": 1}
WAVENET = {"vocoder": "wavenet_lpc", "name": "wn",
           "model": {"residual_channels": 8, "skip_channels": 16, "layers": 3, "max_dilation": 4,
                     "cond_channels": 8, "upsample_scales": [4, 4, 5], "order": 8, "context_frames": 1,
                     "voiced_temperature": 0.5, "pitch_phase": True, "pulses": True},
           "train": {"segment_frames": 4, "batch_size": 2, "max_steps": 4, "lr": 3e-3, "plot": False,
                     "checkpoint_every": 4, "log_every": 2, "device": "cpu"},
           "vocode": {"batch_size": 2, "seed": 0}}
SOURCE_FILTER = {"vocoder": "source_filter", "name": "sf", "model": {"order": 8, "mixed": False},
                 "vocode": {"batch_size": 2, "seed": 0}}


#: short utterances of the shipped corpus: a tiny experiment that still runs every stage
SPLITS = {"train": ["slt_0160", "slt_0204", "slt_0070"], "dev": ["slt_0330"], "eval": ["slt_0337", "slt_0345"]}


def _corpus(tmp: Path) -> Path:
    corpus = tmp / "corpus"
    corpus.mkdir()
    for sub in ("wav", "lab"):
        (corpus / sub).symlink_to(CORPUS / sub)
    for split, utts in SPLITS.items():
        (corpus / f"{split}.list").write_text("\n".join(utts) + "\n")
    return corpus


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A tiny experiment run through the recipe's stages (two acoustic models, full TTS with
    predicted durations, a trained LPC WaveNet and the source-filter vocoder, scored), and
    its packed voice."""
    import yaml
    from sps.stages import evaluate, features as fstage, linguistic, pack, prepare, stats, synth, vocoder
    from sps.stages.runner import StageContext
    from sps.stages.train import train
    tmp = tmp_path_factory.mktemp("voice")
    exp = tmp / "exp"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    prepare.run(StageContext(exp, {"corpus": {"path": str(_corpus(tmp))}}))
    fstage.run(StageContext(exp, {"f0_method": "dio", "f0_floor": 80.0, "f0_ceil": 500.0}))
    linguistic.run(StageContext(exp, {}))
    stats.run(StageContext(exp, {}))
    train(StageContext(exp, {"name": "dur", "kind": "duration", "model": {"hidden_dim": 16, "num_layers": 1},
                             "train": TR}))
    for name, model in (("ac_dnn", {"hidden_dim": 16, "num_layers": 1}),
                        ("ac_conv", {"type": "conv", "hidden_dim": 16, "num_layers": 2, "kernel_size": 3,
                                     "dilations": [1, 2]})):
        train(StageContext(exp, {"name": name, "model": model, "train": TR}))
        synth.run(StageContext(exp, {"acoustic_model": name, "splits": ["eval"]}))
    synth.run(StageContext(exp, {"copy_synthesis": True, "splits": ["eval"]}))
    vocoder.train(StageContext(exp, WAVENET))
    (tmp / "sf.yaml").write_text(yaml.safe_dump(SOURCE_FILTER))
    (tmp / "wn.yaml").write_text(yaml.safe_dump(WAVENET))
    for cfg in (WAVENET, SOURCE_FILTER):
        vocoder.vocode(StageContext(exp, {**cfg, "vocode": {**cfg["vocode"], "acoustic_models": []}}))
    evaluate.run(StageContext(exp, {"duration_model": "dur"}))
    # full TTS with the best-scored models (none named: eval/best.json chooses)
    synth.run(StageContext(exp, {"durations": "predicted", "splits": ["eval"], "name": "tts"}))
    out = tmp / "tiny.voice.pt"
    pack.run(StageContext(exp, {"out": str(out), "vocoders": [str(tmp / "wn.yaml"), str(tmp / "sf.yaml")]}))
    torch.set_num_threads(threads)
    return exp, out


@pytest.fixture(scope="module")
def voice(experiment):
    from sps import Voice
    return Voice.load(experiment[1])


def _lab(utt: str) -> Path:
    return CORPUS / "lab" / f"{utt}.lab"


def test_eval_records_the_best_models(experiment):
    """eval/best.json names the lowest-MCD acoustic model and vocoder, read off the metrics files."""
    exp, _ = experiment
    best = json.loads((exp / "eval" / "best.json").read_text())
    mcd = {s: json.loads((exp / "eval" / s / "eval" / "metrics.json").read_text())["mean"]["mcd_db"]
           for s in ("ac_dnn", "ac_conv", "world_copy", "wn_copy", "sf_copy")}
    assert best["acoustic_model"]["name"] == min(("ac_dnn", "ac_conv"), key=mcd.get)
    assert best["vocoder"]["name"] == {"world_copy": "world", "wn_copy": "wn", "sf_copy": "sf"}[
        min(("world_copy", "wn_copy", "sf_copy"), key=mcd.get)]
    assert best["duration_model"]["name"] == "dur"
    assert set(best["vocoders"]) == {"world", "wn", "sf"}


def test_voice_file_loads_weights_only_and_holds_the_experiment(experiment):
    """A plain torch.load(weights_only=True) reads the file; it holds the experiment's weights,
    statistics, question file and configs."""
    from sps.train import load_checkpoint
    exp, path = experiment
    data = torch.load(path, weights_only=True)
    assert data["format"] == "sps-voice" and data["format_version"] == 1
    best = json.loads((exp / "eval" / "best.json").read_text())
    ac = best["acoustic_model"]["name"]
    assert data["acoustic"]["name"] == ac and data["duration"]["name"] == "dur"
    ckpt = load_checkpoint(exp / "models" / ac)["model"]
    assert all(torch.equal(ckpt[k], data["acoustic"]["state_dict"][k]) for k in ckpt)
    with np.load(exp / "stats" / "out_acoustic.npz") as st:
        assert np.array_equal(data["acoustic"]["stats"]["out"]["std"].numpy(), st["std"])
    spec = json.loads((exp / "dump" / "in_acoustic.json").read_text())
    assert data["voice"]["questions"]["text"] == Path(spec["question_file"]).read_text()
    assert data["voice"]["questions"]["semantics"] == spec["question_semantics"]
    assert set(data["vocoders"]) == {"wn", "sf"} and data["configs"]["vocoders"]["wn"]["model"]["layers"] == 3
    wn = load_checkpoint(exp / "models" / "wn")["model"]
    assert all(torch.equal(wn[k], data["vocoders"]["wn"]["state_dict"][k]) for k in wn)


def _int16(path) -> np.ndarray:
    import soundfile as sf
    return sf.read(str(path), dtype="int16")[0]


def test_packed_voice_speaks_like_its_experiment(experiment, voice, tmp_path):
    """Bit for bit with WORLD (the synth stage's full-TTS files), draw for draw with the
    LPC WaveNet and the source-filter vocoder (the stage's own models, same seed)."""
    from sps.io import load_array, write_wav
    from sps.stages.experiment import Experiment
    from sps.stages.vocoder import load_vocoder, make_vocoder, vocoder_config
    exp, _ = experiment
    e = Experiment(exp)
    best = json.loads((exp / "eval" / "best.json").read_text())
    assert json.loads((exp / "synth" / "tts" / "eval" / "synth.json").read_text())["acoustic_model"] == \
        best["acoustic_model"]["name"] == voice.info["models"]["acoustic"]
    cond = e.conditioning()
    wn = load_vocoder(e, "wn", cond, torch.device("cpu"))
    sf = make_vocoder(vocoder_config(SOURCE_FILTER), cond)[0]
    singles = []
    for utt in SPLITS["eval"]:
        static = voice.parameters(_lab(utt))
        assert np.array_equal(static, load_array(exp / "synth" / "tts" / "eval" / f"{utt}.npy"))
        wav, sr = voice.speak_labels(_lab(utt), "world")
        write_wav(tmp_path / f"{utt}.wav", wav, sr)
        assert sr == 16000 and np.array_equal(_int16(tmp_path / f"{utt}.wav"),
                                              _int16(exp / "synth" / "tts" / "eval" / f"{utt}.wav"))
        c = torch.from_numpy(cond(static))[None]
        for name, model in (("wn", wn), ("sf", sf)):
            expect = model.generate(c, generator=torch.Generator().manual_seed(0))[0].double().numpy()
            got, _ = voice.speak_labels(_lab(utt), name, seed=0)
            assert np.array_equal(got, np.clip(expect, -1, 1)), name
        singles.append(got)
    # the batched form: each utterance draws as if alone
    batch, _ = voice.speak_labels([_lab(u) for u in SPLITS["eval"]], "sf", batch_size=2)
    assert all(np.array_equal(b, one) for b, one in zip(batch, singles))


# ---------------------------------------------------------------------------- integrity

def _resave(src: Path, dst: Path, change) -> Path:
    data = torch.load(src, weights_only=True)
    change(data)
    torch.save(data, dst)
    return dst


class _Payload:
    """Unpickling this would run code (the file it would write must never appear)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bad_voice_files_give_one_clear_line(experiment, tmp_path, capsys):
    from sps.cli import main
    from sps.synthesis import VoiceFileError, read_voice
    _, path = experiment
    raw = path.read_bytes()
    cases = {}
    (tmp_path / "truncated.pt").write_bytes(raw[:len(raw) // 2])
    cases["truncated.pt"] = "not a readable voice file"
    (tmp_path / "garbage.pt").write_bytes(b"not a voice file at all" * 100)
    cases["garbage.pt"] = "not a readable voice file"
    # a weight changed after packing, a plain value changed after packing
    cases[_resave(path, tmp_path / "weights.pt", lambda d: d["acoustic"]["state_dict"][
        next(iter(d["acoustic"]["state_dict"]))].add_(1e-3)).name] = "checksum mismatch in section 'acoustic'"
    cases[_resave(path, tmp_path / "plain.pt", lambda d: d["voice"].update(festival_voice="other")).name] = \
        "checksum mismatch in section 'voice'"
    cases[_resave(path, tmp_path / "dropped.pt", lambda d: d.pop("configs")).name] = "section 'configs' is missing"
    cases[_resave(path, tmp_path / "newer.pt", lambda d: d.update(format_version=2)).name] = "format 2 is newer"
    cases[_resave(path, tmp_path / "older.pt", lambda d: d.update(format_version=0)).name] = "format 0 is older"
    torch.save({"model": {}}, tmp_path / "checkpoint.pt")
    cases["checkpoint.pt"] = "not an sps voice file"
    marker = tmp_path / "code_ran"
    torch.save({"format": "sps-voice", "format_version": 1, "voice": _Payload(marker)}, tmp_path / "code.pt")
    cases["code.pt"] = "refused"
    # bytes flipped inside the archive: the zip reader or the checksums find it
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)
    flipped = bytearray(raw)
    at = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    flipped[at:at + 8] = bytes(b ^ 0xFF for b in flipped[at:at + 8])
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    cases["flipped.pt"] = "checksum mismatch|not a readable voice file"
    for name, message in cases.items():
        with pytest.raises(VoiceFileError, match=message) as info:
            read_voice(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value), name
    assert not marker.exists()
    capsys.readouterr()
    for name, message in (("weights.pt", "checksum mismatch"), ("code.pt", "refused"), ("missing.pt", "not found")):
        assert main(["speak", "--voice", str(tmp_path / name), "--labels", str(_lab("slt_0337")),
                     "--out", str(tmp_path / "x.wav")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("sps speak: error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists() and not (tmp_path / "x.wav").exists()


def _sps(args: list[str], capsys) -> tuple[int, str, str]:
    """``sps ARGS`` in this process: (exit status, stdout, stderr)."""
    from sps.cli import main
    capsys.readouterr()
    status = main(args)
    out = capsys.readouterr()
    return status, out.out, out.err


def test_a_vocoder_not_packed_is_refused_by_name(experiment, tmp_path, capsys):
    from sps import Voice
    exp, _ = experiment
    out = tmp_path / "bare.voice.pt"
    assert _sps(["pack", "--exp-dir", str(exp), "--out", str(out), "vocoders=[]"], capsys)[0] == 0
    bare = Voice.load(out)
    assert bare.vocoders == ["world"] and bare.default_vocoder == "world"
    with pytest.raises(ValueError, match=r"has no vocoder 'wn' \(packed: world\)"):
        bare.speak_labels(_lab("slt_0337"), "wn")
    status, _, err = _sps(["speak", "--voice", str(out), "--labels", str(_lab("slt_0337")),
                           "--out", str(tmp_path / "x.wav"), "--vocoder", "wn"], capsys)
    assert status == 1 and "no vocoder 'wn'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.wav").exists()


# ---------------------------------------------------------------------------- speaking

def test_speed_pitch_and_postfilter(voice):
    """Speed divides the predicted durations before rounding; pitch adds semitones to lf0
    only; the post-filter is sps.synthesis.postfilter on the mel-cepstrum only."""
    from sps.frontend import linguistic_features, load_labels
    from sps.spec import split_streams
    from sps.synthesis import postfilter
    labels = load_labels(_lab("slt_0345"))
    syn = voice.synthesizer
    raw, _ = syn.duration(linguistic_features(labels, syn.questions))
    plain = voice.parameters(labels, postfilter=False)
    for speed in (0.5, 2.0):
        frames = int(np.maximum(np.rint(raw / speed), 1).sum())
        assert len(voice.parameters(labels, speed=speed)) == frames
    up = voice.parameters(labels, pitch=3.0, postfilter=False)
    a, b = split_streams(plain, voice.synthesizer.spec), split_streams(up, voice.synthesizer.spec)
    np.testing.assert_allclose(b["lf0"] - a["lf0"], 3 * np.log(2) / 12, atol=1e-5)
    for k in ("mgc", "vuv", "bap"):
        assert np.array_equal(a[k], b[k])
    pf = split_streams(voice.parameters(labels, postfilter=1.3), voice.synthesizer.spec)
    an = voice.synthesizer.spec["analysis"]
    np.testing.assert_allclose(pf["mgc"], postfilter(a["mgc"], an["alpha"], 1.3, an["fft_size"]), atol=1e-5)
    assert np.array_equal(pf["lf0"], a["lf0"])
    with pytest.raises(ValueError, match="speed"):
        voice.parameters(labels, speed=0)


def test_stream_is_the_sentences_in_order(voice):
    labs = [_lab(u) for u in SPLITS["eval"]]
    for vocoder in ("world", "wn"):
        pieces = list(voice.stream_labels(labs, vocoder, chunk_samples=1000))
        whole = np.concatenate([voice.speak_labels(lab, vocoder)[0] for lab in labs])
        assert np.array_equal(np.concatenate(pieces), whole)
        if vocoder == "wn":        # the LPC WaveNet streams chunk by chunk within a sentence
            assert len(pieces) > len(labs) and max(len(p) for p in pieces) <= 1000


@pytest.mark.skipif(not HAS_FESTIVAL, reason="needs festival (apt-get install festival festvox-us-slt-hts)")
def test_speak_text_edge_cases_as_synth_text(experiment, voice, tmp_path):
    """Empty or punctuation-only text: the same one-line error as sps synth --text; non-ASCII
    and very long text: speech, the same waveform as sps synth --text (the experiment's path)."""
    from sps.stages.experiment import Experiment
    from sps.stages.synth import SynthConfig, synthesize_text
    exp, _ = experiment
    for text, message in (("", "empty text"), ("   ", "empty text"), ("?! ... --", "no speakable text")):
        with pytest.raises(ValueError, match=message):
            voice.speak(text)
        with pytest.raises(ValueError, match=message):
            synthesize_text(Experiment(exp), text, tmp_path / "x.wav", SynthConfig())
    wav, sr = voice.speak("Café naïve, déjà vu.", "wn", seed=3)
    ref = synthesize_text(Experiment(exp), "Cafe naive, deja vu.", tmp_path / "ref.wav", SynthConfig(vocoder="wn",
                                                                                                   seed=3))
    assert np.array_equal(wav, ref) and len(wav) > sr / 2
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 7)     # 63 words: two Festival calls
    wav, sr = voice.speak(long)
    assert len(wav) > 10 * sr
    pieces = list(voice.stream("Hello there. ... How are you?"))
    assert len(pieces) == 2


def test_speak_command(experiment, voice, tmp_path, capsys):
    from sps.io import read_wav, write_wav
    _, path = experiment
    status, _, err = _sps(["speak", "--voice", str(path), "--labels", str(_lab("slt_0337")),
                           "--out", str(tmp_path / "a.wav"), "--vocoder", "sf", "--pitch", "2"], capsys)
    assert status == 0 and "vocoder sf (named)" in err
    write_wav(tmp_path / "ref.wav", voice.speak_labels(_lab("slt_0337"), "sf", pitch=2)[0], voice.sample_rate)
    assert np.array_equal(_int16(tmp_path / "a.wav"), _int16(tmp_path / "ref.wav"))
    status, out, _ = _sps(["speak", "--voice", str(path), "--labels", *[str(_lab(u)) for u in SPLITS["eval"]],
                           str(tmp_path / "missing.lab"), "--out", str(tmp_path / "many")], capsys)
    assert status == 0 and "2 ok" in out and "missing.lab" in out, out
    for u in SPLITS["eval"]:
        x, sr = read_wav(tmp_path / "many" / f"{u}.wav")
        assert sr == voice.sample_rate and len(x) > sr
    # P13: two label files of one name would overwrite each other's audio: refused first
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / f"{SPLITS['eval'][0]}.lab"
    twin.write_bytes(_lab(SPLITS["eval"][0]).read_bytes())
    status, _, err = _sps(["speak", "--voice", str(path), "--labels", str(_lab(SPLITS["eval"][0])), str(twin),
                           "--out", str(tmp_path / "twins")], capsys)
    assert status == 1 and len(err.strip().splitlines()) == 1 and "distinct names" in err and str(twin) in err, err
    assert not (tmp_path / "twins").exists()
    status, out, _ = _sps(["speak", "--voice", str(path), "--info"], capsys)
    assert status == 0 and "vocoders: world, sf, wn" in out
    status, _, err = _sps(["speak", "--voice", str(path), "--out", str(tmp_path / "b.wav")], capsys)
    assert status == 1 and "nothing to speak" in err
    if HAS_FESTIVAL:
        (tmp_path / "lines.txt").write_text("Hello there.\n\n?!\nGood bye.\n")
        status, out, _ = _sps(["speak", "--voice", str(path), "--text-file", str(tmp_path / "lines.txt"),
                               "--out", str(tmp_path / "lines")], capsys)
        assert status == 0 and "lines.txt:3" in out, out
        assert sorted(p.name for p in (tmp_path / "lines").glob("*.wav")) == ["0001.wav", "0004.wav"]


# ---------------------------------------------------------------------------- the shipped voice

PRETRAINED = ROOT / "data" / "pretrained" / "slt_festival.voice.pt"


@pytest.mark.skipif(not PRETRAINED.exists(), reason="the shipped voice is not in this checkout")
def test_shipped_voice_scores_as_the_recipe_recorded():
    """The shipped voice against its recipe's own eval scores, utterance by utterance: the
    natural features re-analysed from the shipped audio (the features stage's function),
    the acoustic model with natural durations (frame by frame) and full TTS (predicted
    durations, DTW-aligned) must score what the eval stage recorded in the file; every
    packed vocoder's copy synthesis within 0.5 dB MCD and 6 points V/UV of what the vocode
    stage recorded for the same utterance (with other draws)."""
    from sps import Voice
    from sps.features import FeatureConfig, extract_utterance
    from sps.frontend import load_labels
    from sps.spec import static_columns
    from sps.stages.evaluate import acoustic_metrics, dtw_align
    from sps.vocoders import world
    assert PRETRAINED.stat().st_size <= 15e6
    voice = Voice.load(PRETRAINED)
    scores = voice.info["scores"]
    assert voice.vocoders[0] == "world" and scores["split"] == "eval"
    spec = voice.synthesizer.spec
    config = FeatureConfig.from_spec(spec)
    for utt in ("slt_0337", "slt_0345"):
        labels = load_labels(_lab(utt))
        feats = extract_utterance(next((CORPUS / "wav").glob(f"{utt}.*")), _lab(utt), config)
        natural = feats["out_acoustic"][:, static_columns(spec)]
        syn = voice.synthesizer
        gen = syn.acoustic_params(syn.frame_features(labels, labels.durations()))
        T = min(len(gen), len(natural))
        got = acoustic_metrics(natural[:T], gen[:T], spec, syn.vuv_threshold)
        want = scores["acoustic"]["utterances"][utt]
        assert got["mcd_db"] == pytest.approx(want["mcd_db"], abs=1e-3)
        assert got["f0_rmse_hz"] == pytest.approx(want["f0_rmse_hz"], abs=1e-2)
        tts = acoustic_metrics(*dtw_align(natural, voice.parameters(labels), spec), spec, syn.vuv_threshold)
        assert tts["mcd_db"] == pytest.approx(scores["full_tts"]["utterances"][utt]["mcd_db"], abs=1e-3)
        # every packed vocoder from the natural features, scored like the vocode stage (WORLD
        # re-analysis), against what that stage recorded for this utterance (other draws)
        for name in voice.vocoders[1:]:
            wav = voice.vocoder(name).waveforms([natural])[0]
            static, _ = world.analyze(wav, voice.sample_rate, config)
            T = min(len(static), len(natural))
            got = acoustic_metrics(natural[:T], static[:T], spec)
            want = scores["vocoders"][name]["utterances"][utt]
            assert abs(got["mcd_db"] - want["mcd_db"]) < 0.5, (name, utt, got, want)
            assert abs(got["vuv_error_pct"] - want["vuv_error_pct"]) < 6, (name, utt, got, want)


def test_state_level_duration_model_times_phone_labels(voice):
    """Text gives phone-level labels; a duration model of 5 states per phone times them
    state by state (the frames are the sum of its rounded predictions)."""
    import copy
    from sps.features import Normalizer
    from sps.frontend import linguistic_features, load_labels
    from sps.models import TrainedModel, build_model
    syn = voice.synthesizer
    q = syn.duration.norm.in_dim
    torch.manual_seed(0)
    net = build_model({"hidden_dim": 8, "num_layers": 1}, q, 5)
    norm = Normalizer({"min": syn.duration.norm.in_min, "max": syn.duration.norm.in_max},
                      {"mean": np.full(5, 3.0), "std": np.full(5, 1.0), "min": np.ones(5), "max": np.full(5, 9.0)})
    states = copy.copy(syn)
    states.duration, states.max_duration = TrainedModel(net, norm), np.full(5, 18.0)
    labels = load_labels(_lab("slt_0345")).without_times()
    raw, _ = states.duration(linguistic_features(labels, syn.questions))
    static = states.from_labels(labels)
    assert static.shape[0] == int(np.clip(np.rint(raw), 1, 18).sum())


def test_vocoder_trains_on_generated_features(experiment):
    """train.features=generated: the stage refuses until the train/dev splits are synthesized
    with natural durations (naming the command), then trains on exactly those files."""
    from sps.stages import synth, vocoder
    from sps.stages.runner import StageContext
    from sps.train import load_checkpoint
    exp, _ = experiment
    gta = {**WAVENET, "name": "wn_gta",
           "train": {**WAVENET["train"], "features": "generated", "acoustic_model": "ac_conv", "max_steps": 2,
                     "checkpoint_every": 2}}
    with pytest.raises(FileNotFoundError, match=r"no train synthesis of ac_conv .*sps synth .*splits=\[train,dev\]"):
        vocoder.train(StageContext(exp, gta))
    synth.run(StageContext(exp, {"acoustic_model": "ac_conv", "splits": ["train", "dev"]}))
    for split in ("train", "dev"):
        for utt in SPLITS[split]:      # natural durations: as many frames as the natural features
            gen = np.load(exp / "synth" / "ac_conv" / split / f"{utt}.npy")
            assert len(gen) == len(np.load(exp / "dump" / split / "out_acoustic" / f"{utt}.npy"))
    torch.manual_seed(0)
    vocoder.train(StageContext(exp, gta))
    import yaml
    natural, generated = (yaml.safe_load(load_checkpoint(exp / "models" / m)["config"]) for m in ("wn", "wn_gta"))
    assert generated["features"] == "generated" and natural["features"] == "natural"
    assert generated["data_digest"] != natural["data_digest"]        # other conditioning files
    log = [json.loads(line) for line in (exp / "models" / "wn_gta" / "log.jsonl").read_text().splitlines()]
    assert any(np.isfinite(r.get("train_loss", np.nan)) for r in log) and any("valid_loss" in r for r in log)


def test_the_stage_measures_the_corpus_colour_and_gives_it_to_older_checkpoints(experiment):
    """The LPC WaveNet's corpus colour (sps.vocoders.colour) is measured by train-vocoder from
    the train split and stored in its checkpoints; a model from before the colour gains it,
    weights untouched, when its finished stage runs again."""
    from sps.stages import vocoder
    from sps.stages.runner import StageContext
    from sps.train import checkpoints
    from sps.vocoders.colour import ORDER
    exp, _ = experiment
    files = [exp / "models" / "wn" / "best.pt", *checkpoints(exp / "models" / "wn")]
    saved = {p: torch.load(p, weights_only=True) for p in files}
    colour = saved[files[0]]["model"]["corpus_colour"]
    assert colour.shape == (ORDER + 1,) and colour[0] == 1 and torch.all(colour[1:].abs() < 1)
    for p, ckpt in saved.items():                      # as a model trained before the colour
        older = {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if k != "corpus_colour"}}
        torch.save(older, p)
    vocoder.train(StageContext(exp, WAVENET))
    for p, ckpt in saved.items():
        again = torch.load(p, weights_only=True)["model"]
        assert again.keys() == ckpt["model"].keys() and all(torch.equal(again[k], v) for k, v in ckpt["model"].items())
