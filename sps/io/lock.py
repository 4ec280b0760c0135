"""One writer per experiment directory: an advisory lock file, ``<exp>/.sps.lock``.

Every ``sps`` stage that writes takes the lock for as long as it runs (:func:`experiment_lock`):

* **exclusive** (``stats``, ``train``, ``vocode`` ...): nothing else may write;
* **shared** (the per-utterance stages ``features``, ``linguistic``, ``synth``): shard
  jobs of a stage (``--shard K/N``, on one host or on several hosts of a shared file
  system) run side by side, because their outputs are distinct; an exclusive stage
  excludes them all, two jobs of the same shard ``K`` of one stage exclude each other,
  and an unsharded run of a stage excludes every shard of it.

The lock is ``fcntl`` byte-range locking (POSIX record locks, which NFS and cluster
file systems forward to their lock managers): byte 0 is the experiment (shared or
exclusive), a range per stage holds its shards (byte ``K`` for shard ``K``, the whole
range for an unsharded run). The kernel drops a process's locks when it dies, so a
``kill -9`` never leaves the experiment locked. The file's text names the holders, one
line each (node, PID, stage, shard, start time, command), so that a second writer is
refused with one line naming who holds the experiment (:class:`ExperimentLocked`).

A process must keep the one descriptor it locked with: POSIX locks vanish when the
process closes *any* descriptor of the file, so the holder lines are read and written
through the same descriptor.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shlex
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sps.io.atomic import _alive, node_id

logger = logging.getLogger(__name__)

LOCK_NAME = ".sps.lock"
#: bytes of the lock file: 0 the experiment, then one range of SHARD_SPAN bytes per stage
SHARD_SPAN = 1 << 20
#: byte held while the holder lines are edited
MUTEX = 1 << 40


class ExperimentLocked(RuntimeError):
    """Another process holds the experiment; the message names it."""


@dataclass
class Holder:
    """One line of the lock file."""
    node: str
    pid: int
    stage: str
    shard: str
    mode: str
    since: str
    command: str

    def line(self) -> str:
        return "\t".join([self.node, str(self.pid), self.stage, self.shard, self.mode, self.since, self.command])

    @classmethod
    def parse(cls, line: str) -> "Holder | None":
        parts = line.split("\t")
        if len(parts) != 7 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), *parts[2:])

    def alive(self) -> bool:
        """False only when it certainly is gone (this node, dead PID)."""
        return self.node != node_id() or _alive(self.pid)

    def describe(self) -> str:
        shard = "" if self.shard == "-" else f" (shard {self.shard})"
        host = self.node.split("+")[0]
        return f"sps {self.stage}{shard}, pid {self.pid} on {host} since {self.since}: {self.command}"


def _stage_base(stage: str) -> int:
    return 1 + (zlib.crc32(stage.encode()) % 4096) * SHARD_SPAN


#: errors of a file system that has no record locks (some FUSE and old NFS mounts)
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def _try(fd: int, kind: int, start: int, length: int) -> bool:
    try:
        fcntl.lockf(fd, kind | fcntl.LOCK_NB, length, start)
        return True
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise


def _unlock(fd: int, start: int, length: int) -> None:
    fcntl.lockf(fd, fcntl.LOCK_UN, length, start)


def _read(fd: int) -> list[Holder]:
    size = os.fstat(fd).st_size
    text = os.pread(fd, size, 0).decode("utf-8", "replace") if size else ""
    return [h for h in map(Holder.parse, text.splitlines()) if h is not None]


def _write(fd: int, holders: list[Holder]) -> None:
    data = "".join(h.line() + "\n" for h in holders).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


@contextlib.contextmanager
def _mutex(fd: int) -> Iterator[None]:
    fcntl.lockf(fd, fcntl.LOCK_EX, 1, MUTEX)
    try:
        yield
    finally:
        _unlock(fd, MUTEX, 1)


class ExperimentLock:
    """The lock of one experiment directory, held by this process (see the module docstring).

    Parameters
    ----------
    exp_dir : path-like
        The experiment directory (created if missing).
    stage : str
        Name of the stage taking it (recorded, and the key of its shard range).
    shared : bool
        Shared (per-utterance shard jobs) or exclusive.
    shard : (K, N), optional
        The shard of a shared holder (None: all utterances).
    command : str, optional
        Recorded command line (default: this process's).
    """

    def __init__(self, exp_dir: str | os.PathLike, stage: str, shared: bool = False,
                 shard: tuple[int, int] | None = None, command: str | None = None):
        self.path = Path(exp_dir) / LOCK_NAME
        self.stage, self.shared, self.shard = stage, bool(shared), shard
        self.command = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
        self.fd: int | None = None
        self._ranges: list[tuple[int, int]] = []
        self.me = Holder(node_id(), os.getpid(), stage, "-" if shard is None else f"{shard[0]}/{shard[1]}",
                         "shared" if shared else "exclusive", time.strftime("%Y-%m-%d %H:%M:%S"),
                         " ".join(self.command.split()))

    def acquire(self) -> "ExperimentLock":
        """Take the lock without waiting; :class:`ExperimentLocked` names the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _try(fd, fcntl.LOCK_SH, MUTEX + 1, 1)     # does this file system lock at all?
        except OSError as err:
            if err.errno not in NO_LOCKS:
                os.close(fd)
                raise
            logger.warning("%s: the file system offers no locks (%s): running without the experiment lock",
                           self.path, err.strerror)
            os.close(fd)
            return self
        _unlock(fd, MUTEX + 1, 1)
        try:
            wanted = [(fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX, 0, 1)]
            if self.shared:
                base = _stage_base(self.stage)
                wanted.append((fcntl.LOCK_EX, base + self.shard[0], 1) if self.shard else
                              (fcntl.LOCK_EX, base + 1, SHARD_SPAN - 1))
            for kind, start, length in wanted:
                if not _try(fd, kind, start, length):
                    raise ExperimentLocked(self._refusal(fd, first=start == 0))
                self._ranges.append((start, length))
            with _mutex(fd):
                others = [] if not self.shared else [h for h in _read(fd) if h.alive() and h.pid != self.me.pid]
                _write(fd, [*others, self.me])
        except BaseException:
            for start, length in self._ranges:
                _unlock(fd, start, length)
            self._ranges = []
            os.close(fd)
            raise
        self.fd = fd
        return self

    def _refusal(self, fd: int, first: bool) -> str:
        with _mutex(fd):
            holders = [h for h in _read(fd) if h.alive()]
        if not first:   # the shard range: holders of this stage
            holders = [h for h in holders if h.stage == self.stage] or holders
        who = "; ".join(h.describe() for h in holders[:3]) or "another process (it left no record)"
        more = f" and {len(holders) - 3} more" if len(holders) > 3 else ""
        what = f"shard {self.me.shard} of sps {self.stage}" if not first and self.shard else str(self.path.parent)
        return (f"{what} is in use by {who}{more}; wait for it to finish or stop it "
                f"(lock file {self.path})")

    def release(self) -> None:
        """Give the lock back (and remove this process's line from the file)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            with _mutex(fd):
                _write(fd, [h for h in _read(fd) if h.pid != self.me.pid or h.node != self.me.node])
        except OSError:
            pass
        finally:
            for start, length in self._ranges:
                with contextlib.suppress(OSError):
                    _unlock(fd, start, length)
            self._ranges = []
            os.close(fd)

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def experiment_lock(exp_dir: str | os.PathLike, stage: str, shared: bool = False,
                    shard: tuple[int, int] | None = None, command: str | None = None) -> ExperimentLock:
    """The :class:`ExperimentLock` of ``exp_dir`` for ``stage``, to use with ``with``."""
    return ExperimentLock(exp_dir, stage, shared, shard, command)


def lock_holders(exp_dir: str | os.PathLike) -> list[Holder]:
    """The holders recorded in the lock file of ``exp_dir`` that may still run (for messages
    and tools: reading the file through a new descriptor is safe for a process that holds
    no lock on it)."""
    path = Path(exp_dir) / LOCK_NAME
    if not path.exists():
        return []
    return [h for h in map(Holder.parse, path.read_text(errors="replace").splitlines())
            if h is not None and h.alive()]
