"""``eval/best.json``: the models and vocoder an experiment's eval stage scored best.

Wherever a model is not named (``sps synth``, ``sps synth --text``, ``sps pack``) these
are the defaults, and the choice is printed with its score. The eval stage writes the
file after scoring (:func:`best_models`): the acoustic model with the lowest MCD of its
generated parameters (natural durations), the duration model with the lowest duration
RMSE and the vocoder with the lowest MCD in copy synthesis (``world_copy``,
``<vocoder>_copy``: the WORLD re-analysis of its waveforms).
"""
from __future__ import annotations

import math

from sps.io import read_json
from sps.stages.experiment import Experiment

#: suffix of the copy-synthesis systems of the vocoders (``world_copy``, ``wavenet_copy``, ...)
COPY_SUFFIX = "_copy"
#: what ``eval/best.json`` ranks by
CRITERION = "lowest mean MCD (dB) on the split; duration models: lowest duration RMSE (frames)"


def best_models(exp: Experiment, split: str) -> dict:
    """The models and vocoders ``split`` scored best, from every ``eval/*/<split>/metrics.json``.

    Returns ``{"split", "criterion", "acoustic_model", "duration_model", "vocoder"}``
    (each ``{"name", "system", **mean metrics}`` or None when nothing of that kind was
    scored) plus ``"acoustic_models"``, ``"duration_models"`` and ``"vocoders"``: every
    candidate's mean metrics by name. Acoustic models count with natural durations
    (their generated parameters against the natural ones); vocoders by their copy
    synthesis (WORLD re-analysis of the waveform).
    """
    acoustic, duration, vocoders = {}, {}, {}
    for path in sorted(exp.root.glob(f"eval/*/{split}/metrics.json")):
        m = read_json(path)
        system, mean = m.get("system", path.parent.parent.name), m.get("mean", {})
        if m.get("source") == "durations":
            if _finite(mean.get("duration_rmse_frames")):
                duration[system] = {"name": system, "system": system, **mean}
            continue
        if not _finite(mean.get("mcd_db")):
            continue
        info = exp.synth_info(system, split)
        if system.endswith(COPY_SUFFIX):
            name = "world" if info.get("copy_synthesis") else system[:-len(COPY_SUFFIX)]
            vocoders[name] = {"name": name, "system": system, **mean}
        elif info.get("acoustic_model") and info.get("durations") == "oracle":
            entry = {"name": info["acoustic_model"], "system": system, "postfilter": bool(info.get("postfilter")),
                     **mean}
            old = acoustic.get(entry["name"])
            if old is None or entry["mcd_db"] < old["mcd_db"]:
                acoustic[entry["name"]] = entry

    def best(candidates, key):
        return min(candidates.values(), key=lambda e: e[key]) if candidates else None
    return {"split": split, "criterion": CRITERION, "acoustic_model": best(acoustic, "mcd_db"),
            "duration_model": best(duration, "duration_rmse_frames"), "vocoder": best(vocoders, "mcd_db"),
            "acoustic_models": acoustic, "duration_models": duration, "vocoders": vocoders}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def read_best(exp: Experiment) -> dict:
    """``eval/best.json`` ({} when the eval stage has not run)."""
    return read_json(exp.best_path) if exp.best_path.exists() else {}


def best_name(exp: Experiment, kind: str) -> tuple[str, str]:
    """(name, why) of the best-scored ``kind`` (``acoustic_model``, ``duration_model`` or
    ``vocoder``) recorded in ``eval/best.json``; ``FileNotFoundError``/``ValueError``
    when none is recorded, naming the key that would choose one."""
    if not exp.best_path.exists():
        raise FileNotFoundError(f"no {kind} named and {exp.best_path} not found: run the eval stage, or name "
                                f"one ({kind}=...)")
    best = read_best(exp)
    entry = best.get(kind)
    if not entry:
        raise ValueError(f"no {kind} named and none was scored in {exp.best_path}: name one ({kind}=...)")
    return entry["name"], describe_score(entry, best.get("split", "eval"))


def describe_score(entry: dict, split: str) -> str:
    """'scored best on eval: MCD 3.25 dB' for a ``best.json`` entry."""
    if "mcd_db" in entry:
        what = "copy synthesis, " if str(entry.get("system", "")).endswith(COPY_SUFFIX) else ""
        return f"scored best on {split}: {what}MCD {entry['mcd_db']:.2f} dB"
    return f"scored best on {split}: duration RMSE {entry['duration_rmse_frames']:.2f} frames"
