"""Recipe stage ``sps eval``: objective metrics -> ``eval/<model>/<split>/metrics.json``.

Every system under ``synth/*/<split>/`` is compared with the natural parameters of
``dump/<split>/out_acoustic``: the generated static features ``<utt>.npy`` when
present (acoustic models), else the WORLD analysis of ``<utt>.wav`` (WORLD copy
synthesis, neural vocoders). Systems synthesized with natural durations
(``durations: oracle``) are compared frame by frame; systems with predicted durations
(full TTS) are first aligned to natural speech by DTW of the mel-cepstra (``c0`` left
out), as Merlin and nnmnkwii report them. The synth stage's ``synth.json`` says which
durations a system used (without it: DTW when some utterance's length differs by more
than :data:`MAX_MISMATCH` frames); a full-TTS system's row also gets the duration
RMSE of the duration model it used. A duration model, when configured, is scored by
its duration RMSE on the split.

Config (``conf/eval.yaml`` or the synth config)::

    split: eval
    systems: null          # names under synth/ (null: every synth/*/<split>/)
    source: auto           # auto | features | audio (always analyse the waveforms)
    duration_model: null   # models/<name> to score (duration RMSE in frames)

After scoring, ``eval/best.json`` records the models the split scored best
(:func:`best_models`): the acoustic model with the lowest MCD of its generated
parameters (natural durations), the duration model with the lowest duration RMSE and
the vocoder with the lowest MCD in copy synthesis (``world_copy``, ``<vocoder>_copy``),
each with its scores. Wherever a model is not named (``sps synth --text``, ``sps pack``,
``sps speak``) these are the defaults, and the choice is printed.

``metrics.json``: ``{"system", "split", "source", "alignment" ("frames" | "dtw"),
"num_utterances", "mean": {...}, "utterances": {utt: {...}}}`` (a full-TTS system also
``"duration_model"``) with keys ``mcd_db``, ``bap_db``, ``f0_rmse_hz``,
``f0_corr``, ``vuv_error_pct`` (acoustic) or ``duration_rmse_frames``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sps.config import bind
from sps.features import lf0_to_f0
from sps.io import audio_length, is_valid_id, load_array, read_json, read_wav, write_json
from sps.metrics import bap_distortion, dtw_path, duration_rmse, f0_corr, f0_rmse, mcd, nanmean, vuv_error
from sps.spec import split_streams, static_columns
from sps.stages.best import best_models, describe_score
from sps.stages.experiment import Experiment, check_names
from sps.stages.runner import StageContext
from sps.stages.stamps import digest, files_digest
from sps.synthesis import bound_durations, duration_limit
from sps.vocoders import world

logger = logging.getLogger(__name__)

#: frames by which generated and natural lengths may differ and still count as frame-aligned
MAX_MISMATCH = 5
#: (metrics.json key, table header, format)
COLUMNS = [("mcd_db", "MCD (dB)", "{:.2f}"), ("bap_db", "BAP (dB)", "{:.3f}"),
           ("f0_rmse_hz", "F0 RMSE (Hz)", "{:.1f}"), ("f0_corr", "F0 corr", "{:.3f}"),
           ("vuv_error_pct", "V/UV (%)", "{:.2f}"), ("duration_rmse_frames", "dur RMSE (frames)", "{:.2f}")]


@dataclass(frozen=True)
class EvalConfig:
    """Keys of ``conf/eval.yaml``."""
    split: str = "eval"
    systems: tuple[str, ...] | None = None    # names under synth/ (None: every synth/*/<split>/)
    source: Literal["auto", "features", "audio"] = "auto"   # audio: always analyse the waveforms
    duration_model: str | None = None         # models/<name> to score (duration RMSE in frames)

    def __post_init__(self):
        check_names(split=self.split, systems=self.systems, duration_model=self.duration_model)


def acoustic_metrics(natural: np.ndarray, generated: np.ndarray, spec: dict,
                     vuv_threshold: float = 0.5) -> dict[str, float]:
    """Metrics of one utterance from static features [shape=(T, S)] on the same time axis.

    A generated frame is voiced when its vuv value exceeds ``vuv_threshold`` (the
    threshold its waveform was made with); natural vuv values are 0 or 1.
    """
    n, g = split_streams(natural, spec), split_streams(generated, spec)
    f0n = lf0_to_f0(n["lf0"][:, 0], n["vuv"][:, 0])
    f0g = lf0_to_f0(g["lf0"][:, 0], g["vuv"][:, 0], vuv_threshold)
    return {"mcd_db": mcd(n["mgc"], g["mgc"]), "bap_db": bap_distortion(n["bap"], g["bap"]),
            "f0_rmse_hz": f0_rmse(f0n, f0g), "f0_corr": f0_corr(f0n, f0g),
            "vuv_error_pct": 100.0 * vuv_error(f0n, f0g), "frames": int(len(f0n))}


def generated_static(exp: Experiment, system: str, split: str, utt: str, source: str) -> np.ndarray:
    """A system's static features of ``utt``: its ``.npy`` or the WORLD analysis of its ``.wav``."""
    sdir = exp.synth_dir(system, split)
    npy, wav = sdir / f"{utt}.npy", sdir / f"{utt}.wav"
    if source != "audio" and npy.exists():
        return load_array(npy)
    if source == "features":
        raise FileNotFoundError(f"{npy}: generated features not found (source: features)")
    config = exp.feature_config()
    x, sr = read_wav(wav, config.sample_rate)
    static, _ = world.analyze(x, sr, config)
    return static


def header_frames(exp: Experiment, system: str, split: str, utt: str, source: str) -> tuple[int, int]:
    """(natural, generated) frames of ``utt`` from the file headers (no analysis); (0, 0)
    when a header cannot be read (the utterance then fails when it is scored)."""
    sdir = exp.synth_dir(system, split)
    npy = sdir / f"{utt}.npy"
    try:
        natural = int(np.load(exp.dump_path(split, "out_acoustic", utt), mmap_mode="r").shape[0])
        if source != "audio" and npy.exists():
            return natural, int(np.load(npy, mmap_mode="r").shape[0])
        samples, sr = audio_length(sdir / f"{utt}.wav")
    except (ValueError, OSError):
        return 0, 0
    hop = int(round(sr * exp.feature_config().frame_shift_ms / 1000))
    return natural, samples // hop + 1


def dtw_align(natural: np.ndarray, generated: np.ndarray, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Frames of both paired along the DTW path of their mel-cepstra (``c0`` left out)."""
    mgc = split_streams(natural, spec)["mgc"].shape[1]
    ix, iy = dtw_path(natural[:, 1:mgc], generated[:, 1:mgc])
    return natural[ix], generated[iy]


def evaluate_system(exp: Experiment, system: str, split: str = "eval", source: str = "auto") -> dict | None:
    """Metrics of ``synth/<system>/<split>`` against natural speech (None if nothing to compare).

    Systems synthesized with natural durations are compared frame by frame; those with
    predicted durations (``synth.json``: ``durations: predicted``; without the record:
    some utterance's length differs from the natural one by more than
    :data:`MAX_MISMATCH` frames) are first aligned to natural speech by DTW of the
    mel-cepstra (``alignment`` in the result says which). A full-TTS system whose
    duration model is recorded also gets that model's ``duration_rmse_frames`` on the
    same utterances.
    """
    spec = exp.spec("out_acoustic")
    cols = static_columns(spec)
    sdir = exp.synth_dir(system, split)
    utts = [u for u in exp.utterances(split) if (sdir / f"{u}.wav").exists() or (sdir / f"{u}.npy").exists()]
    if not utts:
        return None
    info = exp.synth_info(system, split)
    if "durations" in info:
        dtw = info["durations"] == "predicted"
    else:   # from the lengths in the file headers: nothing is held in memory
        dtw = any(abs(n - g) > MAX_MISMATCH for n, g in (header_frames(exp, system, split, u, source) for u in utts))
    per_utt, used_source, failed = {}, set(), {}
    for utt in utts:      # one utterance at a time: memory stays flat with the split's size
        try:   # an unreadable or non-finite file fails its utterance alone, named
            natural = finite(load_array(exp.dump_path(split, "out_acoustic", utt))[:, cols],
                             exp.dump_path(split, "out_acoustic", utt))
            made = sdir / f"{utt}.npy" if source != "audio" and (sdir / f"{utt}.npy").exists() else sdir / f"{utt}.wav"
            gen = finite(generated_static(exp, system, split, utt, source), made)
        except (ValueError, FileNotFoundError, OSError) as err:
            failed[utt] = " ".join(str(err).split())
            logger.error("eval %s/%s: %s left out: %s", system, split, utt, failed[utt])
            continue
        used_source.add("features" if source != "audio" and (sdir / f"{utt}.npy").exists() else "audio")
        if dtw:
            natural, gen = dtw_align(natural, gen, spec)
        else:
            T = min(len(gen), len(natural))
            natural, gen = natural[:T], gen[:T]
        per_utt[utt] = acoustic_metrics(natural, gen, spec, float(info.get("vuv_threshold", 0.5)))
    if not per_utt:
        raise ValueError(f"eval {system}/{split}: every utterance failed; first: {next(iter(failed.items()))}")
    extra = {}
    if dtw and info.get("duration_model") and exp.model_dir(info["duration_model"]).exists():
        durations = evaluate_duration_model(exp, info["duration_model"], split, utterances=list(per_utt))
        for utt, d in durations["utterances"].items():
            per_utt[utt]["duration_rmse_frames"] = d["duration_rmse_frames"]
        extra["duration_model"] = info["duration_model"]
    keys = [k for k, _, _ in COLUMNS if any(k in v for v in per_utt.values())]
    return {"system": system, "split": split, "source": "+".join(sorted(used_source)),
            "alignment": "dtw" if dtw else "frames", **extra, **summarize(per_utt, keys), "failed": failed,
            "utterances": per_utt}


def finite(x: np.ndarray, path) -> np.ndarray:
    """``x``, or a ``ValueError`` naming ``path`` and the first non-finite value."""
    if not np.all(np.isfinite(x)):
        t, d = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{path}: non-finite value {x[t, d]} at frame {t}, column {d}")
    return x


def summarize(per_utt: dict, keys) -> dict:
    """``num_utterances``, ``mean`` of every metric over the utterances where it is defined
    (finite), and ``counts``: how many utterances each mean averaged (F0 correlation is
    undefined for an utterance with fewer than two frames voiced in both)."""
    counts = {k: sum(1 for v in per_utt.values() if v.get(k) is not None and math.isfinite(v[k])) for k in keys}
    return {"num_utterances": len(per_utt), "mean": {k: nanmean(v.get(k) for v in per_utt.values()) for k in keys},
            "counts": counts}


def evaluate_duration_model(exp: Experiment, model: str, split: str = "eval",
                            utterances: list[str] | None = None) -> dict:
    """Duration RMSE (frames per phone, or per state) of ``models/<model>`` on a split
    (or on the given ``utterances`` of it)."""
    trained = exp.load_model(model)
    limit = duration_limit(trained)
    per_utt = {}
    for utt in exp.utterances(split) if utterances is None else utterances:
        x = exp.dump_path(split, "in_duration", utt)
        if not x.exists():
            continue
        pred = bound_durations(trained(load_array(x))[0], limit, f"{model} on {utt}")
        ref = load_array(exp.dump_path(split, "out_duration", utt))
        per_utt[utt] = {"duration_rmse_frames": duration_rmse(ref, pred.astype(np.float64)), "phones": len(ref)}
    return {"system": model, "split": split, "source": "durations", **summarize(per_utt, ["duration_rmse_frames"]),
            "utterances": per_utt}


def write_system_metrics(exp: Experiment, system: str, split: str, source: str = "auto") -> dict | None:
    """:func:`evaluate_system` -> ``eval/<system>/<split>/metrics.json``; returns the means."""
    result = evaluate_system(exp, system, split, source)
    if result is None:
        logger.warning("%s/%s: no utterance to evaluate", system, split)
        return None
    write_json(exp.eval_dir(system, split) / "metrics.json", result)
    logger.info("%s/%s metrics: %s", system, split,
                ", ".join(f"{k}={v:.4g}" for k, v in result["mean"].items()))
    return result["mean"]


def fmt(value, fmt: str) -> str:
    """A table cell: ``-`` for missing or NaN values."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def metrics_rows(exp: Experiment, split: str) -> list[tuple[str, dict, str, str]]:
    """(system, mean metrics as table cells, utterances averaged, source) of every
    ``eval/*/<split>/metrics.json``, WORLD copy synthesis first (the ceiling the others are
    read against). A mean over fewer utterances than the others of its row says how many
    (``0.812 (9)``); failed utterances are counted beside the utterances averaged."""
    rows = []
    for path in sorted(exp.root.glob(f"eval/*/{split}/metrics.json")):
        m = read_json(path)
        n, counts = m.get("num_utterances", 0), m.get("counts", {})
        cells = {k: fmt(v, f) + (f" ({counts[k]})" if counts.get(k, n) < n and fmt(v, f) != "-" else "")
                 for k, _, f in COLUMNS for v in [m["mean"].get(k)] if k in m["mean"]}
        failed = len(m.get("failed") or {})
        rows.append((m["system"], cells, f"{n}" + (f" (+{failed} failed)" if failed else ""), m.get("source", "")))
    rows.sort(key=lambda r: (r[0] != "world_copy", r[0]))
    return rows


def alignments(exp: Experiment, split: str) -> dict[str, str]:
    """system -> how it was aligned to natural speech (``frames`` or ``dtw``; duration
    models have none)."""
    out = {}
    for path in exp.root.glob(f"eval/*/{split}/metrics.json"):
        m = read_json(path)
        if "alignment" in m:
            out[m["system"]] = m["alignment"]
    return out


def metrics_table(exp: Experiment, split: str = "eval", markdown: bool = False) -> str:
    """The mean metrics of every system evaluated on ``split``, as text or markdown."""
    rows = metrics_rows(exp, split)
    used = [c for c in COLUMNS if any(c[0] in r[1] for r in rows)]
    aligned = alignments(exp, split)
    header = ["system", *[h for _, h, _ in used], "utts", "aligned"]
    body = [[name, *[cells.get(k, "-") for k, _, _ in used], n, aligned.get(name, "-")]
            for name, cells, n, _ in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def row(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([row(header), "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(row, body)])


def found_systems(exp: Experiment, split: str) -> list[str]:
    """The systems under ``synth/*/<split>/``; a directory whose name is not a valid name
    (made by hand: sps refuses such names) is left out with a warning."""
    names = sorted(p.parent.name for p in exp.root.glob(f"synth/*/{split}") if p.is_dir())
    ok = [n for n in names if is_valid_id(n)]
    for n in sorted(set(names) - set(ok)):
        logger.warning("eval: %s left out: not a valid system name", exp.root / "synth" / n)
    return ok


def inputs_digest(exp: Experiment, system: str, split: str, source: str) -> str:
    """Digest of everything a system's metrics depend on: its generated files, the natural
    features they are scored against, the spec, its ``synth.json`` and the source setting.
    ``metrics.json`` records it; the metrics are up to date while it is the same."""
    sdir = exp.synth_dir(system, split)
    files = sorted(p for p in sdir.glob("*") if p.suffix in (".wav", ".npy", ".json") and p.is_file())
    natural = [exp.dump_path(split, "out_acoustic", p.stem) for p in files
               if p.suffix != ".json" and is_valid_id(p.stem) and exp.dump_path(split, "out_acoustic", p.stem).exists()]
    return digest({"files": files_digest([*files, *sorted(set(natural))], exp.root), "source": source,
                   "spec": exp.spec_digests(["out_acoustic"]), "utterances": exp.utterances(split)})


def _recorded(path) -> str | None:
    try:
        return read_json(path).get("inputs_digest")
    except (ValueError, OSError, AttributeError):
        return None


def run(ctx: StageContext) -> None:
    """Stage entry point (``sps eval``)."""
    cfg = bind(EvalConfig, ctx.config, "eval")
    exp, split = ctx.exp, cfg.split
    systems = cfg.systems or found_systems(exp, split)
    for system in systems:
        out = exp.eval_dir(system, split) / "metrics.json"
        made_from = inputs_digest(exp, system, split, cfg.source)
        if out.exists() and not ctx.force and _recorded(out) == made_from:
            logger.info("eval: %s is up to date", out)
            continue
        result = evaluate_system(exp, system, split, cfg.source)
        if result is not None:
            write_json(out, {**result, "inputs_digest": made_from})
    if cfg.duration_model:
        write_json(exp.eval_dir(cfg.duration_model, split) / "metrics.json",
                   evaluate_duration_model(exp, cfg.duration_model, split))
    print(f"objective evaluation on the {split} split ({exp.root}):")
    print(metrics_table(exp, split))
    best = best_models(exp, split)
    write_json(exp.best_path, best)
    chosen = [f"{k.replace('_', ' ')} {best[k]['name']} ({describe_score(best[k], split)})"
              for k in ("acoustic_model", "duration_model", "vocoder") if best[k]]
    if chosen:
        print(f"best ({exp.best_path}): " + "; ".join(chosen))
