"""Recipe stage ``sps eval``: objective metrics -> ``eval/<model>/<split>/metrics.json``.

Every system under ``synth/*/<split>/`` is compared frame by frame with the natural
parameters of ``dump/<split>/out_acoustic``: the generated static features
``<utt>.npy`` when present (acoustic models), else the WORLD analysis of
``<utt>.wav`` (WORLD copy synthesis, neural vocoders). Comparing frames one to one
needs natural durations, so systems are synthesized with ``durations: oracle``; a
system whose lengths differ by more than a few frames is skipped with a warning.
A duration model, when configured, is scored by its duration RMSE on the split.

Config (``conf/eval.yaml`` or the synth config)::

    split: eval
    systems: null          # names under synth/ (null: every synth/*/<split>/)
    source: auto           # auto | features | audio (always analyse the waveforms)
    duration_model: null   # models/<name> to score (duration RMSE in frames)

``metrics.json``: ``{"system", "split", "source", "num_utterances", "mean": {...},
"utterances": {utt: {...}}}`` with keys ``mcd_db``, ``bap_db``, ``f0_rmse_hz``,
``f0_corr``, ``vuv_error_pct`` (acoustic) or ``duration_rmse_frames``.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from sps.metrics import bap_distortion, duration_rmse, f0_corr, f0_rmse, mcd, nanmean, vuv_error

logger = logging.getLogger(__name__)

EVAL_DEFAULTS = {"split": "eval", "systems": None, "source": "auto", "duration_model": None}
#: frames by which generated and natural lengths may differ (trimmed); more: not comparable
MAX_MISMATCH = 5
#: (metrics.json key, table header, format)
COLUMNS = [("mcd_db", "MCD (dB)", "{:.2f}"), ("bap_db", "BAP (dB)", "{:.3f}"),
           ("f0_rmse_hz", "F0 RMSE (Hz)", "{:.1f}"), ("f0_corr", "F0 corr", "{:.3f}"),
           ("vuv_error_pct", "V/UV (%)", "{:.2f}"), ("duration_rmse_frames", "dur RMSE (frames)", "{:.2f}")]


def acoustic_metrics(natural: np.ndarray, generated: np.ndarray, spec: dict) -> dict[str, float]:
    """Metrics of one utterance from static features [shape=(T, S)] on the same time axis."""
    from sps.features import lf0_to_f0, split_streams
    n, g = split_streams(natural, spec), split_streams(generated, spec)
    f0n = lf0_to_f0(n["lf0"][:, 0], n["vuv"][:, 0])
    f0g = lf0_to_f0(g["lf0"][:, 0], g["vuv"][:, 0])
    return {"mcd_db": mcd(n["mgc"], g["mgc"]), "bap_db": bap_distortion(n["bap"], g["bap"]),
            "f0_rmse_hz": f0_rmse(f0n, f0g), "f0_corr": f0_corr(f0n, f0g),
            "vuv_error_pct": 100.0 * vuv_error(f0n, f0g), "frames": int(len(f0n))}


def analysis_config(spec: dict):
    """The :class:`sps.features.FeatureConfig` that produced a stream spec's features."""
    import dataclasses

    from sps.features import FeatureConfig
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    a = {k: v for k, v in spec.get("analysis", {}).items() if k in names}
    return FeatureConfig(sample_rate=int(spec["sample_rate"]), frame_shift_ms=float(spec["frame_shift_ms"]),
                         mgc_order=sum(s["static_dim"] for s in spec["streams"] if s["name"] == "mgc") - 1,
                         **{k: v for k, v in a.items() if k != "mgc_order"})


def generated_static(system_dir: Path, utt: str, spec: dict, source: str) -> np.ndarray:
    """A system's static features of ``utt``: its ``.npy`` or the WORLD analysis of its ``.wav``."""
    from sps.io import load_array, read_wav
    npy, wav = system_dir / f"{utt}.npy", system_dir / f"{utt}.wav"
    if source != "audio" and npy.exists():
        return load_array(npy)
    if source == "features":
        raise FileNotFoundError(f"{npy}: generated features not found (source: features)")
    from sps.vocoders.world import analyze
    x, sr = read_wav(wav, int(spec["sample_rate"]))
    static, _ = analyze(x, sr, analysis_config(spec))
    return static


def evaluate_system(exp_dir: str | os.PathLike, system: str, split: str = "eval",
                    source: str = "auto") -> dict | None:
    """Metrics of ``synth/<system>/<split>`` against natural speech (None if not comparable)."""
    from sps.features import static_columns
    from sps.io import load_array, read_json, read_list
    exp = Path(exp_dir)
    spec = read_json(exp / "dump" / "out_acoustic.json")
    cols = static_columns(spec)
    sdir = exp / "synth" / system / split
    per_utt, used_source = {}, set()
    for utt in read_list(exp / "data" / f"{split}.list"):
        if not (sdir / f"{utt}.wav").exists() and not (sdir / f"{utt}.npy").exists():
            continue
        natural = load_array(exp / "dump" / split / "out_acoustic" / f"{utt}.npy")[:, cols]
        gen = generated_static(sdir, utt, spec, source)
        used_source.add("features" if source != "audio" and (sdir / f"{utt}.npy").exists() else "audio")
        if abs(len(gen) - len(natural)) > MAX_MISMATCH:
            logger.warning("eval: %s/%s has %d frames, natural speech %d: not synthesized with natural "
                           "durations, system skipped", system, utt, len(gen), len(natural))
            return None
        T = min(len(gen), len(natural))
        per_utt[utt] = acoustic_metrics(natural[:T], gen[:T], spec)
    if not per_utt:
        return None
    keys = [k for k, _, _ in COLUMNS if k in next(iter(per_utt.values()))]
    return {"system": system, "split": split, "source": "+".join(sorted(used_source)),
            "num_utterances": len(per_utt), "mean": {k: nanmean(v[k] for v in per_utt.values()) for k in keys},
            "utterances": per_utt}


def evaluate_duration_model(exp_dir: str | os.PathLike, model: str, split: str = "eval") -> dict:
    """Duration RMSE (frames per phone, or per state) of ``models/<model>`` on a split."""
    from sps.io import load_array, read_list
    from sps.models.data import Normalizer
    from sps.models.stage import load_model
    from sps.synthesis.generate import round_durations, run_model
    exp = Path(exp_dir)
    model_, model_cfg = load_model(exp / "models" / model)
    norm = Normalizer.from_exp(exp, "in_duration", "out_duration")
    per_utt = {}
    for utt in read_list(exp / "data" / f"{split}.list"):
        x = exp / "dump" / split / "in_duration" / f"{utt}.npy"
        if not x.exists():
            continue
        pred = round_durations(run_model(model_, model_cfg, norm, load_array(x))[0])
        ref = load_array(exp / "dump" / split / "out_duration" / f"{utt}.npy")
        per_utt[utt] = {"duration_rmse_frames": duration_rmse(ref, pred.astype(np.float64)), "phones": len(ref)}
    return {"system": model, "split": split, "source": "durations", "num_utterances": len(per_utt),
            "mean": {"duration_rmse_frames": nanmean(v["duration_rmse_frames"] for v in per_utt.values())},
            "utterances": per_utt}


def _fmt(value, fmt: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def metrics_table(exp_dir: str | os.PathLike, split: str = "eval", markdown: bool = False) -> str:
    """The mean metrics of every system evaluated on ``split`` (``eval/*/<split>/metrics.json``)."""
    from sps.io import read_json
    rows = []
    for path in sorted(Path(exp_dir, "eval").glob(f"*/{split}/metrics.json")):
        m = read_json(path)
        rows.append((m["system"], m["mean"], m.get("num_utterances", 0)))
    # copy synthesis first: it is the ceiling the others are read against
    rows.sort(key=lambda r: (r[0] != "world_copy", r[0]))
    used = [c for c in COLUMNS if any(c[0] in r[1] for r in rows)]
    header = ["system", *[h for _, h, _ in used], "utts"]
    body = [[name, *[_fmt(mean.get(k), f) for k, _, f in used], str(n)] for name, mean, n in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt_row(header), "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(fmt_row, body)])


def print_table(exp_dir: str | os.PathLike, split: str = "eval") -> None:
    """Print :func:`metrics_table` (the recipe calls this at the end)."""
    print(f"objective evaluation on the {split} split ({Path(exp_dir)}):")
    print(metrics_table(exp_dir, split))


def run(ctx) -> None:
    """Stage entry point (``sps eval``)."""
    from sps.io import write_json
    cfg = {**EVAL_DEFAULTS, **{k: v for k, v in ctx.config.items() if k in EVAL_DEFAULTS}}
    if cfg["source"] not in ("auto", "features", "audio"):
        raise ValueError(f"source must be 'auto', 'features' or 'audio', got {cfg['source']!r}")
    exp, split = Path(ctx.exp_dir), cfg["split"]
    systems = cfg["systems"] or sorted(p.parent.name for p in exp.glob(f"synth/*/{split}") if p.is_dir())
    if isinstance(systems, str):
        systems = [systems]
    for system in systems:
        out = exp / "eval" / system / split / "metrics.json"
        sdir = exp / "synth" / system / split
        newest = max((p.stat().st_mtime for p in sdir.glob("*") if p.suffix in (".wav", ".npy")), default=0)
        if out.exists() and not ctx.force and out.stat().st_mtime >= newest:
            logger.info("eval: %s is up to date", out)
            continue
        result = evaluate_system(exp, system, split, cfg["source"])
        if result is not None:
            write_json(out, result)
    if cfg["duration_model"]:
        write_json(exp / "eval" / cfg["duration_model"] / split / "metrics.json",
                   evaluate_duration_model(exp, cfg["duration_model"], split))
    print_table(exp, split)
