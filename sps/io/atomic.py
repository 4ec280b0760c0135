"""Atomic file writes: write to a temporary file beside the target, then rename.

A stage interrupted at any point leaves either the complete old file, the complete
new file, or no file -- never a truncated one -- so a rerun can trust every output
that exists. Temporary files are named ``.<name>.sps-<node>-<pid>-<random><suffix>``,
where ``<node>`` is this machine and PID namespace (:func:`node_id`: the host name
and the namespace's inode), because a PID means something only there. A process
killed with ``kill -9`` leaves its temporary files behind; the first write of a
process into a directory removes those of that directory whose writer is gone
(:func:`sweep_directory`: same node, dead PID). Files of other nodes (cluster hosts
sharing the directory, other containers) are never touched: their PIDs cannot be
checked from here.

Writes that fail because the disk or a quota is full (or a file-size limit is hit)
raise ``OSError`` naming the target file, whatever library did the writing.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np


TEMP_TAG = "sps-"
_TEMP_RE = re.compile(r"^\..+\." + TEMP_TAG + r"(?P<node>[A-Za-z0-9_.+]+)-(?P<pid>\d+)-[a-z0-9_]{8}(\.[^/]*)?$")
_LEGACY_RE = re.compile(r"^\..+\." + TEMP_TAG + r"(?P<pid>\d+)-[a-z0-9_]{8}(\.[^/]*)?$")
#: error numbers that mean "no room for this write"
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_swept: set[str] = set()
_swept_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def node_id() -> str:
    """This machine and PID namespace as a file-name-safe tag: ``<host>+<pid namespace inode>``
    (``<host>+0`` where the namespace cannot be read)."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname() or "localhost")
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return f"{host}+{ns:x}"


def _no_room(err: BaseException, directory: Path) -> int | None:
    """The errno when ``err`` means the disk, a quota or a file-size limit is full."""
    code = getattr(err, "errno", None)
    if code in FULL:
        return code
    if code is None and isinstance(err, Exception):   # a library that hides the errno
        try:
            st = os.statvfs(directory)
            if st.f_bavail == 0 or (st.f_favail == 0 and st.f_files > 0):
                return errno.ENOSPC
        except OSError:
            pass
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    The temporary file keeps ``path``'s suffix (or ``suffix``) so libraries that pick a
    format from the extension (soundfile, numpy) behave as for the real name. On an
    exception the temporary file is removed and ``path`` is untouched; a full disk
    (or quota, or file-size limit) is an ``OSError`` naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path}: is a directory (give a file name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_directory(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_TAG}{node_id()}-{os.getpid()}-",
                               suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as err:
        code = _no_room(err, path.parent)
        if code is None:
            raise
        raise OSError(code, f"{path}: cannot write: {os.strerror(code).lower()}") from err
    finally:
        if tmp.exists():
            tmp.unlink()


def save_array(path: str | os.PathLike, array: np.ndarray, dtype=np.float32) -> None:
    """Save ``array`` as ``.npy`` (cast to ``dtype``; None keeps it) atomically."""
    array = np.asarray(array)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def load_array(path: str | os.PathLike) -> np.ndarray:
    """Load a ``.npy`` feature file; raise ``FileNotFoundError``/``ValueError`` naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: feature file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot read feature file ({err})") from err


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def stale_temp_file(path: Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_path` whose writer is gone:
    written on this node (:func:`node_id`; names without a node are from older versions,
    taken as this node's) by a process that no longer runs."""
    m = _TEMP_RE.match(path.name)
    if m:
        if m.group("node") != node_id():
            return False
    else:
        m = _LEGACY_RE.match(path.name)
        if not m:
            return False
    return int(m.group("pid")) != os.getpid() and not _alive(int(m.group("pid")))


def sweep_directory(directory: str | os.PathLike, force: bool = False) -> int:
    """Remove the stale temporary files (:func:`stale_temp_file`) of one directory, not
    of its subdirectories; once per process and directory unless ``force``. Returns the count."""
    directory = Path(directory)
    key = str(directory.resolve()) if directory.exists() else str(directory)
    with _swept_lock:
        if key in _swept and not force:
            return 0
        _swept.add(key)
    removed = 0
    try:
        names = [e for e in os.scandir(directory) if e.name.startswith(".") and TEMP_TAG in e.name]
    except OSError:
        return 0
    for entry in names:
        path = Path(entry.path)
        try:
            if entry.is_file(follow_symlinks=False) and stale_temp_file(path):
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished meanwhile
            continue
    return removed


def sweep_temp_files(root: str | os.PathLike) -> int:
    """:func:`sweep_directory` on ``root`` and every directory below it. Returns the count."""
    root = Path(root)
    if not root.is_dir():
        return 0
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]
    return sum(sweep_directory(d, force=True) for d in dirs)
