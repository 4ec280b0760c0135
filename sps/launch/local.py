"""Local launcher: the jobs of a :class:`~sps.launch.jobs.JobArray` as parallel processes
on this machine, like Kaldi's ``run.pl``.

At most ``--max-jobs-run`` jobs run at once (default: the CPUs this process may use).
Each job runs in its own process group with its output in its log; SIGINT, SIGTERM or
SIGHUP to the launcher is passed on to every running job (and no further job starts),
so stopping a recipe stops its jobs. Resource options meant for a cluster (``--mem``,
``--time``, ``--gpu``, ``--partition``, ...) are accepted and ignored, so one ``cmd.sh``
line serves both.
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import threading
import time

from sps.launch.jobs import JobArray, header, trailer

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def default_parallel() -> int:
    """Jobs run at once by default: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Runner:
    def __init__(self, array: JobArray, env: dict | None):
        self.array, self.env = array, env
        self.lock, self.stopped = threading.Lock(), 0
        self.running: dict[int, subprocess.Popen] = {}

    def run_one(self, job: int) -> int | None:
        argv, log = self.array.argv(job), self.array.log_path(job)
        with self.lock:
            if self.stopped:
                return None
            log.parent.mkdir(parents=True, exist_ok=True)
            out = open(log, "w")
            out.write(header(argv))
            out.flush()
            start = time.monotonic()
            try:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=self.env, start_new_session=True)
            except OSError as err:   # not found, not executable
                out.write(f"{argv[0]}: cannot run: {err.strerror or err}\n")
                out.write(trailer(127, 0.0))
                out.close()
                return 127
            self.running[job] = proc
        status = proc.wait()
        if status < 0:                # killed by a signal: the shell's convention
            status = 128 - status
        with self.lock:
            self.running.pop(job, None)
        out.write(trailer(status, time.monotonic() - start))
        out.close()
        return status

    def stop(self, signum: int) -> None:
        with self.lock:
            self.stopped = signum
            for proc in self.running.values():
                try:
                    os.killpg(proc.pid, signum)
                except ProcessLookupError:
                    pass


def run(array: JobArray, max_jobs_run: int | None = None, env: dict | None = None
        ) -> tuple[dict[int, int | None], int]:
    """Run every job of ``array``.

    Returns
    -------
    status : dict
        ``{job: exit status}``; None for a job that never started because the launcher
        was stopped.
    signum : int
        The signal that stopped the launcher (after its running jobs ended), else 0.
    """
    limit = max(1, int(max_jobs_run or default_parallel()))
    runner = _Runner(array, env)
    previous = {}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, _frame: runner.stop(signum))
    try:
        with cf.ThreadPoolExecutor(max_workers=min(limit, len(array.ids))) as pool:
            futures = {pool.submit(runner.run_one, j): j for j in array.ids}
            pending = set(futures)
            while pending:   # short waits: signal handlers run between them
                _, pending = cf.wait(pending, timeout=0.5)
            status = {futures[f]: f.result() for f in futures}
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status, int(runner.stopped)
