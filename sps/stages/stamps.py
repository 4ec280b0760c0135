"""Outputs that know what made them: per-utterance stamps.

A per-utterance stage writes, after an utterance's outputs, a small record of it
(``<stamp dir>/<utt>.json``): the *key* of the utterance (a digest of the content of
its inputs and of the settings that made it: source audio and labels, the stream
specs, the models ...), the digests of the stream specs it followed, and the SHA-256
and size of every output file. An utterance is **done** when its record exists, its
key is the key the current inputs and settings give, and every output still has its
recorded digest (every output is read and hashed again: about half a second for the
300 MB of the shipped corpus's features). Anything else is *stale* and redone:

* a rerun after a killed ``--force`` with other settings redoes exactly the utterances
  made under the old settings (their key differs);
* re-preparing the experiment with another corpus (same ids, other audio) redoes the
  utterances whose audio or labels changed;
* outputs without a record (an older sps, a kill between the outputs and the record)
  are redone: nothing of unknown origin is trusted.

Later stages check the records of what they read (:func:`check_inputs`): a file whose
record names other stream settings than the experiment's spec files is refused.
Files without any record (arrays put into ``dump/`` by hand) are taken as they are.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from sps.io import read_json, write_json

logger = logging.getLogger(__name__)

_cache: dict[tuple, str] = {}
_cache_lock = threading.Lock()


def _identity(st: os.stat_result) -> tuple:
    # the change time moves on every write and every utime call: a file rewritten in place
    # with its old size and modification time is hashed again
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (hex); remembered within this process while the file's
    device, inode, size, modification and change times stay the same (an input hashed
    for several keys is read once)."""
    path = Path(path)
    st = path.stat()
    key = (str(path),) + _identity(st)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    value = h.hexdigest()
    with _cache_lock:
        _cache[key] = value
    return value


def digest(value) -> str:
    """SHA-256 of a JSON-able value (canonical form: sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_digest(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """One digest of several files' names (relative to ``root``) and contents."""
    root = Path(root) if root is not None else None
    items = []
    for p in paths:
        p = Path(p)
        name = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
        items.append((name, file_digest(p)))
    return digest(sorted(items))


@dataclass
class Stamps:
    """The records of one stage over one set of utterances.

    Parameters
    ----------
    root : path
        The experiment directory (output paths are recorded relative to it).
    directory : path
        Where the records go (``<utt>.json``).
    outputs : callable
        ``outputs(utt)``: the output files of an utterance.
    key : callable
        ``key(utt)``: digest of the utterance's inputs and settings (may raise when an
        input is missing: the utterance is then processed, and fails with its own error).
    specs : dict, optional
        ``kind -> digest`` of the stream specs the outputs follow (checked by later stages).
    """
    root: Path
    directory: Path
    outputs: Callable[[str], list[Path]]
    key: Callable[[str], str]
    specs: dict | None = None

    def path(self, utt: str) -> Path:
        return self.directory / f"{utt}.json"

    def state(self, utt: str) -> tuple[str, str | None]:
        """``("done" | "stale" | "new", key)``: done when the record matches the current key
        and every output its recorded digest; new when there is neither record nor output."""
        try:
            key = self.key(utt)
        except (OSError, ValueError, KeyError):
            key = None
        rec = self._read(utt)
        if rec is None:
            present = any(p.exists() for p in self.outputs(utt))
            return ("stale" if present else "new"), key
        if key is None or rec.get("key") != key or not self._outputs_match(rec):
            return "stale", key
        return "done", key

    def write(self, utt: str, key: str | None) -> None:
        """Record ``utt``'s outputs, made from ``key`` (no record without a key)."""
        if key is None:
            self.path(utt).unlink(missing_ok=True)
            return
        outputs = {}
        for p in self.outputs(utt):
            outputs[self._rel(p)] = {"sha256": file_digest(p), "size": p.stat().st_size}
        write_json(self.path(utt), {"utt": utt, "key": key, "specs": self.specs or {}, "outputs": outputs})

    def forget(self, utt: str) -> None:
        """Drop ``utt``'s record (its outputs are no longer trusted)."""
        self.path(utt).unlink(missing_ok=True)

    def _rel(self, p: Path) -> str:
        return str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p)

    def _read(self, utt: str) -> dict | None:
        path = self.path(utt)
        if not path.exists():
            return None
        try:
            rec = read_json(path)
        except (ValueError, OSError):
            return None
        return rec if isinstance(rec, dict) else None

    def _outputs_match(self, rec: dict) -> bool:
        recorded = rec.get("outputs") or {}
        wanted = {self._rel(p) for p in self.outputs(rec.get("utt", ""))} if rec.get("utt") else set(recorded)
        if set(recorded) != wanted:
            return False
        return all(_matches(self.root / name, entry) for name, entry in recorded.items())


def _matches(path: Path, entry: dict) -> bool:
    try:
        if path.stat().st_size != entry.get("size"):
            return False
        return file_digest(path) == entry.get("sha256")
    except OSError:
        return False


def check_inputs(records: Path, utts: Iterable[str], specs: dict[str, str], what: str) -> list[str]:
    """Utterances whose record in ``records`` (a stamp directory) names other stream specs
    than ``specs`` (``kind -> digest`` of the experiment's spec files now): made under
    other settings, e.g. by a ``--force`` run that was killed. Utterances without a
    record are not listed (files made by hand)."""
    stale = []
    for utt in utts:
        path = records / f"{utt}.json"
        if not path.exists():
            continue
        try:
            rec = read_json(path)
        except ValueError:
            stale.append(utt)
            continue
        made = rec.get("specs") or {}
        if any(k in made and made[k] != v for k, v in specs.items()):
            stale.append(utt)
    if stale:
        logger.warning("%s: %d utterances were made with other settings than the spec files now (e.g. %s)",
                       what, len(stale), stale[0])
    return stale
