"""The recipe's jobs through the launchers, end to end, on a real SLURM cluster when one is
running (``SLURM_CONF``; ``.ci/run`` starts a one-node cluster with
``tools/slurm_local.sh``), else through the local launcher; and its training with
torchrun on two simulated nodes.

A small recipe (the shared pipeline with the SLT configs but no acoustic model) runs
stages 0-7 on 5 utterances: once here without shards (the reference), then with 2
shard jobs per per-utterance stage and its training through the launcher. Every output
must be byte-identical (the trained weights equal). The training again with
``--ngpu 1 --num-nodes 2`` (torchrun, gloo on the CPU) must give the same weights and
the same training and validation loss at every step to a relative 1e-5. Then a run in 3 shards whose second
shard fails (a corrupt file) and, on SLURM, whose third blocks until it is cancelled
with ``scancel`` (2 shards locally): ``run.sh`` exits non-zero naming each failed job
and its log, the finished outputs equal the reference, and a rerun completes them all
identically.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SLT = ROOT / "data" / "slt_festival"
CONF = ROOT / "recipes" / "slt_festival" / "conf"
SPLITS = {"train": ["slt_0001", "slt_0002", "slt_0003"], "dev": ["slt_0004"], "eval": ["slt_0005"]}
# features from dio (fast), a duration model of 6 steps without dropout (deterministic, so
# torchrun on 2 nodes must give the one process's weights), copy synthesis only (no acoustic config)
OVERRIDES = ["features.f0_method=dio", "duration.train.max_steps=6", "duration.train.valid_every=3",
             "duration.model.dropout=0", "duration.train.log_every=1"]

RECIPE = """#!/usr/bin/env bash
# a second recipe on the shared pipeline: its own conf folder, the shipped stages 0-7
set -euo pipefail
root={root}
conf_dirs=("$(cd "$(dirname "$0")" && pwd)/conf")
exp_dir=
. "$root/recipes/common/pipeline.sh"
pipeline_defaults
while [ $# -gt 0 ]; do
    pipeline_option "$@"
    [ "$consumed" != 0 ] || {{ echo "run.sh: unknown argument '$1'" >&2; exit 2; }}
    shift "$consumed"
done
pipeline_setup
if run_stage 0; then sps_stage prepare prepare; fi
run_pipeline 1
"""


def slurm_unavailable() -> str | None:
    """Why the SLURM test cannot run here (None: a cluster answers)."""
    if not shutil.which("sbatch"):
        return "sbatch not installed"
    if not os.environ.get("SLURM_CONF"):
        return "SLURM_CONF not set (start a test cluster: tools/slurm_local.sh start)"
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or "idle" not in out.stdout.split() and "mixed" not in out.stdout.split():
        return f"no idle SLURM node (sinfo: {(out.stdout + out.stderr).strip()[:200]})"
    return None


#: SLURM where a cluster answers, else the local launcher (the same test)
LAUNCHERS = ["slurm" if slurm_unavailable() is None else "local"]


def _corpus(path: Path, bad: dict[str, str] | None = None) -> Path:
    """The 5 utterances (links to the shipped files); ``bad`` maps ids to 'corrupt' (a file
    that is not audio) or 'fifo' (a named pipe: reading it blocks)."""
    if path.exists():
        shutil.rmtree(path)
    for sub in ("wav", "lab"):
        (path / sub).mkdir(parents=True)
    for split, utts in SPLITS.items():
        (path / f"{split}.list").write_text("".join(u + "\n" for u in utts))
        for u in utts:
            audio = next(SLT.glob(f"wav/{u}.*"))
            target = path / "wav" / f"{u}{audio.suffix}"
            kind = (bad or {}).get(u)
            if kind == "corrupt":
                target.write_bytes(b"not audio at all" * 64)
            elif kind == "fifo":
                os.mkfifo(target)
            else:
                target.symlink_to(audio)
            (path / "lab" / f"{u}.lab").symlink_to(SLT / "lab" / f"{u}.lab")
    return path


def _recipe(tmp: Path, launcher: str) -> Path:
    """run.sh + conf/ (the SLT configs the stages need) + cmd.sh naming ``launcher`` (GPU
    jobs stay local: the test cluster has no GPU to give)."""
    d = tmp / "recipe"
    (d / "conf").mkdir(parents=True, exist_ok=True)
    for name in ("prepare", "features", "linguistic", "stats", "duration", "synth", "eval"):
        shutil.copy(CONF / f"{name}.yaml", d / "conf")
    (d / "run.sh").write_text(RECIPE.format(root=ROOT))
    (d / "cmd.sh").write_text(f'train_cmd="sps-launch {launcher}"\ndecode_cmd="sps-launch {launcher}"\n'
                              'cuda_cmd="sps-launch local"\n')
    return d / "run.sh"


def _run(run_sh: Path, exp: Path, corpus: Path, *args, wait=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = ["bash", str(run_sh), "--exp-dir", str(exp), "--jobs", "1", f"prepare.corpus.path={corpus}",
           *OVERRIDES, *args]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def _outputs(exp: Path) -> dict[str, bytes]:
    """Every output file but logs, models (compared by weights), the per-shard summaries
    (``<stage>_report.KofN.txt``) and temporary files."""
    return {str(p.relative_to(exp)): p.read_bytes() for p in sorted(exp.rglob("*"))
            if p.is_file() and p.relative_to(exp).parts[0] not in ("log", "models")
            and "_report" not in p.name and ".tmp" not in p.name}


def _weights(exp: Path) -> dict:
    return torch.load(exp / "models" / "duration_dnn" / "best.pt", weights_only=True)["model"]


def _losses(exp: Path) -> dict[tuple[int, str], float]:
    """Every training and validation loss of the duration model's log, by (step, name)."""
    recs = [json.loads(line) for line in (exp / "models" / "duration_dnn" / "log.jsonl").read_text().splitlines()]
    return {(r["step"], k): r[k] for r in recs for k in ("train_loss", "valid_loss") if k in r}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Stages 0-7 here, without shards or launchers' parallelism (--nj 1)."""
    tmp = tmp_path_factory.mktemp("reference")
    corpus = _corpus(tmp / "corpus")
    exp = tmp / "exp"
    out = _run(_recipe(tmp, "local"), exp, corpus, "--stop-stage", "7", "--nj", "1")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return exp, _outputs(exp), _weights(exp)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_command_with_spaces_and_quotes_survives_the_launcher(tmp_path, launcher):
    """Arguments with spaces, quotes, $, *, ; and an empty one arrive unchanged in each
    task of a real array job (the batch script alone: tests/test_launch.py)."""
    from test_launch import ECHO, TRICKY, _argv_of
    log = tmp_path / "log dir" / "q.JOB.log"
    out = subprocess.run([sys.executable, "-m", "sps.launch", launcher, "JOB=1:2", str(log), *ECHO, "JOB", *TRICKY],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for j in (1, 2):
        task_log = Path(str(log).replace("JOB", str(j)))
        assert _argv_of(task_log) == [str(j), *TRICKY]
        assert ("(SLURM job" in task_log.read_text()) == (launcher == "slurm")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_recipe_shards_and_training_through_the_launcher(tmp_path, reference, launcher):
    ref_exp, ref_files, ref_weights = reference
    run_sh, corpus, exp = _recipe(tmp_path, launcher), _corpus(tmp_path / "corpus"), tmp_path / "exp"
    out = _run(run_sh, exp, corpus, "--stop-stage", "7", "--nj", "2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    logs = sorted(p.name.split(".")[0] for p in (exp / "log").glob("*.[12].log"))
    assert logs == ["features"] * 2 + ["linguistic"] * 2 + ["synth"] * 2 + ["train"]   # shards, 1 training
    assert "features train: 2 ok" in out.stdout or "features train: 1 ok" in out.stdout
    files = _outputs(exp)
    assert set(files) == set(ref_files)
    assert [k for k in files if files[k] != ref_files[k]] == []  # byte-identical
    assert any(k.startswith("synth/world_copy/eval/") and k.endswith(".wav") for k in files)
    for k, v in _weights(exp).items():
        assert torch.equal(v, ref_weights[k]), k
    if launcher == "slurm":      # really went through SLURM: its batch scripts and task logs
        assert list((exp / "log" / "slurm").glob("features.*.sh"))
        assert "(SLURM job" in next((exp / "log").glob("features.*.1.log")).read_text()
    # the training again with torchrun on 2 simulated nodes x 1 process (gloo, CPU: jobs of
    # cuda_cmd, c10d rendezvous): the same global batches, the same weights to 1e-5
    out = _run(run_sh, exp, corpus, "--stage", "4", "--stop-stage", "4", "--force", "--ngpu", "1", "--num-nodes", "2")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "2 node(s) x 1 process(es) under torchrun" in out.stdout
    nodes = sorted((exp / "log").glob("train.*.duration.[12].log"))[-2:]
    text = "".join(p.read_text() for p in nodes)
    assert "--rdzv-conf is_host=1" in text and "--rdzv-conf is_host=0" in text
    for k, v in _weights(exp).items():
        torch.testing.assert_close(v, ref_weights[k], rtol=1e-5, atol=1e-6)
    # the same loss: every step's training loss and each validation loss, to a relative 1e-5
    losses, ref_losses = _losses(exp), _losses(ref_exp)
    assert sorted(losses) == sorted(ref_losses) and sum(k[1] == "train_loss" for k in losses) == 6
    for k, v in ref_losses.items():
        assert losses[k] == pytest.approx(v, rel=1e-5), k


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_failed_and_cancelled_jobs_are_named_and_leave_only_complete_outputs(tmp_path, reference, launcher):
    ref_exp, ref_files, _ = reference
    run_sh, exp = _recipe(tmp_path, launcher), tmp_path / "exp"
    # 3 shards: shard 2 starts with a corrupt file (fails), on SLURM shard 3 with a named pipe
    # (blocks: it is cancelled), shard 1 finishes
    slurm = launcher == "slurm"
    bad = {"slt_0002": "corrupt", **({"slt_0003": "fifo"} if slurm else {})}
    corpus = _corpus(tmp_path / "corpus", bad)
    proc = _run(run_sh, exp, corpus, "--stop-stage", "1", "--nj", "3" if slurm else "2", wait=False)
    if slurm:
        from sps.launch import read_status
        deadline = time.monotonic() + 300

        def blocked():   # shards 1 and 2 ended, shard 3 started (and waits on its pipe)
            logs = {k: list((exp / "log").glob(f"features.*.{k}.log")) for k in (1, 2, 3)}
            return all(logs.values()) and all(read_status(logs[k][0]) is not None for k in (1, 2))
        while not blocked():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        time.sleep(1.0)
        jobs = subprocess.run(["squeue", "-h", "-o", "%A %j"], capture_output=True, text=True).stdout.split("\n")
        ids = {line.split()[0] for line in jobs if " features." in line}
        assert ids, jobs
        subprocess.run(["scancel", *ids], check=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0
    log2 = next((exp / "log").glob("features.*.2.log"))
    assert f"JOB=2 failed (exit status 1); see {log2}" in stderr, stderr
    assert "stage 'sps features' failed" in stderr
    if slurm:
        log3 = next((exp / "log").glob("features.*.3.log"))
        assert f"JOB=3 failed (no exit status in its log" in stderr and str(log3) in stderr, stderr
    done = _outputs(exp)
    finished = [k for k in done if k.startswith("dump/") and k.endswith(".npy")]
    assert any("slt_0001" in k for k in finished)
    for k in finished:                  # what exists is complete: the reference's bytes
        assert done[k] == ref_files[k], k
    assert not any("slt_0002" in k or ("slt_0003" in k and slurm) for k in finished)
    # repaired corpus: a rerun (here unsharded) keeps the finished outputs and completes the rest
    _corpus(corpus)
    out = _run(run_sh, exp, corpus, "--stage", "1", "--stop-stage", "1", "--nj", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    again = _outputs(exp)
    dump = [k for k in ref_files if k.startswith("dump/") and "/out_acoustic/" in k]
    assert len(dump) == 5 and all(again[k] == ref_files[k] for k in dump)
