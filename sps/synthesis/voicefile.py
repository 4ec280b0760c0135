"""The voice file: one trained voice as tensors and plain data, with a manifest.

A voice file is what ``sps pack`` writes and :meth:`sps.synthesis.Voice.load` reads.
It is a ``torch.save`` archive of one dict that holds only tensors and plain types
(dict, list, str, int, float, bool, None), so ``torch.load(path, weights_only=True)``
reads it and nothing in it can run code::

    {"format": "sps-voice", "format_version": 1,
     "manifest": {"sps_version", "torch_version", "created", "sections": [...],
                  "checksums": {section: sha256}, "parameters": {section: count}},
     "voice":    {...},     # plain data: name, Festival voice, stream spec, questions, defaults, scores
     "duration": {...},     # a model: config, state_dict, normalisation statistics
     "acoustic": {...},
     "conditioning": {...}, # mean/std of the vocoders' conditioning
     "vocoders": {name: {...}},
     "configs": {...}}      # the configs that made it (plain data)

Every section's checksum is the SHA-256 of a canonical encoding of its content
(:func:`digest`: keys sorted, tensors by dtype, shape and bytes), so a changed value,
a changed tensor byte or a missing key is found on load, whatever the archive layout.
:func:`read_voice` raises one :class:`VoiceFileError` (a ``ValueError``) naming the
file and the problem: not found, not readable (corrupt or truncated), refused (holds
more than tensors and plain types), not a voice file, a format version this sps does
not read (newer or older), or a checksum mismatch.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import struct
from pathlib import Path

import torch

from sps.io import atomic_path

FORMAT = "sps-voice"
#: version of the layout above; bump it when a reader of the old layout would misread the new one
FORMAT_VERSION = 1
#: sections every voice file has (``vocoders`` and ``configs`` may be empty)
SECTIONS = ("voice", "duration", "acoustic", "conditioning", "vocoders", "configs")


class VoiceFileError(ValueError):
    """A voice file that cannot be used: the message names the file and the problem."""


def _feed(h, obj, where: str) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            _feed(h, key, where)
            _feed(h, obj[key], f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for i, v in enumerate(obj):
            _feed(h, v, f"{where}[{i}]")
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        h.update(f"S{len(b)}:".encode() + b)
    elif isinstance(obj, bool):
        h.update(b"B1" if obj else b"B0")
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    elif obj is None:
        h.update(b"N")
    else:
        raise TypeError(f"{where}: {type(obj).__name__} is not a tensor or a plain type")


def digest(obj, where: str = "value") -> str:
    """SHA-256 (hex) of a canonical encoding of tensors and plain data.

    Dict keys are sorted; lists and tuples encode alike; a tensor encodes as its dtype,
    shape and bytes. Anything else is a ``TypeError`` naming where it sits.
    """
    h = hashlib.sha256()
    _feed(h, obj, where)
    return h.hexdigest()


def _count(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel()
    if isinstance(obj, dict):
        return sum(_count(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_count(v) for v in obj)
    return 0


def write_voice(path: str | os.PathLike, sections: dict) -> Path:
    """Write a voice file (atomically) from its sections.

    Parameters
    ----------
    path : path-like
        Output file.
    sections : dict
        The :data:`SECTIONS`, each tensors and plain data only.

    Returns
    -------
    Path
        The file written.
    """
    from sps import __version__
    missing = [s for s in SECTIONS if s not in sections]
    unknown = [s for s in sections if s not in SECTIONS]
    if missing or unknown:
        raise ValueError(f"voice file sections: missing {missing}, unknown {unknown}")
    checksums = {}
    for name in SECTIONS:
        try:
            checksums[name] = digest(sections[name], name)
        except TypeError as err:
            raise ValueError(f"cannot pack {err} (a voice file holds tensors and plain data only)") from None
    manifest = {"sps_version": __version__, "torch_version": torch.__version__.split("+")[0],
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "sections": list(SECTIONS), "checksums": checksums,
                "parameters": {name: _count(sections[name]) for name in SECTIONS}}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": manifest,
               **{name: sections[name] for name in SECTIONS}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _reason(err: BaseException) -> str:
    """The informative line of a load error (torch's weights-only refusals name the global
    they refused a few lines down)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line[:200]
    return (lines[0] if lines else type(err).__name__)[:200]


#: the first bytes of a torch.save archive (a zip file)
ZIP_MAGIC = b"PK\x03\x04"


def read_voice(path: str | os.PathLike) -> dict:
    """Read and verify a voice file; returns its sections (and ``manifest``).

    Raises
    ------
    FileNotFoundError
        No such file.
    VoiceFileError
        Corrupt, truncated, refused (more than tensors and plain types), not a voice
        file, another format version, or a checksum mismatch; one line naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: voice file not found")
    with open(path, "rb") as f:
        if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise VoiceFileError(f"{path}: not a readable voice file (not a torch archive: corrupt, truncated or "
                                 "another kind of file)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to parse is one clear line, never a traceback
        if "weights_only" in str(err) or "Unpickl" in type(err).__name__:
            raise VoiceFileError(f"{path}: refused: a voice file holds only tensors and plain data, this one "
                                 f"holds more (nothing from it was run: {_reason(err)})") from None
        raise VoiceFileError(f"{path}: not a readable voice file (corrupt or truncated: {_reason(err)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise VoiceFileError(f"{path}: not an sps voice file (no 'format: {FORMAT}' entry)")
    version = data.get("format_version")
    manifest = data.get("manifest") if isinstance(data.get("manifest"), dict) else {}
    made_by = f"written by sps {manifest.get('sps_version', '?')}"
    if not isinstance(version, int) or isinstance(version, bool):
        raise VoiceFileError(f"{path}: voice file without a format version ({made_by})")
    if version > FORMAT_VERSION:
        raise VoiceFileError(f"{path}: voice file format {version} is newer than this sps reads "
                             f"({FORMAT_VERSION}; {made_by}): upgrade sps")
    if version < FORMAT_VERSION:
        raise VoiceFileError(f"{path}: voice file format {version} is older than this sps reads "
                             f"({FORMAT_VERSION}; {made_by}): pack the voice again with 'sps pack'")
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict):
        raise VoiceFileError(f"{path}: the manifest has no checksums")
    for name in SECTIONS:
        if name not in data:
            raise VoiceFileError(f"{path}: section {name!r} is missing")
        try:
            ok = digest(data[name], name) == checksums.get(name)
        except TypeError as err:
            raise VoiceFileError(f"{path}: section {name!r} holds more than tensors and plain data ({err})") from None
        if not ok:
            raise VoiceFileError(f"{path}: checksum mismatch in section {name!r}: the file is corrupt or was "
                                 "altered after packing")
    return {"manifest": manifest, **{name: data[name] for name in SECTIONS}}
