"""Atomic file writes: write to a temporary file beside the target, then rename.

A stage interrupted at any point leaves either the complete old file, the complete
new file, or no file -- never a truncated one -- so a rerun can trust every output
that exists. Temporary files are named ``.<name>.sps-<pid>-<random><suffix>``; a
process killed with ``kill -9`` leaves its temporary files behind, and
:func:`sweep_temp_files` (run when a stage starts) removes those whose process is gone.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np


TEMP_TAG = "sps-"
_TEMP_RE = re.compile(r"^\..+\." + TEMP_TAG + r"(\d+)-[^/]+$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    The temporary file keeps ``path``'s suffix (or ``suffix``) so libraries that pick a
    format from the extension (soundfile, numpy) behave as for the real name. On an
    exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_TAG}{os.getpid()}-",
                               suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
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


def sweep_temp_files(root: str | os.PathLike, max_age_s: float = 86400.0) -> int:
    """Remove temporary files of :func:`atomic_path` under ``root`` left by dead processes.

    A file goes when its writer's process no longer runs on this machine, or when it is
    older than ``max_age_s`` (a writer on another host of a cluster). Returns the count.
    """
    removed, now = 0, time.time()
    root = Path(root)
    if not root.is_dir():
        return 0
    for path in root.rglob(f".*.{TEMP_TAG}*"):
        m = _TEMP_RE.match(path.name)
        if not m or not path.is_file():
            continue
        try:
            stale = not _alive(int(m.group(1))) or now - path.stat().st_mtime > max_age_s
            if stale:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished meanwhile
            continue
    return removed
