"""Training datasets over ``dump/<split>/<kind>/<utt>.npy``: model pairs and vocoder segments.

Inputs (linguistic features) are min-max scaled to [0.01, 0.99] and outputs
(acoustic features, durations) standardised with the train-split statistics of the
statistics stage (``stats/<kind>.npz``). Items are loaded lazily (the page cache
keeps a small corpus in memory); the lengths needed for length bucketing are read
from the ``.npy`` headers.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from sps.dsp import preemphasis
from sps.features import Normalizer
from sps.io import load_array
from sps.stages.experiment import Experiment
from sps.stages.stamps import digest, files_digest
from sps.train import pad_sequences
from sps.vocoders.conditioning import Conditioning

logger = logging.getLogger(__name__)

#: frames by which input and output may differ (trimmed to the shorter); more is an error
MAX_LENGTH_MISMATCH = 5


def load_finite(path: Path) -> np.ndarray:
    """A feature file; a non-finite value is a ``ValueError`` naming the file, frame and column."""
    x = load_array(path)
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        idx = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{path}: non-finite value {x[tuple(idx)]} at frame {idx[0]}"
                         + (f", column {idx[1]}" if len(idx) > 1 else ""))
    return x


class FeatureDataset(torch.utils.data.Dataset):
    """Pairs ``(x, y)`` of normalised inputs and outputs for the utterances of a split.

    Parameters
    ----------
    exp : Experiment
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

    def __init__(self, exp: Experiment, split: str, in_kind: str, out_kind: str,
                 normalizer: Normalizer | None = None, utts: list[str] | None = None):
        self.exp = exp
        self.split, self.in_kind, self.out_kind = split, in_kind, out_kind
        self.norm = normalizer or exp.normalizer(in_kind, out_kind)
        if utts is None:
            utts = exp.utterances(split)
        self.utts, self.lengths, self.failed, files = [], [], {}, []
        for utt in utts:
            xp, yp = exp.dump_path(split, in_kind, utt), exp.dump_path(split, out_kind, utt)
            missing = [p for p in (xp, yp) if not p.exists()]
            if missing:
                logger.warning("%s: left out of %s (missing %s)", utt, split, missing[0])
                continue
            try:       # an unreadable or non-finite file fails its utterance alone, named
                nx, ny = len(load_finite(xp)), len(load_finite(yp))
            except ValueError as err:
                self.failed[utt] = str(err)
                logger.error("%s: left out of %s: %s", utt, split, err)
                continue
            if abs(nx - ny) > MAX_LENGTH_MISMATCH:
                raise ValueError(f"{xp}: {nx} rows but {yp} has {ny} (more than "
                                 f"{MAX_LENGTH_MISMATCH} apart: inconsistent dump)")
            self.utts.append(utt)
            self.lengths.append(min(nx, ny))
            files += [xp, yp]
        exp.check_current(split, (in_kind, out_kind), self.utts)
        #: digest of the data (file contents, the statistics and specs of both kinds)
        self.digest = digest({"files": files_digest(files, exp.root), "utts": self.utts,
                              "stats": files_digest([exp.stats_path(k) for k in (in_kind, out_kind)
                                                     if exp.stats_path(k).exists()], exp.root),
                              "specs": exp.spec_digests((in_kind, out_kind))})
        if not self.utts and utts:
            raise FileNotFoundError(f"{exp.dump_dir / split}: no utterance of {split} has both {in_kind} "
                                    f"and {out_kind}")

    def __len__(self) -> int:
        return len(self.utts)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw (un-normalised) ``(x [shape=(T, D_in)], y [shape=(T, D_out)])`` of item ``i``."""
        utt, n = self.utts[i], self.lengths[i]
        x = load_array(self.exp.dump_path(self.split, self.in_kind, utt))[:n]
        y = load_array(self.exp.dump_path(self.split, self.out_kind, utt))[:n]
        for arr, kind, dim in ((x, self.in_kind, self.norm.in_dim), (y, self.out_kind, self.norm.out_dim)):
            if arr.ndim != 2 or arr.shape[1] != dim:
                raise ValueError(f"{self.exp.dump_path(self.split, kind, utt)}: shape {arr.shape}, "
                                 f"statistics have {dim} dims")
        return x, y

    def __getitem__(self, i: int) -> dict:
        x, y = self.load(i)
        return {"utt": self.utts[i],
                "x": torch.from_numpy(self.norm.inputs(x).astype(np.float32)),
                "y": torch.from_numpy(self.norm.outputs(y).astype(np.float32))}


def collate_pairs(items: list[dict]) -> dict:
    """Items -> ``{"x": (B, T, D_in), "y": (B, T, D_out), "lengths": (B,), "utts": [...]}`` (zero-padded)."""
    x, lengths = pad_sequences([it["x"] for it in items])
    y, _ = pad_sequences([it["y"] for it in items])
    return {"x": x, "y": y, "lengths": lengths, "utts": [it["utt"] for it in items]}


class SegmentDataset(torch.utils.data.Dataset):
    """Fixed-length (waveform, conditioning) segments of one split for vocoder training.

    Item ``i`` is a segment of ``segment_frames`` frames of utterance ``i``: at a
    random frame (``train``, drawn with torch's RNG so runs are reproducible and
    resumable) or the middle one. Shorter utterances are zero-padded (waveform) and
    edge-padded (features). With ``preemphasis`` the waveform is pre-emphasised (the
    sample before the segment makes its first output exact).

    With ``features`` (a directory of ``<utt>.npy``, e.g. ``synth/<acoustic model>/<split>``)
    the conditioning is the acoustic model's generated features instead of the natural
    ones ("ground-truth aligned": generated with natural durations, so frame ``t`` is
    still samples ``t * hop ... (t + 1) * hop`` of the natural waveform); a generated file
    that is missing, unreadable, non-finite or more than :data:`MAX_LENGTH_MISMATCH`
    frames off the natural features is named and its utterance left out. ``cond_noise``
    adds Gaussian noise of that standard deviation (normalised units) to the
    conditioning of training items.

    Returns ``(wav [shape=(F * hop,)], cond [shape=(F, C)])`` float32 tensors.
    """

    def __init__(self, exp: Experiment, split: str, cond: Conditioning, segment_frames: int,
                 train: bool = True, preemphasis: float = 0.0, features: Path | None = None,
                 cond_noise: float = 0.0):
        self.cond, self.frames, self.train = cond, int(segment_frames), train
        self.preemphasis, self.cond_noise = float(preemphasis), float(cond_noise)
        self.items, self.failed = [], {}
        for utt in exp.utterances(split):
            wav, feat = exp.dump_path(split, "wav", utt), exp.dump_path(split, "out_acoustic", utt)
            if not (wav.exists() and feat.exists()):
                logger.warning("%s/%s: no dumped wav/out_acoustic, left out of vocoder training", split, utt)
                continue
            try:
                load_finite(wav), cond(natural := load_finite(feat), feat)
                if features is not None:
                    gen = Path(features) / f"{utt}.npy"
                    if not gen.exists():
                        raise ValueError(f"{gen}: generated features not found")
                    n = len(cond(load_finite(gen), gen))
                    if abs(n - len(natural)) > MAX_LENGTH_MISMATCH:
                        raise ValueError(f"{gen}: {n} frames but {feat} has {len(natural)} (not generated "
                                         f"with natural durations)")
                    feat = gen
            except ValueError as err:
                self.failed[utt] = str(err)
                logger.error("%s/%s: left out of vocoder training: %s", split, utt, err)
                continue
            self.items.append((utt, wav, feat))
        exp.check_current(split, ("wav", "out_acoustic"), [u for u, _, _ in self.items])
        self.digest = digest({"files": files_digest([p for _, w, f in self.items for p in (w, f)], exp.root),
                              "cond": digest([cond.mean.tolist(), cond.std.tolist()]),
                              "specs": exp.spec_digests(["out_acoustic"]),
                              **({"cond_noise": self.cond_noise} if self.cond_noise else {})})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        utt, wav_path, feat_path = self.items[i]
        feats = np.load(feat_path, mmap_mode="r")
        wav = np.load(wav_path, mmap_mode="r").reshape(-1)
        hop, F = self.cond.hop_length, self.frames
        T = min(len(feats), len(wav) // hop)
        if T < 1:
            raise ValueError(f"{wav_path}: shorter than one frame")
        span = max(0, T - F)
        start = int(torch.randint(0, span + 1, ())) if self.train else span // 2
        c = self.cond(np.asarray(feats[start:start + min(F, T)]), feat_path)
        w = np.array(wav[start * hop:(start + min(F, T)) * hop], dtype=np.float32)
        if self.preemphasis:
            prev = np.float32(wav[start * hop - 1]) if start > 0 else np.float32(0.0)
            w = preemphasis(torch.from_numpy(np.concatenate([[prev], w])), self.preemphasis)[1:].numpy()
        if len(c) < F:
            c = np.pad(c, ((0, F - len(c)), (0, 0)), mode="edge")
            w = np.pad(w, (0, F * hop - len(w)))
        if self.train and self.cond_noise:
            c = (c + self.cond_noise * torch.randn(c.shape).numpy()).astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(w)), torch.from_numpy(c)


def natural_utterances(exp: Experiment, split: str, cond: Conditioning):
    """``(wav [shape=(N,)], cond [shape=(T, C)])`` of every utterance of ``split`` with
    dumped wav and natural out_acoustic, read lazily (NumPy; the conditioning normalised)."""
    for utt in exp.utterances(split):
        wav, feat = exp.dump_path(split, "wav", utt), exp.dump_path(split, "out_acoustic", utt)
        if wav.exists() and feat.exists():
            yield load_finite(wav).reshape(-1), cond(load_finite(feat), feat)


def collate_segments(items):
    """List of (wav, cond) -> {"wav": (B, N), "cond": (B, T, C)}."""
    return {"wav": torch.stack([w for w, _ in items]), "cond": torch.stack([c for _, c in items])}
