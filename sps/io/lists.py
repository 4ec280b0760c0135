"""Utterance lists (one id per line) and Kaldi-style scp files (``utt path``).

Utterance ids become file names (``dump/<split>/<kind>/<utt>.npy``), so they are checked
where they enter (:func:`check_id`): letters, digits, ``_``, ``.`` and ``-`` only, not
starting with a dot. A path separator, ``..``, a space or ``#`` in an id is an error that
names the file and line. Lines starting with ``#`` are comments; a ``#`` inside an id is
not a comment (it is rejected, never silently cut).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from sps.io.atomic import write_text

_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def check_id(utt: str, where: str = "utterance id", what: str = "utterance id") -> str:
    """Return ``utt`` if it is a safe id (utterance, model, system or split name: every
    name that becomes a path), else raise ``ValueError`` naming ``where``."""
    if not isinstance(utt, str) or not _ID.fullmatch(utt):
        raise ValueError(f"{where}: invalid {what} {utt!r} (allowed: letters, digits, '_', '.', '-'; "
                         "no separators, no leading dot)")
    return utt


def is_valid_id(utt: str) -> bool:
    """True when ``utt`` is a safe utterance id (:func:`check_id` would accept it)."""
    return isinstance(utt, str) and _ID.fullmatch(utt) is not None


def read_list(path: str | os.PathLike) -> list[str]:
    """Utterance ids, one per line; blank lines and ``#`` comment lines ignored.

    Only the first whitespace-separated field of a line is the id (Kaldi style).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: list file not found")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(check_id(line.split()[0], f"{path}:{n}"))
    return out


def write_list(path: str | os.PathLike, items) -> None:
    write_text(path, "".join(f"{check_id(x)}\n" for x in items))


def read_scp(path: str | os.PathLike) -> dict[str, str]:
    """``utt path`` lines -> dict; duplicate or invalid ids and missing paths are errors naming the line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: scp file not found")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{n}: expected 'utt path', got {line!r}")
        check_id(parts[0], f"{path}:{n}")
        if parts[0] in out:
            raise ValueError(f"{path}:{n}: duplicate utterance id {parts[0]!r}")
        out[parts[0]] = parts[1].strip()
    return out


def write_scp(path: str | os.PathLike, mapping: dict[str, str]) -> None:
    write_text(path, "".join(f"{check_id(k)} {v}\n" for k, v in mapping.items()))
