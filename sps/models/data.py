"""Datasets over ``dump/<split>/<kind>/<utt>.npy`` with normalisation applied.

Inputs (linguistic features) are min-max scaled to [0.01, 0.99] and outputs
(acoustic features, durations) standardised with the train-split statistics of the
statistics stage (``stats/<kind>.npz``). Items are loaded lazily (the page cache
keeps a small corpus in memory); the lengths needed for length bucketing are read
from the ``.npy`` headers.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from sps.train.data import pad_sequences

logger = logging.getLogger(__name__)

#: frames by which input and output may differ (trimmed to the shorter); more is an error
MAX_LENGTH_MISMATCH = 5


def load_stats(exp_dir: str | os.PathLike, kind: str) -> dict[str, np.ndarray]:
    """``stats/<kind>.npz`` of an experiment as float64 arrays (``mean``, ``std``, ``min``, ``max``)."""
    from sps.features.stats import load_stats as read
    return {k: np.asarray(v, dtype=np.float64) for k, v in read(Path(exp_dir) / "stats" / f"{kind}.npz").items()}


class Normalizer:
    """Input min-max scaling and output standardisation of one model.

    Parameters
    ----------
    in_stats : dict with ``min``, ``max`` [shape=(D_in,)]
    out_stats : dict with ``mean``, ``std`` [shape=(D_out,)]
    """

    def __init__(self, in_stats: dict, out_stats: dict):
        self.in_min, self.in_max = in_stats["min"], in_stats["max"]
        self.out_mean, self.out_std = out_stats["mean"], out_stats["std"]

    @classmethod
    def from_exp(cls, exp_dir: str | os.PathLike, in_kind: str, out_kind: str) -> "Normalizer":
        return cls(load_stats(exp_dir, in_kind), load_stats(exp_dir, out_kind))

    @property
    def in_dim(self) -> int:
        return len(self.in_min)

    @property
    def out_dim(self) -> int:
        return len(self.out_mean)

    def inputs(self, x):
        """Raw inputs [shape=(..., D_in)] -> scaled (numpy or torch)."""
        from sps.features import minmax_scale
        return minmax_scale(x, self.in_min, self.in_max)

    def outputs(self, y):
        """Raw outputs [shape=(..., D_out)] -> standardised."""
        from sps.features import normalize
        return normalize(y, self.out_mean, self.out_std)

    def unscale_outputs(self, y):
        """Standardised outputs -> raw units (inverse of :meth:`outputs`)."""
        from sps.features import denormalize
        return denormalize(y, self.out_mean, self.out_std)


def _npy_rows(path: Path) -> int:
    return int(np.load(path, mmap_mode="r").shape[0])


class FeatureDataset(torch.utils.data.Dataset):
    """Pairs ``(x, y)`` of normalised inputs and outputs for the utterances of a split.

    Parameters
    ----------
    exp_dir : path-like
    split : str
        ``train``, ``dev`` or ``eval`` (``data/<split>.list`` gives the utterances).
    in_kind, out_kind : str
        ``in_acoustic``/``out_acoustic`` or ``in_duration``/``out_duration``.
    normalizer : Normalizer, optional
        Default: from ``stats/<in_kind>.npz`` and ``stats/<out_kind>.npz``.
    utts : list of str, optional
        Use these utterances instead of the split list.

    Attributes
    ----------
    utts : list of str
    lengths : list of int
        Frames (or phones) per item, for length bucketing.
    """

    def __init__(self, exp_dir: str | os.PathLike, split: str, in_kind: str, out_kind: str,
                 normalizer: Normalizer | None = None, utts: list[str] | None = None):
        from sps.io import read_list
        self.exp_dir = Path(exp_dir)
        self.split, self.in_kind, self.out_kind = split, in_kind, out_kind
        self.norm = normalizer or Normalizer.from_exp(exp_dir, in_kind, out_kind)
        if utts is None:
            utts = read_list(self.exp_dir / "data" / f"{split}.list")
        dump = self.exp_dir / "dump" / split
        self.utts, self.lengths = [], []
        for utt in utts:
            xp, yp = dump / in_kind / f"{utt}.npy", dump / out_kind / f"{utt}.npy"
            missing = [p for p in (xp, yp) if not p.exists()]
            if missing:
                logger.warning("%s: left out of %s (missing %s)", utt, split, missing[0])
                continue
            nx, ny = _npy_rows(xp), _npy_rows(yp)
            if abs(nx - ny) > MAX_LENGTH_MISMATCH:
                raise ValueError(f"{xp}: {nx} rows but {yp} has {ny} (more than "
                                 f"{MAX_LENGTH_MISMATCH} apart: inconsistent dump)")
            self.utts.append(utt)
            self.lengths.append(min(nx, ny))
        if not self.utts and utts:
            raise FileNotFoundError(f"{dump}: no utterance of {split} has both {in_kind} and {out_kind}")

    def __len__(self) -> int:
        return len(self.utts)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw (un-normalised) ``(x [shape=(T, D_in)], y [shape=(T, D_out)])`` of item ``i``."""
        from sps.io import load_array
        dump = self.exp_dir / "dump" / self.split
        utt, n = self.utts[i], self.lengths[i]
        x = load_array(dump / self.in_kind / f"{utt}.npy")[:n]
        y = load_array(dump / self.out_kind / f"{utt}.npy")[:n]
        for arr, kind, dim in ((x, self.in_kind, self.norm.in_dim), (y, self.out_kind, self.norm.out_dim)):
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise ValueError(f"{dump / kind / (utt + '.npy')}: shape {arr.shape}, statistics have {dim} dims")
        return x, y

    def __getitem__(self, i: int) -> dict:
        x, y = self.load(i)
        return {"utt": self.utts[i],
                "x": torch.from_numpy(self.norm.inputs(x).astype(np.float32)),
                "y": torch.from_numpy(self.norm.outputs(y).astype(np.float32))}


def collate(items: list[dict]) -> dict:
    """Items -> ``{"x": (B, T, D_in), "y": (B, T, D_out), "lengths": (B,), "utts": [...]}`` (zero-padded)."""
    x, lengths = pad_sequences([it["x"] for it in items])
    y, _ = pad_sequences([it["y"] for it in items])
    return {"x": x, "y": y, "lengths": lengths, "utts": [it["utt"] for it in items]}
