"""Launchers of the ``JOB=1:N log command`` convention (sps.launch): the parser, the local
launcher, the SLURM batch script (run here by bash as SLURM would), the torchrun node
command."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sps.launch import jobs, local, slurm, torchrun
from sps.launch.jobs import parse, read_status

#: a command printing its arguments as JSON (so the test sees exactly what arrived)
ECHO = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
TRICKY = ["a b", "it's", 'say "hi"', "$HOME", "*", "x;y", "back\\slash", "", "tab\there"]


def _argv_of(log: Path) -> list:
    """The JSON line a job of ECHO wrote into its log."""
    return json.loads(next(line for line in log.read_text().splitlines() if line.startswith("[")))


def test_parse_ranges_options_and_paths():
    a = parse(["--mem", "4G", "--max-jobs-run=3", "--gpu", "1", "JOB=2:5", "log/x.JOB.log", "cmd", "--shard", "JOB/5"])
    assert (a.name, a.first, a.last, list(a.ids)) == ("JOB", 2, 5, [2, 3, 4, 5])
    assert a.options == {"mem": "4G", "max_jobs_run": "3", "gpu": "1"}
    assert a.log_path(3) == Path("log/x.3.log") and a.argv(4) == ["cmd", "--shard", "4/5"]
    b = parse(["TASK=7", "log/y.TASK.log", "echo", "TASK", "TASKS"])   # Kaldi: any name, plain replacement
    assert list(b.ids) == [7] and b.argv(7) == ["echo", "7", "7S"]
    c = parse(["log/z.log", "echo", "JOB"])          # no range: one job, nothing replaced
    assert c.name is None and list(c.ids) == [1] and c.argv(1) == ["echo", "JOB"] and c.log_path(1) == Path("log/z.log")
    assert parse(["JOB=1:3", "l.JOB", *TRICKY]).argv(2) == [t.replace("JOB", "2") for t in TRICKY]
    assert parse(["--quiet", "l.log", "x"], flags=("quiet",)).options == {"quiet": "true"}


@pytest.mark.parametrize("argv, message", [
    (["JOB=3:1", "l.JOB", "x"], "need 1 <= A <= B"),
    (["JOB=0:2", "l.JOB", "x"], "need 1 <= A <= B"),
    (["JOB=1-4", "l.JOB", "x"], "expected NAME=A:B"),
    (["JOB=1:4", "log/same.log", "x"], "does not contain JOB"),
    (["JOB=1:4", "l.JOB"], "expected a log file and a command"),
    (["--mem"], "needs a value"),
])
def test_parse_errors_name_the_problem(argv, message):
    with pytest.raises(ValueError, match=message):
        parse(argv)


def test_read_status(tmp_path):
    log = tmp_path / "x.log"
    assert read_status(log) is None                           # never started
    log.write_text(jobs.header(["x"]) + "output\n")
    assert read_status(log) is None                           # killed before the trailer
    log.write_text(jobs.header(["x"]) + "output\n" + jobs.trailer(3, 1.2))
    assert read_status(log) == 3


def test_local_runs_every_job_with_its_arguments_and_log(tmp_path):
    a = parse(["JOB=1:4", str(tmp_path / "log" / "e.JOB.log"), *ECHO, "JOB", *TRICKY])
    status, signum = local.run(a, max_jobs_run=2)
    assert status == {1: 0, 2: 0, 3: 0, 4: 0} and signum == 0
    for j in a.ids:
        log = a.log_path(j)
        assert _argv_of(log) == [str(j), *TRICKY]               # spaces, quotes, $, * arrived unchanged
        assert log.read_text().startswith("# ") and read_status(log) == 0


def test_local_failed_job_names_itself_and_its_log(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    # each job writes its output file, job 2 then fails
    script = ("import sys, pathlib; j = int(sys.argv[1]); pathlib.Path(sys.argv[2], f'{j}.txt').write_text(str(j)); "
              "print('working on', j); sys.exit(7 if j == 2 else 0)")
    a = parse(["JOB=1:3", str(tmp_path / "w.JOB.log"), sys.executable, "-c", script, "JOB", str(out)])
    status, _ = local.run(a)
    assert status == {1: 0, 2: 7, 3: 0}
    assert jobs.report(a, status, "sps-launch local") == 1
    err = capsys.readouterr().err
    assert f"JOB=2 failed (exit status 7); see {tmp_path / 'w.2.log'}" in err
    assert "JOB=1 failed" not in err and "1 of 3 jobs failed" in err
    assert sorted(p.read_text() for p in out.iterdir()) == ["1", "2", "3"]   # the others' outputs are there
    assert read_status(tmp_path / "w.1.log") == 0 and read_status(tmp_path / "w.2.log") == 7


def test_cli_exit_status_and_missing_command(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "sps.launch", *args], capture_output=True, text=True,
                              timeout=60)
    ok = cli("local", "JOB=1:2", str(tmp_path / "a.JOB.log"), *ECHO, "JOB")
    assert ok.returncode == 0 and ok.stderr == ""
    bad = cli("local", "JOB=1:2", str(tmp_path / "b.JOB.log"), "no-such-command-sps", "JOB")
    assert bad.returncode == 1 and "JOB=1 failed (exit status 127)" in bad.stderr
    assert "cannot run" in (tmp_path / "b.1.log").read_text()
    assert cli("local", "JOB=1:2", "same.log", "x").returncode == 2
    assert cli("bogus", "x").returncode == 2


def test_local_stop_signal_reaches_the_jobs(tmp_path):
    """SIGTERM to the launcher ends its running jobs; their logs record the signal."""
    proc = subprocess.Popen([sys.executable, "-m", "sps.launch", "local", "JOB=1:2", str(tmp_path / "s.JOB.log"),
                             sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"s.{j}.log").exists() and "up" in (tmp_path / f"s.{j}.log").read_text()
                  for j in (1, 2)):
        assert time.monotonic() < deadline, "jobs did not start"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert "stopped by signal" in proc.stderr.read()
    for j in (1, 2):
        assert read_status(tmp_path / f"s.{j}.log") == 128 + signal.SIGTERM


def test_slurm_batch_script_runs_each_task_like_the_local_launcher(tmp_path):
    """The array task script, run by bash with SLURM's variables, gives the same arguments,
    log and status as the local launcher (a real SLURM run: tests/test_cluster.py)."""
    a = parse(["JOB=1:3", str(tmp_path / "log dir" / "q.JOB.log"), *ECHO, "JOB", *TRICKY,
               "--shard", "JOB/3"])
    script = tmp_path / "task.sh"
    script.write_text(slurm.batch_script(a))
    for j in (1, 3):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(j), "SLURM_ARRAY_JOB_ID": "99"}
        assert subprocess.run(["bash", str(script)], env=env, timeout=60).returncode == 0
        log = a.log_path(j)
        assert _argv_of(log) == [str(j), *TRICKY, "--shard", f"{j}/3"] and read_status(log) == 0
        assert "(SLURM job 99_" in log.read_text()
    fail = parse(["JOB=1:1", str(tmp_path / "f.JOB.log"), "false"])
    script.write_text(slurm.batch_script(fail))
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    assert subprocess.run(["bash", str(script)], env=env, timeout=60).returncode == 1
    assert read_status(tmp_path / "f.1.log") == 1


def test_sbatch_options():
    a = parse(["--partition", "gpu", "--time", "4:00:00", "--mem", "8G", "--gpu", "2", "--num-threads", "4",
               "--max-jobs-run", "3", "--account", "lab", "JOB=1:8", "exp/log/train.x.JOB.log", "sps", "train"])
    args = slurm.sbatch_args(a, a.options, "out.%a")
    assert args[:2] == ["sbatch", "--parsable"]
    for want in ("--job-name=train.x", "--array=1-8%3", "--partition=gpu", "--time=4:00:00", "--mem=8G",
                 "--gres=gpu:2", "--cpus-per-task=4", "--account=lab", "--output=out.%a"):
        assert want in args, (want, args)
    assert not any(x.startswith("--gres") for x in slurm.sbatch_args(parse(["--gpu", "0", "l", "x"]), {"gpu": "0"}, "o"))


def test_torchrun_node_commands(tmp_path):
    one = torchrun.command(1, 1, 2, ["sps", "train", "--config", "a b.yaml"])
    assert one[1:] == ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone", "--nnodes", "1",
                       "--no-python", "sps", "train", "--config", "a b.yaml"]
    rdzv = tmp_path / "rdzv" / "train.1"
    first = torchrun.command(2, 1, 1, ["sps"], str(rdzv))
    endpoint = rdzv.read_text().strip()
    host, port = endpoint.rsplit(":", 1)
    assert port.isdigit() and first[first.index("--rdzv-endpoint") + 1] == endpoint
    assert "is_host=1" in first and first[first.index("--rdzv-id") + 1] == "train.1"
    second = torchrun.command(2, 2, 1, ["sps"], str(rdzv))
    assert second[second.index("--rdzv-endpoint") + 1] == endpoint and "is_host=0" in second
    with pytest.raises(TimeoutError, match="no rendezvous endpoint"):
        torchrun.command(2, 2, 1, ["sps"], str(tmp_path / "never"), timeout=0.2)
    with pytest.raises(ValueError, match="needs --rdzv-file"):
        torchrun.command(2, 1, 1, ["sps"])
    with pytest.raises(ValueError, match="1 <= node"):
        torchrun.command(2, 3, 1, ["sps"], str(rdzv))
