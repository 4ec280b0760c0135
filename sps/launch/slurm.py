"""SLURM launcher: the jobs of a :class:`~sps.launch.jobs.JobArray` as one SLURM array job.

The batch script (written beside the logs, ``<log dir>/slurm/<name>.sh``) holds the
command once, as a bash array of quoted words; each task replaces the placeholder by
its ``SLURM_ARRAY_TASK_ID`` in every word and in the log path, runs the command with
its output in that log and ends the log with its exit status, exactly as the local
launcher does. SLURM's own output of a task (what happens before the log is open)
goes to ``<log dir>/slurm/<name>.<task>.out``.

Options (before the job range)

=========================  ===================================================
``--partition P``          ``sbatch --partition P``
``--time T``               ``--time T`` (e.g. ``4:00:00``)
``--mem M``                ``--mem M`` per task (e.g. ``8G``)
``--gpu N``                ``--gres gpu:N`` (N > 0)
``--num-threads N``        ``--cpus-per-task N``
``--max-jobs-run K``       at most K tasks at once (``--array A-B%K``)
any other ``--key value``  passed to sbatch as ``--key=value`` (``--account``, ``--qos``,
                           ``--constraint``, ...)
=========================  ===================================================

The launcher submits with ``sbatch`` and waits for the tasks' exit statuses to appear
in their logs (checked every 0.5 s for a minute, then every 5 s), asking ``squeue``
every 5 s whether the job is still queued: a job that left the queue without a status
in some log (cancelled, killed, failed before the log was open) has ended too. This is
faster than ``sbatch --wait``, which polls with growing intervals and noticed the end of
a 10-second job after 30 seconds (``benchmarks/launchers.py``).

SIGINT, SIGTERM or SIGHUP to the launcher cancels the job (``scancel``); a cancelled
task leaves a log without an exit status, which counts as failed.
"""
from __future__ import annotations

import math
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from sps.launch.jobs import JobArray, read_status

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: launcher options with their own meaning; the rest go to sbatch as they are
OWN = ("partition", "time", "mem", "gpu", "num_threads", "max_jobs_run")

_SCRIPT = """#!/usr/bin/env bash
# written by sps-launch slurm: {describe}
job=${{SLURM_ARRAY_TASK_ID:?not started as a SLURM array task}}
cmd=({words})
cmd=("${{cmd[@]//{name}/$job}}")
log={log}
log=${{log//{name}/$job}}
hdr={header}
mkdir -p -- "$(dirname -- "$log")"
start=$(date +%s)
printf '# %s\\n# Started at %s on %s (SLURM job %s_%s)\\n' "${{hdr//{name}/$job}}" "$(date)" "$(hostname)" \\
    "${{SLURM_ARRAY_JOB_ID:-?}}" "$job" > "$log"
"${{cmd[@]}}" >> "$log" 2>&1 < /dev/null
status=$?
end=$(date +%s)
printf '# Accounting: time=%d threads=%d\\n# Ended (code %d) at %s, elapsed time %d seconds\\n' \\
    $((end - start)) "${{SLURM_CPUS_PER_TASK:-1}}" $status "$(date)" $((end - start)) >> "$log"
exit $status
"""


def available() -> bool:
    """Whether ``sbatch`` is on the PATH."""
    return shutil.which("sbatch") is not None


def job_name(array: JobArray) -> str:
    """A name for the job and its files: the log's file name without the placeholder and ``.log``."""
    stem = Path(array.log).name
    if stem.endswith(".log"):
        stem = stem[:-4]
    if array.name:
        stem = stem.replace(f".{array.name}", "").replace(array.name, "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) or "sps"


def batch_script(array: JobArray) -> str:
    """The bash script every array task runs (see the module docstring)."""
    name = array.name or "JOB"   # a single job still runs as task 1 of an array
    return _SCRIPT.format(describe=f"{array.describe()} {shlex.join(array.command)}".replace("\n", " "),
                          words=" ".join(shlex.quote(w) for w in array.command), name=name,
                          log=shlex.quote(array.log), header=shlex.quote(shlex.join(array.command)))


def sbatch_args(array: JobArray, options: dict[str, str], output: str) -> list[str]:
    """The ``sbatch`` options for ``array`` (the script path comes last, added by the caller)."""
    spec = f"{array.first}-{array.last}"
    if options.get("max_jobs_run"):
        spec += f"%{int(options['max_jobs_run'])}"
    args = ["sbatch", "--parsable", f"--job-name={job_name(array)}", f"--array={spec}",
            f"--output={output}"]
    if options.get("partition"):
        args.append(f"--partition={options['partition']}")
    if options.get("time"):
        args.append(f"--time={options['time']}")
    if options.get("mem"):
        args.append(f"--mem={options['mem']}")
    if int(options.get("gpu") or 0) > 0:
        args.append(f"--gres=gpu:{int(options['gpu'])}")
    if int(options.get("num_threads") or 0) > 1:
        args.append(f"--cpus-per-task={int(options['num_threads'])}")
    for key, value in options.items():
        if key not in OWN:
            args.append(f"--{key.replace('_', '-')}={value}")
    return args


def in_queue(job_id: str) -> bool:
    """Whether SLURM still lists the job (pending, running or completing); True when
    ``squeue`` cannot tell (the controller is busy: ask again later)."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True)
    if out.returncode == 0:
        return bool(out.stdout.strip())
    return "invalid job id" not in out.stderr.lower()


def wait(array: JobArray, job_id: str, stopped=lambda: False) -> None:
    """Return when every task's log holds its exit status or the job left the queue."""
    pending, start, last_check = set(array.ids), time.monotonic(), -math.inf
    while True:
        pending = {j for j in pending if read_status(array.log_path(j)) is None}
        if not pending:
            return
        now = time.monotonic()
        if now - last_check >= 5.0 or stopped():
            last_check = now
            if not in_queue(job_id):
                return
        time.sleep(0.5 if now - start < 60 else 5.0)


def submit(array: JobArray, options: dict[str, str] | None = None) -> tuple[str, int]:
    """Submit ``array`` as one array job and wait for it to end (see the module docstring).

    Returns
    -------
    job_id : str
    signum : int
        The signal that made the launcher cancel the job, else 0.

    Raises
    ------
    RuntimeError
        sbatch is missing or refused the job (its message is included).
    """
    options = dict(options or {})
    if not available():
        raise RuntimeError("sbatch not found: SLURM's client commands are not installed on this machine")
    logdir = Path(array.log).parent
    qdir = logdir / "slurm"
    qdir.mkdir(parents=True, exist_ok=True)
    name = job_name(array)
    script = qdir / f"{name}.sh"
    script.write_text(batch_script(array))
    script.chmod(0o755)
    for j in array.ids:   # a log of an earlier run must not pass for this one's
        array.log_path(j).unlink(missing_ok=True)
    output = str(qdir).replace("%", "%%") + f"/{name}.%a.out"
    state = {"id": None, "signum": 0, "cancelled": False}

    def cancel(signum=None, _frame=None):
        if signum:
            state["signum"] = state["signum"] or signum
        if state["signum"] and state["id"] and not state["cancelled"]:
            state["cancelled"] = True
            subprocess.run(["scancel", state["id"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    previous = {}
    for sig in _SIGNALS:
        try:
            previous[sig] = signal.signal(sig, cancel)
        except ValueError:   # not the main thread: no handlers
            break
    try:
        out = subprocess.run([*sbatch_args(array, options, output), str(script)], capture_output=True, text=True)
        first = out.stdout.strip().split("\n")[-1] if out.stdout.strip() else ""
        if out.returncode != 0 or not re.match(r"^\d+(;\S+)?$", first):
            err = " ".join((out.stderr + " " + out.stdout).split())
            raise RuntimeError(f"sbatch refused the job: {err or f'exit status {out.returncode}'}")
        state["id"] = first.split(";")[0]
        cancel()                     # a signal that came during the submission
        wait(array, state["id"], stopped=lambda: bool(state["signum"]))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return state["id"], state["signum"]
