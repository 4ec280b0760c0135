"""Utterance lists (one id per line) and Kaldi-style scp files (``utt path``)."""
from __future__ import annotations

import os
from pathlib import Path

from sps.io.atomic import write_text


def read_list(path: str | os.PathLike) -> list[str]:
    """Utterance ids, one per line; blank lines and ``#`` comments ignored."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: list file not found")
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line.split()[0])
    return out


def write_list(path: str | os.PathLike, items) -> None:
    write_text(path, "".join(f"{x}\n" for x in items))


def read_scp(path: str | os.PathLike) -> dict[str, str]:
    """``utt path`` lines -> dict; duplicate ids or missing paths are errors naming the line."""
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
        if parts[0] in out:
            raise ValueError(f"{path}:{n}: duplicate utterance id {parts[0]!r}")
        out[parts[0]] = parts[1].strip()
    return out


def write_scp(path: str | os.PathLike, mapping: dict[str, str]) -> None:
    write_text(path, "".join(f"{k} {v}\n" for k, v in mapping.items()))
