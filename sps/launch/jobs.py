"""The ``JOB=1:N log/x.JOB.log command ...`` convention of Kaldi and ESPnet recipes.

A launcher is called as::

    <launcher> [--option value ...] [NAME=A:B | NAME=A] LOG COMMAND [ARG ...]

and runs ``COMMAND ARG ...`` once for every job number ``j`` of ``A..B``, with every
occurrence of ``NAME`` (an identifier, usually ``JOB``) in ``LOG``, ``COMMAND`` and the
arguments replaced by ``j``. Each job writes its output to its own log, framed by a
header (the command, start time, host) and a trailer ``# Ended (code N)`` holding its
exit status: :func:`read_status` reads it back, so a job that never wrote a trailer
(killed, cancelled, never started) counts as failed. Without ``NAME=...`` there is one
job and ``LOG`` is taken literally.

The arguments are kept as a list from end to end (no shell re-parses them), so an
argument with spaces or quotes reaches the command unchanged. A pipeline is written
as one ``bash -c '...'`` command.
"""
from __future__ import annotations

import re
import shlex
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

_RANGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?$")
_ENDED = re.compile(r"^# Ended \(code (-?\d+)\)")


@dataclass(frozen=True)
class JobArray:
    """Jobs ``first..last`` of one launcher call.

    Attributes
    ----------
    log : str
        Log path, with ``name`` where the job number goes.
    command : list of str
        The command and its arguments, with ``name`` where the job number goes.
    name : str or None
        The placeholder (``JOB``); None for a single job.
    first, last : int
        The job numbers (inclusive, ``1 <= first <= last``).
    options : dict
        ``--option value`` pairs given before the range, option names without dashes
        and with ``_`` for ``-`` (``{"max_jobs_run": "4"}``).
    """
    log: str
    command: list[str]
    name: str | None = None
    first: int = 1
    last: int = 1
    options: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> range:
        return range(self.first, self.last + 1)

    def _sub(self, text: str, job: int) -> str:
        return text.replace(self.name, str(job)) if self.name else text

    def log_path(self, job: int) -> Path:
        """The log file of ``job``."""
        return Path(self._sub(self.log, job))

    def argv(self, job: int) -> list[str]:
        """The command of ``job``, as an argument list."""
        return [self._sub(a, job) for a in self.command]

    def describe(self) -> str:
        """``JOB=1:4`` (or ``1 job``) for messages."""
        return f"{self.name}={self.first}:{self.last}" if self.name else "1 job"


def parse(argv: list[str], flags: tuple[str, ...] = ()) -> JobArray:
    """Parse a launcher command line (see the module docstring).

    Options are ``--name value`` or ``--name=value`` (Kaldi's style: every option takes
    a value), except the value-less ``flags``; they end at the first argument that is
    not an option.

    Raises
    ------
    ValueError
        A malformed range, a missing log or command, several jobs whose log path does
        not contain the placeholder (their logs would overwrite each other).
    """
    args, options = list(argv), {}
    while args and args[0].startswith("--") and len(args[0]) > 2:
        opt = args.pop(0)[2:]
        key, eq, value = opt.partition("=")
        key = key.replace("-", "_")
        if eq:
            options[key] = value
        elif key in flags:
            options[key] = "true"
        elif not args:
            raise ValueError(f"option --{opt} needs a value")
        else:
            options[key] = args.pop(0)
    name, first, last = None, 1, 1
    if args and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", args[0]):
        m = _RANGE.match(args[0])
        if not m:
            raise ValueError(f"job range {args[0]!r}: expected NAME=A:B or NAME=A (e.g. JOB=1:8)")
        name, first = m.group(1), int(m.group(2))
        last = int(m.group(3)) if m.group(3) is not None else first
        if not 1 <= first <= last:
            raise ValueError(f"job range {args[0]!r}: need 1 <= A <= B")
        args.pop(0)
    if len(args) < 2:
        raise ValueError("expected a log file and a command after the options"
                         + (f" and {name}={first}:{last}" if name else ""))
    log, command = args[0], args[1:]
    if name and last > first and name not in log:
        raise ValueError(f"log path {log!r} does not contain {name}: the {last - first + 1} jobs "
                         f"would write one log")
    return JobArray(log=log, command=command, name=name, first=first, last=last, options=options)


def header(argv: list[str], where: str = "") -> str:
    """First lines of a job's log: the command and where and when it started."""
    host = socket.gethostname()
    return (f"# {shlex.join(argv)}\n# Started at {time.strftime('%a %b %d %H:%M:%S %Z %Y')} on {host}"
            f"{' ' + where if where else ''}\n")


def trailer(status: int, elapsed: float, threads: int = 1) -> str:
    """Last lines of a job's log; ``# Ended (code N)`` is what :func:`read_status` reads."""
    return (f"# Accounting: time={int(round(elapsed))} threads={threads}\n"
            f"# Ended (code {status}) at {time.strftime('%a %b %d %H:%M:%S %Z %Y')}, "
            f"elapsed time {int(round(elapsed))} seconds\n")


def read_status(log: str | Path) -> int | None:
    """The exit status recorded in a job's log, or None when it has none (the job was
    killed or cancelled before it could write one, or never started)."""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(tail):
        m = _ENDED.match(line)
        if m:
            return int(m.group(1))
    return None


def report(array: JobArray, status: dict[int, int | None], launcher: str) -> int:
    """Print one line per failed job (its number and log) to stderr; the launcher's exit
    status: 0 when every job ended with code 0, else 1."""
    import sys
    failed = [j for j in array.ids if status.get(j) != 0]
    for j in failed:
        code = status.get(j)
        why = f"exit status {code}" if code is not None else "no exit status in its log (killed, cancelled or never started)"
        where = f"{array.name}={j}" if array.name else "the job"
        print(f"{launcher}: {where} failed ({why}); see {array.log_path(j)}", file=sys.stderr)
    if failed and len(array.ids) > 1:
        print(f"{launcher}: {len(failed)} of {len(array.ids)} jobs failed: {shlex.join(array.command)}",
              file=sys.stderr)
    return 1 if failed else 0
