"""Recipe stage ``stats``: normalisation statistics over the train split -> ``stats/<kind>.npz``.

For every feature kind present in ``dump/train/`` the stage streams the train
utterances' ``.npy`` files through :class:`sps.features.norm.RunningStats` (float64,
pairwise merge: the corpus is never held in memory) and writes ``stats/<kind>.npz``
with ``count`` (frames), ``mean``, ``std`` (population, floored at ``std_floor``),
``min`` and ``max`` (float32 arrays of the feature dimension).

Outputs (``out_acoustic``, ``out_duration``, ``mel``) are meant to be normalised with
mean/std (:func:`sps.features.norm.normalize`), inputs (``in_acoustic``,
``in_duration``) with min/max (:func:`sps.features.norm.minmax_scale`); every file
holds both. Kinds missing from ``dump/train`` are skipped with a log message.

Config keys: ``std_floor`` (default 1e-5), ``kinds`` (default :data:`KINDS`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sps.features.norm import RunningStats

logger = logging.getLogger(__name__)

#: kinds with statistics, and the normalisation each is meant for
KINDS = {"out_acoustic": "meanvar", "out_duration": "meanvar", "mel": "meanvar",
         "in_acoustic": "minmax", "in_duration": "minmax"}
DEFAULT_STD_FLOOR = 1e-5


def accumulate(paths, stats: RunningStats | None = None) -> RunningStats:
    """Add the ``(T, D)`` arrays stored at ``paths`` (``.npy``) to ``stats``."""
    from sps.io import load_array
    stats = RunningStats() if stats is None else stats
    for path in paths:
        x = load_array(path)
        if x.ndim == 1:
            x = x[:, None]
        stats.update(x, name=str(path))
    return stats


def save_stats(path, stats: RunningStats, std_floor: float = DEFAULT_STD_FLOOR) -> None:
    """Write ``count``, ``mean``, ``std``, ``min``, ``max`` to ``path`` (.npz, atomically)."""
    from sps.io import atomic_path
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, count=np.int64(stats.count), mean=stats.mean.astype(np.float32),
                 std=stats.std(std_floor).astype(np.float32), min=stats.min.astype(np.float32),
                 max=stats.max.astype(np.float32))


def load_stats(path) -> dict[str, np.ndarray]:
    """Read ``stats/<kind>.npz`` into a dict (FileNotFoundError naming the file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: statistics not found (run the stats stage)")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def run(ctx) -> dict:
    """Stage entry point (``sps stats``): statistics of the train split.

    Returns
    -------
    written : dict kind -> path of the ``.npz`` written
    """
    from sps.io import read_list
    exp_dir = Path(ctx.exp_dir)
    cfg = ctx.config or {}
    std_floor = float(cfg.get("std_floor", DEFAULT_STD_FLOOR))
    kinds = cfg.get("kinds") or list(KINDS)
    utts = read_list(exp_dir / "data" / "train.list")
    written = {}
    for kind in kinds:
        kind_dir = exp_dir / "dump" / "train" / kind
        if not kind_dir.is_dir():
            logger.info("stats: %s not found, %s skipped", kind_dir, kind)
            continue
        paths = [kind_dir / f"{utt}.npy" for utt in utts]
        present = [p for p in paths if p.exists()]
        if len(present) < len(paths):
            logger.warning("stats: %s: %d of %d train utterances have no file (failed earlier?); "
                           "using the %d present", kind, len(paths) - len(present), len(paths), len(present))
        if not present:
            raise ValueError(f"{kind_dir}: no feature file for any utterance of the train list")
        stats = accumulate(present)
        out = exp_dir / "stats" / f"{kind}.npz"
        save_stats(out, stats, std_floor)
        logger.info("stats: %s: %d frames of dim %d from %d utterances -> %s",
                    kind, stats.count, stats.dim, len(present), out)
        written[kind] = out
    if not written:
        logger.warning("stats: no feature kind found under %s", exp_dir / "dump" / "train")
    return written
