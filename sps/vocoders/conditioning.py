"""Neural vocoder conditioning: the static acoustic columns, normalised.

Every neural vocoder is conditioned on the static ``[mgc | lf0 | vuv | bap]`` columns
of ``out_acoustic`` (natural features for copy synthesis and training, an acoustic
model's generated ones otherwise), standardised with the train-split mean and std of
those columns. One frame is ``hop_length`` samples.
"""
from __future__ import annotations

import numpy as np

from sps.spec import static_columns


class Conditioning:
    """Maps raw acoustic features to the normalised conditioning of a vocoder.

    Parameters
    ----------
    spec : dict
        Stream spec of ``out_acoustic``.
    mean, std : ndarray [shape=(C,)]
        Mean and standard deviation of the static columns (train split).
    """

    def __init__(self, spec: dict, mean: np.ndarray, std: np.ndarray):
        self.spec = spec
        self.cols = static_columns(spec)
        if len(mean) != len(self.cols) or len(std) != len(self.cols):
            raise ValueError(f"conditioning statistics have {len(mean)} columns, the spec has "
                             f"{len(self.cols)} static columns")
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.maximum(np.asarray(std, dtype=np.float64), 1e-8).astype(np.float32)
        self.sample_rate = int(spec["sample_rate"])
        self.hop_length = int(round(self.sample_rate * float(spec["frame_shift_ms"]) / 1000.0))

    def layout(self) -> dict:
        """Where mgc, lf0, vuv (and bap) sit in the conditioning, and the analysis (alpha,
        sample rate): what the LPC vocoders need to read the features."""
        offsets, pos = {}, 0
        for stream in self.spec["streams"]:
            offsets[stream["name"]] = (pos, int(stream["static_dim"]))
            pos += int(stream["static_dim"])
        missing = [k for k in ("mgc", "lf0", "vuv") if k not in offsets]
        if missing:
            raise ValueError(f"the conditioning has no {', '.join(missing)} stream")
        layout = {"sample_rate": self.sample_rate, "alpha": float(self.spec["analysis"]["alpha"]),
                  "mgc": list(offsets["mgc"]), "lf0": offsets["lf0"][0], "vuv": offsets["vuv"][0]}
        if "bap" in offsets:
            layout["bap"] = list(offsets["bap"])
        return layout

    @property
    def dim(self) -> int:
        """Conditioning features per frame ``C``."""
        return len(self.cols)

    def static(self, x: np.ndarray, path="features") -> np.ndarray:
        """(T, D) with D the full spec dim or the static dim -> static columns (T, C)."""
        if x.ndim != 2 or x.shape[1] not in (self.spec["dim"], self.dim):
            raise ValueError(f"{path}: expected (T, {self.spec['dim']}) or (T, {self.dim}) acoustic "
                             f"features, got shape {x.shape}")
        return x[:, self.cols] if x.shape[1] == self.spec["dim"] != self.dim else x

    def __call__(self, x: np.ndarray, path="features") -> np.ndarray:
        """Raw features (full or static layout) -> normalised static columns, float32 (T, C);
        a non-finite value is a ``ValueError`` naming ``path``."""
        x = self.static(np.asarray(x), path)
        if not np.all(np.isfinite(x)):
            t, d = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(f"{path}: non-finite conditioning value {x[t, d]} at frame {t}, column {d}")
        return ((x - self.mean) / self.std).astype(np.float32)
