"""The recipe script itself, as a user runs it: stages 0-3 on a tiny subset."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sps.io import audio_length, read_json, read_label_file, read_list, read_scp

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "recipes" / "slt_festival" / "run.sh"
PIPELINE = ROOT / "recipes" / "common" / "pipeline.sh"


def _run(*args, exp):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(RUN), "--exp-dir", str(exp), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


def test_help_lists_stages():
    out = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("prepare", "features", "linguistic", "stats", "synth", "eval", "vocode", "report"):
        assert word in out.stdout


def test_unknown_argument_fails(tmp_path):
    out = _run("--bogus", exp=tmp_path)
    assert out.returncode == 2 and "unknown argument" in out.stderr


@pytest.mark.slow
def test_stages_0_to_3_with_overrides_and_resume(tmp_path):
    exp = tmp_path / "exp"
    args = ["--stage", "0", "--stop-stage", "3", "--jobs", "1",
            "prepare.corpus.max_utts=2", "features.f0_method=dio", "features.mgc_order=24"]
    out = _run(*args, exp=exp)
    assert out.returncode == 0, out.stderr[-3000:]
    utts = read_list(exp / "data" / "train.list")
    assert len(utts) == 2
    spec = read_json(exp / "dump" / "out_acoustic.json")
    assert spec["streams"][0]["static_dim"] == 25  # the override reached the features stage
    assert spec["analysis"]["f0_method"] == "dio"
    for utt in utts:
        y = np.load(exp / "dump" / "train" / "out_acoustic" / f"{utt}.npy")
        x = np.load(exp / "dump" / "train" / "in_acoustic" / f"{utt}.npy")
        d = np.load(exp / "dump" / "train" / "out_duration" / f"{utt}.npy")
        assert y.shape[0] == x.shape[0] == int(d.sum()) and y.shape[1] == spec["dim"]
    stats = np.load(exp / "stats" / "out_acoustic.npz")
    assert stats["mean"].shape == (spec["dim"],)
    # a rerun resumes: nothing is recomputed, files stay byte-identical
    before = {p: p.read_bytes() for p in (exp / "dump").rglob("*.npy")}
    out = _run(*args, exp=exp)
    assert out.returncode == 0
    assert "0 ok" in out.stdout
    assert {p: p.read_bytes() for p in (exp / "dump").rglob("*.npy")} == before


@pytest.mark.parametrize("gpu,only", [(0, ""), (1, ""), (0, "acoustic_conv_mge,acoustic_dnn,acoustic_conv")])
def test_model_names_come_from_conf(gpu, only):
    out = subprocess.run(["bash", "-c", f"source {PIPELINE}; conf_dirs=({RUN.parent}/conf); gpu={gpu}; "
                          f"acoustic_only={only}; "
                          "echo $(for f in $(acoustic_confs dnn) $(acoustic_confs conv lstm); do conf_name $f; done)"],
                         capture_output=True, text=True, timeout=60)
    names = out.stdout.split()
    if gpu:   # --gpu: the *_gpu.yaml configs only, MSE models before their MGE fine-tuning
        assert names == ["acoustic_conv_gpu", "acoustic_lstm_gpu", "acoustic_conv_mge_gpu", "acoustic_lstm_mge_gpu"]
    elif only:   # --acoustic-models: those, in the same order
        assert names == ["acoustic_dnn", "acoustic_conv", "acoustic_conv_mge"], out.stderr
    else:
        assert names == ["acoustic_dnn", "acoustic_dnn_mge", "acoustic_conv", "acoustic_conv_mge"], out.stderr


def test_failing_stage_stops_the_recipe_naming_its_log(tmp_path):
    """(Shards and launchers: tests/test_cluster.py.)"""
    out = _run("--stage", "3", "--stop-stage", "3", "stats.std_floor=abc", exp=tmp_path / "exp")
    assert out.returncode != 0 and "stats.std_floor: expected float" in out.stdout + out.stderr
    assert "failed" in out.stderr and "log/stats." in out.stderr


def test_option_errors(tmp_path):
    for args, message in ((["--nj", "0"], "--nj must be a positive integer"),
                          (["--num-nodes", "2"], "--num-nodes needs --ngpu"),
                          (["--cmd", "srun"], "replaced by the launchers of cmd.sh"),
                          (["--cmd-sh", str(tmp_path / "none.sh")], "no such launcher settings file"),
                          (["--acoustic-models", "acoustic_conv,acoustic_cnv"], "'acoustic_cnv' is not the name")):
        out = _run(*args, exp=tmp_path)
        assert out.returncode == 2 and message in out.stderr, out.stderr


# ------------------------------------------------------------------ recipes/own_voice (same pipeline)
OWN = ROOT / "recipes" / "own_voice" / "run.sh"


def test_own_voice_help_and_bad_arguments(tmp_path):
    out = subprocess.run(["bash", str(OWN), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("ingest", "align", "features", "report", "--corpus"):
        assert word in out.stdout
    out = subprocess.run(["bash", str(OWN), "--exp-dir", str(tmp_path), "--bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown argument '--bogus'" in out.stderr


def test_conf_search_path_first_folder_wins(tmp_path):
    """own_voice takes the models of slt_festival/conf; a config of its own hides the one there."""
    mine = tmp_path / "conf"
    mine.mkdir()
    (mine / "acoustic_conv.yaml").write_text("name: acoustic_conv\nmodel:\n  type: conv\n")
    (mine / "acoustic_x.yaml").write_text("name: my_dnn\nmodel:\n  type: dnn\n")
    script = (f"source {PIPELINE}; gpu=0; conf_dirs=({mine} {RUN.parent}/conf); "
              "echo $(for f in $(acoustic_confs dnn) $(acoustic_confs conv lstm); do conf_name $f; done); "
              "conf_file features; conf_file acoustic_conv")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    names, features, conv = out.stdout.splitlines()
    assert names.split() == ["acoustic_dnn", "my_dnn", "acoustic_dnn_mge", "acoustic_conv", "acoustic_conv_mge"], \
        out.stderr
    assert features == f"{RUN.parent}/conf/features.yaml" and conv == f"{mine}/acoustic_conv.yaml"


def _own(*args, exp):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(OWN), "--exp-dir", str(exp), *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)


#: a short aligner schedule: the test checks the plumbing, docs/own_data.md the alignment
TINY_ALIGN = ["align.aligner.flat_iterations=1", "align.aligner.mixtures=[1]", "align.aligner.iterations=1",
              "align.textgrids=false"]


def _tiny_corpus(root: Path, n: int = 3) -> Path:
    """n utterances of the shipped corpus as a folder of 44.1 kHz stereo wavs + txt transcripts."""
    from scipy.signal import resample_poly
    sf = pytest.importorskip("soundfile")
    corpus = root / "corpus"
    corpus.mkdir()
    lines = (ROOT / "data" / "slt_festival" / "metadata.csv").read_text().splitlines()
    for line in lines[:n]:
        utt, text, _ = line.split("|")
        x, sr = sf.read(ROOT / "data" / "slt_festival" / "wav" / f"{utt}.flac")
        y = resample_poly(x, 441, 160)
        sf.write(corpus / f"{utt}.wav", np.stack([y, 0.5 * y], axis=1), 44100)
        (corpus / f"{utt}.txt").write_text(text + "\n")
    return corpus


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("festival") is None, reason="needs festival + festvox-us-slt-hts")
def test_own_voice_stages_0_1_from_wav_and_text(tmp_path):
    corpus = _tiny_corpus(tmp_path)
    exp = tmp_path / "exp"
    # --nj 2: the aligner's per-utterance steps as 2 concurrent shard jobs of the local launcher
    # (they share the experiment lock), its update and finish steps alone
    out = _own("--corpus", str(corpus), "--stop-stage", "1", "--jobs", "1", "--nj", "2", *TINY_ALIGN, exp=exp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "3 utterances" in out.stdout and "3 of 3 utterances aligned" in out.stdout
    assert sum("step=prepare" in ln and "(2 job(s)" in ln for ln in out.stdout.splitlines()) == 1
    labs = read_scp(exp / "data" / "lab.scp")
    wavs = read_scp(exp / "data" / "wav.scp")
    assert sorted(labs) == sorted(wavs) == sorted(p.stem for p in corpus.glob("*.wav"))
    for utt, lab in labs.items():
        labels = read_label_file(lab)
        assert labels[0].start == 0 and abs(labels[-1].end * 16000 // 10**7 - audio_length(wavs[utt])[0]) <= 80
        assert "-pau+" in labels[0].context and "-pau+" in labels[-1].context
    # the pipeline takes the aligned labels as they are (stage 3: linguistic features)
    out = _own("--stage", "3", "--stop-stage", "3", "--jobs", "1", exp=exp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.stem for p in (exp / "dump" / "train" / "in_acoustic").glob("*.npy")) == \
        read_list(exp / "data" / "train.list")


def test_own_voice_align_steps_through_the_launcher(tmp_path):
    """With --nj 2, stage 1 runs sps align step by step: per-utterance steps as shard jobs
    through train_cmd, update until the aligner exists, then align and finish (a stand-in
    'sps' records the calls; the real sharded training is tested in tests/test_align*.py)."""
    exp = tmp_path / "exp"
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sps").write_text(f"""#!/usr/bin/env bash
echo "sps $*" >> {calls}
case "$*" in
  *step=update*) n=$(grep -c step=update {calls}); [ "$n" -ge 3 ] && touch {exp}/align/model.pt ;;
  *step=prepare*) mkdir -p {exp}/align ;;
esac
exit 0
""")
    (fake / "sps").chmod(0o755)
    launcher = tmp_path / "launch.sh"      # records how run.sh calls it, then runs the jobs
    launcher.write_text(f'#!/usr/bin/env bash\necho "submit $*" >> {calls}\nexec sps-launch local "$@"\n')
    launcher.chmod(0o755)
    cmd_sh = tmp_path / "cmd.sh"
    cmd_sh.write_text(f"train_cmd={launcher}\ndecode_cmd={launcher}\ncuda_cmd={launcher}\n")
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["bash", str(OWN), "--exp-dir", str(exp), "--corpus", str(tmp_path), "--stage", "1",
                          "--stop-stage", "1", "--cmd-sh", str(cmd_sh), "--nj", "2"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    steps = []
    for line in calls.read_text().splitlines():
        if line.startswith("sps align"):
            step = line.split("step=")[1].split()[0]
            shard = line.split("--shard ")[1].split()[0] if "--shard" in line else "-"
            steps.append(f"{step}:{shard}")
    assert sorted(steps[:2]) == ["prepare:1/2", "prepare:2/2"]
    assert steps[2] == "update:-"
    assert sorted(steps[3:5]) == ["accumulate:1/2", "accumulate:2/2"] and steps[5] == "update:-"
    assert sorted(steps[6:8]) == ["accumulate:1/2", "accumulate:2/2"] and steps[8] == "update:-"
    assert sorted(steps[9:11]) == ["align:1/2", "align:2/2"] and steps[11:] == ["finish:-"]
    submits = [line.split()[1] for line in calls.read_text().splitlines() if line.startswith("submit ")]
    assert submits == ["JOB=1:2"] * 4       # prepare, 2 x accumulate, align: one launcher call each
