"""Recipe stage ``stats``: normalisation statistics over the train split -> ``stats/<kind>.npz``.

For every feature kind present in ``dump/train/`` the stage streams the train
utterances' ``.npy`` files through :class:`sps.features.RunningStats` (float64,
pairwise merge: the corpus is never held in memory) and writes ``stats/<kind>.npz``
with ``count`` (frames), ``mean``, ``std`` (population, floored at ``std_floor``),
``min`` and ``max`` (float32 arrays of the feature dimension) and ``constant`` (bool:
dimensions that never varied, which min-max scaling leaves unscaled).

An utterance with an unreadable or non-finite file of any kind is left out of every
statistic (logged with the file and the problem, counted in the summary); the stage
fails when more than ``--max-failed`` of the utterances are left out that way.

Outputs (``out_acoustic``, ``out_duration``, ``mel``) are meant to be normalised with
mean/std (:func:`sps.features.norm.normalize`), inputs (``in_acoustic``,
``in_duration``) with min/max (:func:`sps.features.norm.minmax_scale`); every file
holds both. Kinds missing from ``dump/train`` are skipped with a log message.

Config keys (``conf/stats.yaml``): :class:`StatsConfig`.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np

from sps.config import bind
from sps.features import RunningStats
from sps.io import atomic_path, load_array
from sps.stages.experiment import check_names
from sps.stages.runner import StageContext, StageFailed

logger = logging.getLogger(__name__)

#: kinds with statistics, and the normalisation each is meant for
KINDS = ("out_acoustic", "out_duration", "mel", "in_acoustic", "in_duration")


@dataclass(frozen=True)
class StatsConfig:
    """Keys of ``conf/stats.yaml``."""
    std_floor: float = 1e-5                 # floor of the standard deviation (constant dimensions)
    kinds: tuple[str, ...] = KINDS
    split: str = "train"

    def __post_init__(self):
        check_names(split=self.split)
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"kinds: unknown feature kinds {unknown} (known: {', '.join(KINDS)})")
        if not self.std_floor > 0:
            raise ValueError(f"std_floor must be > 0 (constant dimensions are divided by it), got {self.std_floor}")


def load_rows(path) -> np.ndarray:
    """A ``(T, D)`` feature file (1-D files as one column); non-finite values are a
    ``ValueError`` naming the file, the frame and the dimension."""
    x = load_array(path)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{path}: expected a (frames, dim) array, got shape {x.shape}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        t, d = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{path}: non-finite value {x[t, d]} at frame {t}, dimension {d}")
    return x


def accumulate(paths, stats: RunningStats | None = None) -> RunningStats:
    """Add the ``(T, D)`` arrays stored at ``paths`` (``.npy``) to ``stats``."""
    stats = RunningStats() if stats is None else stats
    for path in paths:
        stats.update(load_rows(path), name=str(path))
    return stats


def save_stats(path, stats: RunningStats, std_floor: float) -> None:
    """Write ``count``, ``mean``, ``std``, ``min``, ``max`` to ``path`` (.npz, atomically)."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, count=np.int64(stats.count), mean=stats.mean.astype(np.float32),
                 std=stats.std(std_floor).astype(np.float32), min=stats.min.astype(np.float32),
                 max=stats.max.astype(np.float32), constant=stats.constant())


def run(ctx: StageContext) -> dict:
    """Stage entry point (``sps stats``): statistics of the train split.

    Only utterances that have a file of every kind present take part, so an utterance
    rejected by one stage cannot skew the statistics of another kind.

    Returns
    -------
    written : dict kind -> path of the ``.npz`` written
    """
    cfg = bind(StatsConfig, ctx.config, "stats")
    exp = ctx.exp
    utts = exp.utterances(cfg.split)
    kinds = [k for k in cfg.kinds if (exp.dump_dir / cfg.split / k).is_dir()]
    for kind in sorted(set(cfg.kinds) - set(kinds)):
        logger.info("stats: %s not found, %s skipped", exp.dump_dir / cfg.split / kind, kind)
    if not kinds:
        logger.warning("stats: no feature kind found under %s", exp.dump_dir / cfg.split)
        return {}
    complete = [u for u in utts if all(exp.dump_path(cfg.split, k, u).exists() for k in kinds)]
    if len(complete) < len(utts):
        logger.warning("stats: %d of %d %s utterances lack a file of some kind (rejected by a stage?) "
                       "and are left out of every statistic", len(utts) - len(complete), len(utts), cfg.split)
    if not complete:
        raise ValueError(f"{exp.dump_dir / cfg.split}: no utterance of the {cfg.split} list has every kind "
                         f"({', '.join(kinds)})")
    exp.check_current(cfg.split, kinds, complete)   # no statistics of files made under other settings
    acc = {kind: RunningStats() for kind in kinds}
    failed: dict[str, str] = {}
    for utt in complete:       # every kind of an utterance, or none of them
        try:
            arrays = {kind: load_rows(exp.dump_path(cfg.split, kind, utt)) for kind in kinds}
            for kind, x in arrays.items():
                if acc[kind].dim is not None and x.shape[1] != acc[kind].dim:
                    raise ValueError(f"{exp.dump_path(cfg.split, kind, utt)}: dimension {x.shape[1]}, the other "
                                     f"{kind} files have {acc[kind].dim}")
        except ValueError as err:
            failed[utt] = str(err)
            logger.error("stats: %s left out: %s", utt, err)
            continue
        for kind, x in arrays.items():
            acc[kind].update(x, name=str(exp.dump_path(cfg.split, kind, utt)))
    used = len(complete) - len(failed)
    if failed:
        first = next(iter(failed.items()))
        print(f"stats: {len(failed)} of {len(complete)} {cfg.split} utterances left out (unreadable or "
              f"non-finite); first: {first[0]}: {first[1]}", file=sys.stderr)
        if not used or len(failed) > ctx.max_failed * len(complete):
            raise StageFailed(f"stats: {len(failed)} of {len(complete)} utterances have unusable files (more than "
                              f"--max-failed {ctx.max_failed:g}); first: {first[0]}: {first[1]}")
    written = {}
    for kind in kinds:
        stats = acc[kind]
        out = exp.stats_path(kind)
        save_stats(out, stats, cfg.std_floor)
        logger.info("stats: %s: %d frames of dim %d from %d utterances (%d constant dimensions) -> %s",
                    kind, stats.count, stats.dim, used, int(stats.constant().sum()), out)
        written[kind] = out
    return written
