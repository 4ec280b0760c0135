"""Recipe stages for neural vocoders: ``train`` and ``vocode`` (any vocoder of the protocol).

Config (``conf/wavenet.yaml``)::

    vocoder: wavenet            # registry name (sps.vocoders.VOCODERS)
    name: wavenet               # models/<name>, synth/<name>_copy (default: vocoder)
    preemphasis: 0.97           # train on y[t] = x[t] - 0.97 x[t-1], de-emphasise generated
                                # audio (sps.dsp); 0 turns it off. Spreads the 8-bit
                                # quantisation noise away from the low-frequency formants.
    model: {...}                # keyword arguments of the vocoder class
    train: {segment_frames: 40, batch_size: 8, max_steps: 2000, ...}   # + sps.train.fit options
    vocode:
      splits: [eval]
      acoustic_models: null     # synth/<m>/<split>/*.npy to vocode (null: every one present)
      batch_size: 4             # utterances per generate() call
      temperature: 1.0
      seed: 0
      device: null              # null: cuda if available
      max_utts: null
      metrics: true
      generate: {}              # extra keyword arguments of generate() (e.g. method: native)

Conditioning (the protocol of :mod:`sps.vocoders`): the static columns of
``out_acoustic`` (``[mgc | lf0 | vuv | bap]``), normalised with the mean/std of those
columns in ``stats/out_acoustic.npz``; one frame is ``hop_length`` samples.

Outputs: ``models/<name>/`` (via :func:`sps.train.fit`), ``synth/<name>_copy/<split>/<utt>.wav``
(copy synthesis from natural features), ``synth/<model>_<name>/<split>/<utt>.wav`` (from an
acoustic model's generated features ``synth/<model>/<split>/<utt>.npy``), and
``eval/<out>/<split>/metrics.json`` (MCD, BAP distortion, F0 RMSE/correlation, V/UV error of
the WORLD re-analysis of each waveform against the natural features, exactly as the
``eval`` stage scores WORLD copy synthesis).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch

from sps.dsp import deemphasis, preemphasis
from sps.io import load_array, read_json, read_list, write_json, write_wav
from sps.stage import StageContext, StageSummary, select_shard
from sps.vocoders import get_vocoder

logger = logging.getLogger(__name__)

VOCODE_DEFAULTS = {"splits": ["eval"], "acoustic_models": None, "batch_size": 4, "temperature": 1.0,
                   "seed": 0, "device": None, "max_utts": None, "metrics": True, "generate": {}}


def vocoder_name(config: dict) -> str:
    """``config["name"]`` or else the vocoder type."""
    if "vocoder" not in config:
        raise ValueError("vocoder config needs a 'vocoder' key (one of the sps.vocoders.VOCODERS names)")
    return str(config.get("name") or config["vocoder"])


class Conditioning:
    """Vocoder conditioning of an experiment: static acoustic columns, normalised.

    Parameters
    ----------
    exp_dir : path
        Experiment directory holding ``dump/out_acoustic.json`` and ``stats/out_acoustic.npz``.
    """

    def __init__(self, exp_dir: Path):
        from sps.spec import static_columns
        exp_dir = Path(exp_dir)
        self.spec = read_json(exp_dir / "dump" / "out_acoustic.json")
        self.cols = static_columns(self.spec)
        stats_path = exp_dir / "stats" / "out_acoustic.npz"
        if not stats_path.exists():
            raise FileNotFoundError(f"{stats_path}: statistics not found (run the stats stage)")
        with np.load(stats_path) as st:
            mean, std = st["mean"], st["std"]
        if mean.shape[-1] != self.spec["dim"]:
            raise ValueError(f"{stats_path}: {mean.shape[-1]} columns, spec has {self.spec['dim']}")
        self.mean = mean[self.cols].astype(np.float32)
        self.std = np.maximum(std[self.cols], 1e-8).astype(np.float32)
        self.sample_rate = int(self.spec["sample_rate"])
        self.hop_length = int(round(self.sample_rate * float(self.spec["frame_shift_ms"]) / 1000.0))

    @property
    def dim(self) -> int:
        return len(self.cols)

    def static(self, x: np.ndarray, path: str | Path = "features") -> np.ndarray:
        """(T, D) with D the full spec dim or the static dim -> static columns (T, C)."""
        if x.ndim != 2 or x.shape[1] not in (self.spec["dim"], self.dim):
            raise ValueError(f"{path}: expected (T, {self.spec['dim']}) or (T, {self.dim}) acoustic "
                             f"features, got shape {x.shape}")
        return x[:, self.cols] if x.shape[1] == self.spec["dim"] != self.dim else x

    def __call__(self, x: np.ndarray, path: str | Path = "features") -> np.ndarray:
        """Raw features (full or static layout) -> normalised static columns, float32 (T, C)."""
        return ((self.static(np.asarray(x), path) - self.mean) / self.std).astype(np.float32)


class SegmentDataset(torch.utils.data.Dataset):
    """Fixed-length (waveform, conditioning) segments of one split for teacher forcing.

    Item ``i`` is a segment of ``segment_frames`` frames of utterance ``i``: at a
    random frame (``train``, drawn with torch's RNG so runs are reproducible and
    resumable) or the middle one. Shorter utterances are zero-padded (waveform) and
    edge-padded (features).

    Returns ``(wav [shape=(F * hop,)], cond [shape=(F, C)])`` float32 tensors.
    """

    def __init__(self, exp_dir: Path, split: str, cond: Conditioning, segment_frames: int, train: bool = True,
                 preemphasis: float = 0.0):
        exp_dir = Path(exp_dir)
        self.cond, self.frames, self.train = cond, int(segment_frames), train
        self.preemphasis = float(preemphasis)
        self.items = []
        for utt in read_list(exp_dir / "data" / f"{split}.list"):
            wav = exp_dir / "dump" / split / "wav" / f"{utt}.npy"
            feat = exp_dir / "dump" / split / "out_acoustic" / f"{utt}.npy"
            if wav.exists() and feat.exists():
                self.items.append((utt, wav, feat))
            else:
                logger.warning("%s/%s: no dumped wav/out_acoustic, left out of vocoder training", split, utt)

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
            # the sample before the segment makes its first output exact
            prev = np.float32(wav[start * hop - 1]) if start > 0 else np.float32(0.0)
            w = preemphasis(torch.from_numpy(np.concatenate([[prev], w])), self.preemphasis)[1:].numpy()
        if len(c) < F:
            c = np.pad(c, ((0, F - len(c)), (0, 0)), mode="edge")
            w = np.pad(w, (0, F * hop - len(w)))
        return torch.from_numpy(np.ascontiguousarray(w)), torch.from_numpy(c)


def collate(items):
    """List of (wav, cond) -> {"wav": (B, N), "cond": (B, T, C)}."""
    return {"wav": torch.stack([w for w, _ in items]), "cond": torch.stack([c for _, c in items])}


def loss_step(model, batch) -> torch.Tensor:
    """``step_fn`` for :func:`sps.train.fit`: the vocoder's teacher-forced loss."""
    return model.loss(batch["wav"], batch["cond"])


def build_vocoder(config: dict, cond: Conditioning):
    """Instantiate ``config["vocoder"]`` from ``config["model"]`` (hop length from the spec)."""
    model_cfg = dict(config.get("model") or {})
    model_cfg.setdefault("hop_length", cond.hop_length)
    if int(model_cfg["hop_length"]) != cond.hop_length:
        raise ValueError(f"model.hop_length {model_cfg['hop_length']} != {cond.hop_length} samples per "
                         f"frame of dump/out_acoustic.json")
    return get_vocoder(config["vocoder"]).from_config(model_cfg, cond.dim), model_cfg


def train(ctx: StageContext) -> dict:
    """Train the vocoder on natural features of the train split (``dev`` validates).

    Resumes from the latest checkpoint of ``models/<name>`` unless ``--force``.
    """
    from sps.train import fit
    config, exp = ctx.config, Path(ctx.exp_dir)
    name = vocoder_name(config)
    cond = Conditioning(exp)
    model, model_cfg = build_vocoder(config, cond)
    tcfg = dict(config.get("train") or {})
    frames = int(tcfg.pop("segment_frames", 40))
    tcfg.setdefault("bucket", False)
    emphasis = float(config.get("preemphasis") or 0.0)
    if not 0.0 <= emphasis < 1.0:
        raise ValueError(f"preemphasis must be in [0, 1), got {emphasis}")
    train_set = SegmentDataset(exp, "train", cond, frames, train=True, preemphasis=emphasis)
    if len(train_set) == 0:
        raise ValueError(f"{exp}/data/train.list: no utterance with dumped wav and out_acoustic")
    valid_set = None
    if (exp / "data" / "dev.list").exists():
        valid_set = SegmentDataset(exp, "dev", cond, frames, train=False, preemphasis=emphasis) or None
    tcfg.update({"vocoder": config["vocoder"], "model": model_cfg, "cond_dim": cond.dim,
                 "segment_frames": frames, "preemphasis": emphasis})
    out_dir = exp / "models" / name
    logger.info("training %s (%d parameters) on %d utterances -> %s", config["vocoder"],
                sum(p.numel() for p in model.parameters()), len(train_set), out_dir)
    return fit(model, loss_step, train_set, valid_set, out_dir, tcfg, collate_fn=collate,
               resume=not ctx.force)


def load_vocoder(model_dir: Path, cond: Conditioning, device: torch.device):
    """Rebuild the vocoder of ``models/<name>`` from its ``config.yaml`` and load ``best.pt``."""
    import yaml
    from sps.train import load_checkpoint
    cfg_path = Path(model_dir) / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: not found (train the vocoder first)")
    saved = yaml.safe_load(cfg_path.read_text())
    if int(saved["cond_dim"]) != cond.dim:
        raise ValueError(f"{cfg_path}: trained on {saved['cond_dim']} conditioning features, "
                         f"the experiment has {cond.dim}")
    model, _ = build_vocoder({"vocoder": saved["vocoder"], "model": saved["model"]}, cond)
    load_checkpoint(model_dir, model)
    model.preemphasis = float(saved.get("preemphasis") or 0.0)  # what its training targets had
    return model.to(device).eval()


def _vocode_set(model, jobs: list[tuple[str, Path, Path]], cond: Conditioning, vcfg: dict,
                device: torch.device, summary: StageSummary) -> list[str]:
    """Generate ``out`` wavs for (utt, features path, out path) jobs in length-sorted batches."""
    loaded = []
    for utt, feat_path, out_path in jobs:
        try:
            loaded.append((utt, cond(load_array(feat_path), feat_path), out_path))
        except (ValueError, FileNotFoundError) as err:
            summary.failed[utt] = str(err)
            logger.error("%s: %s", utt, err)
    loaded.sort(key=lambda item: len(item[1]))
    gen = torch.Generator().manual_seed(int(vcfg["seed"]))
    done, bs = [], max(1, int(vcfg["batch_size"]))
    for i in range(0, len(loaded), bs):
        group = loaded[i:i + bs]
        lengths = torch.tensor([len(c) for _, c, _ in group])
        batch = torch.zeros(len(group), int(lengths.max()), cond.dim)
        for b, (_, c, _) in enumerate(group):
            batch[b, :len(c)] = torch.from_numpy(c)
            batch[b, len(c):] = torch.from_numpy(c[-1:])
        try:
            wav = model.generate(batch.to(device), lengths=lengths.to(device),
                                 temperature=float(vcfg["temperature"]), generator=gen,
                                 **dict(vcfg.get("generate") or {}))
        except (ValueError, RuntimeError) as err:
            for utt, _, _ in group:
                summary.failed[utt] = f"{type(err).__name__}: {err}"
            logger.error("generation failed for %s: %s", [u for u, _, _ in group], err)
            continue
        wav = wav.float().cpu()
        if getattr(model, "preemphasis", 0.0):
            wav = deemphasis(wav, model.preemphasis)
        wav = wav.numpy()
        for b, (utt, c, out_path) in enumerate(group):
            write_wav(out_path, np.clip(wav[b, :len(c) * cond.hop_length], -1.0, 1.0), cond.sample_rate)
            summary.ok += 1
            done.append(utt)
    return done


def vocode(ctx: StageContext) -> dict:
    """Copy synthesis of natural features and vocoding of acoustic models' features.

    For each split in ``vocode.splits``: natural ``dump/<split>/out_acoustic`` ->
    ``synth/<name>_copy/<split>/<utt>.wav``; every ``synth/<m>/<split>/<utt>.npy`` of the
    acoustic models ``vocode.acoustic_models`` (null: all present) ->
    ``synth/<m>_<name>/<split>/<utt>.wav``; then ``eval/<out>/<split>/metrics.json``.
    Existing wavs are kept unless ``--force``.
    """
    config, exp = ctx.config, Path(ctx.exp_dir)
    name = vocoder_name(config)
    vcfg = {**VOCODE_DEFAULTS, **(config.get("vocode") or {})}
    device = torch.device(vcfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
    cond = Conditioning(exp)
    model = load_vocoder(exp / "models" / name, cond, device)
    results = {}
    for split in vcfg["splits"]:
        utts = select_shard(read_list(exp / "data" / f"{split}.list"), ctx.shard)
        if vcfg["max_utts"]:
            utts = utts[:int(vcfg["max_utts"])]
        sources = {f"{name}_copy": exp / "dump" / split / "out_acoustic"}
        models = vcfg["acoustic_models"]
        if models is None:
            models = sorted(p.parent.name for p in (exp / "synth").glob(f"*/{split}")
                            if any(p.glob("*.npy")))
        for m in models:
            sources[f"{m}_{name}"] = exp / "synth" / m / split
        for out_name, src in sources.items():
            out_dir = exp / "synth" / out_name / split
            summary = StageSummary(desc=f"vocode {out_name}/{split}")
            jobs = []
            for utt in utts:
                out_path = out_dir / f"{utt}.wav"
                if out_path.exists() and not ctx.force:
                    summary.skipped += 1
                elif (src / f"{utt}.npy").exists():
                    jobs.append((utt, src / f"{utt}.npy", out_path))
                else:
                    summary.failed[utt] = f"{src / (utt + '.npy')}: features not found"
            _vocode_set(model, jobs, cond, vcfg, device, summary)
            (logger.warning if summary.failed else logger.info)("%s", summary)
            print(str(summary).splitlines()[0], file=sys.stderr)
            if vcfg["metrics"]:
                results[f"{out_name}/{split}"] = write_metrics(exp, out_name, split)
    return results


def write_metrics(exp: Path, out_name: str, split: str) -> dict | None:
    """Metrics of ``synth/<out_name>/<split>/*.wav`` -> ``eval/<out_name>/<split>/metrics.json``.

    The same measures and file as the ``eval`` stage for WORLD copy synthesis
    (:func:`sps.synthesis.evaluate.evaluate_system` on the WORLD re-analysis of the
    waveforms): ``mcd_db``, ``bap_db``, ``f0_rmse_hz``, ``f0_corr``, ``vuv_error_pct``.
    Returns the means (None when nothing was comparable).
    """
    from sps.synthesis.evaluate import evaluate_system
    result = evaluate_system(exp, out_name, split, source="audio")
    if result is None:
        logger.warning("%s/%s: no utterance to evaluate", out_name, split)
        return None
    write_json(exp / "eval" / out_name / split / "metrics.json", result)
    logger.info("%s/%s metrics: %s", out_name, split,
                ", ".join(f"{k}={v:.4g}" for k, v in result["mean"].items()))
    return result["mean"]
