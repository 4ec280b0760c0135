"""``sps pack``: an experiment's trained voice -> one voice file (:mod:`sps.synthesis.voicefile`).

Config (keys of :class:`PackConfig`; every key may be given as ``key=value``)::

    out: null               # the voice file (--out; default <exp>/<name>.voice.pt)
    name: null              # the voice's name (default: the experiment directory's name)
    acoustic_model: null    # models/<name> (null: the best-scored, eval/best.json)
    duration_model: null    # models/<name> (null: the best-scored)
    vocoders: null          # trained vocoders (models/<name>) or vocoder config files
                            # (conf/source_filter.yaml, conf/wavenet.yaml: their vocode
                            # settings too); null: every trained vocoder of the experiment
    default_vocoder: null   # null: the best-scored of world and the packed vocoders
    festival_voice: cmu_us_slt_arctic_hts
    postfilter: null        # null: as the best-scored acoustic system was made
    postfilter_beta: 1.4
    vuv_threshold: 0.5
    max_duration: null      # bounded synthesis (sps.synthesis): a predicted duration's upper
    max_frames: 60000       # bound (null: 2x the longest in training), frames per utterance

The question file (with its semantics) and the positional features are those recorded
in ``dump/in_acoustic.json``, as the synth stage reads them. The file holds the models'
weights and statistics, the stream spec, the vocoders' weights and settings, the
configs that made them (``models/*/config.yaml``, the dump specs) and the eval scores
of the packed models (mean and per utterance), so a voice can be checked against the
recipe that made it. ``sps synth --text`` builds the same sections in memory
(:func:`voice_sections`), so a packed voice speaks exactly like its experiment.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from sps.config import bind, load_config, to_dict
from sps.frontend import QUESTION_FILE_DIR, question_file
from sps.frontend.festival import check_voice
from sps.frontend.questions import DEFAULT_SEMANTICS
from sps.io import read_json
from sps.stages.best import best_name, describe_score, read_best
from sps.stages.experiment import Experiment, check_names
from sps.stages.linguistic import LEGACY_SEMANTICS
from sps.stages.runner import StageContext
from sps.stages.vocoder import VocodeConfig, load_vocoder, make_vocoder, vocoder_config
from sps.synthesis import MAX_FRAMES, Voice
from sps.synthesis.vocoding import WORLD
from sps.synthesis.voicefile import write_voice
from sps.vocoders import get_vocoder, legacy_options

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackConfig:
    """Keys of ``sps pack`` (see the module docstring)."""
    out: str | None = None
    name: str | None = None
    acoustic_model: str | None = None
    duration_model: str | None = None
    vocoders: tuple[str, ...] | None = None
    default_vocoder: str | None = None
    festival_voice: str = "cmu_us_slt_arctic_hts"
    postfilter: bool | None = None
    postfilter_beta: float = 1.4
    vuv_threshold: float = 0.5
    questions: str | None = None            # question file (None: the one in dump/in_acoustic.json)
    question_semantics: str | None = None   # None: as recorded
    subphone_features: str | None = None    # None: as recorded
    max_duration: int | None = None         # upper bound of a predicted duration (None: 2x the longest in training)
    max_frames: int = MAX_FRAMES            # per-utterance frame budget
    description: str | None = None

    def __post_init__(self):
        check_voice(self.festival_voice)
        check_names(acoustic_model=self.acoustic_model, duration_model=self.duration_model, name=self.name,
                    default_vocoder=self.default_vocoder)
        if self.max_duration is not None and self.max_duration < 1:
            raise ValueError(f"max_duration must be >= 1 frame or null, got {self.max_duration}")
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")


def question_setup(exp: Experiment, questions: str | None = None, semantics: str | None = None,
                   subphone: str | None = None) -> tuple[Path, str, str]:
    """(question file, semantics, positional features) of an experiment's linguistic
    features: as recorded in ``dump/in_acoustic.json`` unless given."""
    meta = exp.spec("in_acoustic") if exp.spec_path("in_acoustic").exists() else {}
    qfile = question_file(questions or _recorded_question_file(meta))
    # the semantics the linguistic stage used, so that text input gets the features the
    # models were trained on (specs from before the option: Merlin's rule)
    semantics = semantics or (meta.get("question_semantics", LEGACY_SEMANTICS) if meta else DEFAULT_SEMANTICS)
    return qfile, semantics, subphone or meta.get("subphone_features") or "auto"


def _recorded_question_file(meta: dict) -> str | None:
    """The question file a spec names; where that path is gone (the checkout moved), the
    shipped file with the recorded content (``question_file_sha1``)."""
    recorded = meta.get("question_file")
    if recorded is None or Path(recorded).exists() or not meta.get("question_file_sha1"):
        return recorded
    for shipped in sorted(QUESTION_FILE_DIR.glob("*.hed")):
        if hashlib.sha1(shipped.read_bytes()).hexdigest() == meta["question_file_sha1"]:
            return str(shipped)
    return recorded


def _tensors(state: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _plain(obj):
    """YAML/JSON data as plain types (tuples -> lists; numpy scalars -> Python)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def model_section(exp: Experiment, name: str) -> dict:
    """A duration/acoustic model as a voice-file section: its config, weights and the
    statistics of its input and output kinds (``stats/<kind>.npz``, every array)."""
    cfg = exp.model_config(name)
    trained = exp.load_model(name)
    stats = {side: {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in exp.stats(cfg[f"{side}_kind"]).items()}
             for side in ("in", "out")}
    return {"name": name, "config": _plain(cfg), "state_dict": _tensors(trained.net.state_dict()), "stats": stats}


def vocoder_section(exp: Experiment, ref: str, cond) -> tuple[str, dict]:
    """(name, section) of a vocoder: ``ref`` is a trained vocoder's name (``models/<ref>``)
    or a vocoder config file (a classical vocoder is built from it; a trained one is
    ``models/<its name>``, with the config's vocode settings)."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise FileNotFoundError(f"{path}: vocoder config not found")
        cfg = vocoder_config(load_config(path))
        name, vocode, config = cfg.model_name, cfg.vocode, _plain(to_dict(cfg))
        trainable = get_vocoder(cfg.vocoder).trainable
        if not trainable:
            model, model_cfg = make_vocoder(cfg, cond)
            return name, {"vocoder": cfg.vocoder, "model": _plain(model_cfg), "cond_dim": cond.dim,
                          "state_dict": _tensors(model.state_dict()),
                          "temperature": float(vocode.temperature), "generate": _plain(dict(vocode.generate)),
                          "source": path.name, "config": config}
    else:
        name, vocode, config = ref, VocodeConfig(), None
    if not exp.model_dir(name).exists():
        raise FileNotFoundError(f"{exp.model_dir(name)}: no trained vocoder {name!r} (run train-vocoder first)")
    saved = exp.model_config(name)
    if "vocoder" not in saved:
        raise ValueError(f"{exp.model_dir(name)}: is not a vocoder (no 'vocoder' key in its config.yaml)")
    model = load_vocoder(exp, name, cond, torch.device("cpu"))
    return name, {"vocoder": saved["vocoder"], "model": _plain(legacy_options(saved)), "cond_dim": cond.dim,
                  "state_dict": _tensors(model.state_dict()),
                  "temperature": float(vocode.temperature), "generate": _plain(dict(vocode.generate)),
                  "source": f"models/{name}", "config": config or _plain(saved)}


def _dump_spec(exp: Experiment, kind: str) -> dict:
    """A dump spec as the voice file records it: the question file by its name (its text is
    packed in the voice section; the path was the packing machine's)."""
    spec = _plain(exp.spec(kind))
    if spec.get("question_file"):
        spec["question_file"] = Path(spec["question_file"]).name
    return spec


def trained_vocoders(exp: Experiment) -> list[str]:
    """Names of the trained vocoders of an experiment (``models/*`` with a ``vocoder`` key and weights)."""
    out = []
    for cfg in sorted(exp.root.glob("models/*/config.yaml")):
        meta = yaml.safe_load(cfg.read_text()) or {}
        if "vocoder" in meta and ((cfg.parent / "best.pt").exists() or any(cfg.parent.glob("checkpoint_*.pt"))):
            out.append(cfg.parent.name)
    return out


def _metrics(exp: Experiment, system: str, split: str) -> dict | None:
    if not system or not (exp.eval_dir(system, split) / "metrics.json").exists():
        return None
    path = exp.eval_dir(system, split) / "metrics.json"
    m = read_json(path)
    keep = ("mcd_db", "bap_db", "f0_rmse_hz", "f0_corr", "vuv_error_pct", "duration_rmse_frames")
    return _plain({"system": system, "alignment": m.get("alignment"), "mean": m.get("mean", {}),
                   "utterances": {u: {k: v[k] for k in keep if k in v} for u, v in m.get("utterances", {}).items()}})


def full_tts_system(exp: Experiment, acoustic: str, duration: str, split: str) -> str | None:
    """The system under ``synth/`` that synthesized ``split`` with these two models and
    predicted durations (the synth stage's ``synth.json``), if any."""
    for path in sorted(exp.root.glob(f"synth/*/{split}")):
        info = exp.synth_info(path.parent.name, split)
        if (info.get("durations") == "predicted" and info.get("acoustic_model") == acoustic
                and info.get("duration_model") == duration):
            return path.parent.name
    return None


def voice_sections(exp: Experiment, cfg: PackConfig) -> tuple[dict, list[str]]:
    """The sections of the voice file of ``exp`` (see :mod:`sps.synthesis.voicefile`) and
    the lines that say which models were chosen and why."""
    best = read_best(exp)
    split = best.get("split", "eval")
    chosen, lines, how = {}, [], {}
    for kind in ("acoustic_model", "duration_model"):
        named = getattr(cfg, kind)
        if named:
            chosen[kind], how[kind] = named, "named"
        else:
            chosen[kind], how[kind] = best_name(exp, kind)
        lines.append(f"{kind.replace('_', ' ')}: {chosen[kind]} ({how[kind]})")
    acoustic, duration = chosen["acoustic_model"], chosen["duration_model"]

    qfile, semantics, subphone = question_setup(exp, cfg.questions, cfg.question_semantics, cfg.subphone_features)
    spec = exp.spec("out_acoustic")
    cond = exp.conditioning()
    refs = list(cfg.vocoders) if cfg.vocoders is not None else trained_vocoders(exp)
    vocoders = {}
    for ref in refs:
        name, entry = vocoder_section(exp, ref, cond)
        if name == WORLD or name in vocoders:
            raise ValueError(f"vocoder name {name!r} is packed twice or clashes with WORLD")
        entry["vuv_threshold"] = float(cfg.vuv_threshold)
        vocoders[name] = entry

    scores = {name: e for name, e in (best.get("vocoders") or {}).items() if name in (WORLD, *vocoders)}
    if cfg.default_vocoder:
        default = cfg.default_vocoder
        how["vocoder"] = "named"
    elif scores:
        entry = min(scores.values(), key=lambda e: e["mcd_db"])
        default, how["vocoder"] = entry["name"], describe_score(entry, split)
    else:
        default, how["vocoder"] = WORLD, "no vocoder scored: WORLD"
    if default != WORLD and default not in vocoders:
        raise ValueError(f"default_vocoder {default!r} is not packed ({', '.join([WORLD, *vocoders])})")
    lines.append(f"vocoders: {', '.join([WORLD, *vocoders])}; default {default} ({how['vocoder']})")

    postfilter = cfg.postfilter
    if postfilter is None:
        postfilter = bool(((best.get("acoustic_models") or {}).get(acoustic) or {}).get("postfilter", False))
    score_rows = {"split": split, "acoustic": _metrics(exp, acoustic, split),
                  "full_tts": _metrics(exp, full_tts_system(exp, acoustic, duration, split) or "", split),
                  "duration": _metrics(exp, duration, split),
                  "vocoders": {n: _metrics(exp, e["system"], split) for n, e in scores.items()}}
    configs = {"acoustic": _plain(exp.model_config(acoustic)), "duration": _plain(exp.model_config(duration)),
               "vocoders": {n: e.pop("config") for n, e in vocoders.items()},
               "dump": {k: _dump_spec(exp, k) for k in ("in_acoustic", "in_duration", "out_acoustic")
                        if exp.spec_path(k).exists()}}
    init = configs["acoustic"].get("init_from")
    if init and exp.model_dir(init).exists():
        configs["acoustic_init"] = _plain(exp.model_config(init))
    voice = {"name": cfg.name or exp.root.resolve().name, "festival_voice": cfg.festival_voice,
             "sample_rate": int(spec["sample_rate"]), "spec": _plain(spec),
             "questions": {"name": qfile.name, "text": qfile.read_text(errors="replace"), "semantics": semantics},
             "subphone_features": subphone,
             "synthesis": {"postfilter": bool(postfilter), "postfilter_beta": float(cfg.postfilter_beta),
                           "vuv_threshold": float(cfg.vuv_threshold), "max_duration": cfg.max_duration,
                           "max_frames": int(cfg.max_frames)},
             "default_vocoder": default,
             "models": {"acoustic": acoustic, "duration": duration, "vocoders": list(vocoders)},
             "defaults": {"acoustic_model": how["acoustic_model"], "duration_model": how["duration_model"],
                          "vocoder": how["vocoder"], "postfilter_beta": float(cfg.postfilter_beta)},
             "scores": score_rows, "source": {"experiment": exp.root.resolve().name},
             "description": cfg.description or ""}
    sections = {"voice": voice, "duration": model_section(exp, duration), "acoustic": model_section(exp, acoustic),
                "conditioning": {"mean": torch.from_numpy(cond.mean.copy()), "std": torch.from_numpy(cond.std.copy())},
                "vocoders": vocoders, "configs": configs}
    return sections, lines


def experiment_voice(exp: Experiment, cfg) -> Voice:
    """The :class:`~sps.synthesis.Voice` of an experiment for a synth config
    (:class:`sps.stages.synth.SynthConfig`), built from the sections ``sps pack`` would
    write (:func:`voice_sections`), so it speaks exactly as the packed voice does. Models
    and vocoder not named are the best-scored (``eval/best.json``; the vocoder among WORLD
    and the trained ones); the choices are printed."""
    vocoders = [cfg.vocoder] if cfg.vocoder not in (None, WORLD) else []
    if cfg.vocoder is None and exp.best_path.exists():      # the best-scored vocoder, when trained
        vocoders = [v for v in trained_vocoders(exp) if v == (read_best(exp).get("vocoder") or {}).get("name")]
    pack = PackConfig(acoustic_model=cfg.acoustic_model, duration_model=cfg.duration_model, vocoders=tuple(vocoders),
                      default_vocoder=cfg.vocoder, festival_voice=cfg.voice,
                      postfilter=cfg.postfilter, postfilter_beta=cfg.postfilter_beta, vuv_threshold=cfg.vuv_threshold,
                      questions=cfg.questions, question_semantics=cfg.question_semantics,
                      subphone_features=cfg.subphone_features, max_duration=cfg.max_duration,
                      max_frames=cfg.max_frames)
    sections, lines = voice_sections(exp, pack)
    for line in lines:
        print(f"synth: {line}")
    return Voice.from_sections(sections, source=str(exp.root))


def run(ctx: StageContext) -> dict:
    """Stage entry point (``sps pack``)."""
    cfg = bind(PackConfig, ctx.config, "pack")
    exp = ctx.exp
    sections, lines = voice_sections(exp, cfg)
    for line in lines:
        print(f"pack: {line}")
    out = Path(cfg.out) if cfg.out else exp.root / f"{sections['voice']['name']}.voice.pt"
    write_voice(out, sections)
    params = sum(v.numel() for s in ("duration", "acoustic") for v in sections[s]["state_dict"].values())
    params += sum(v.numel() for e in sections["vocoders"].values() for v in e["state_dict"].values())
    print(f"pack: wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {params / 1e6:.2f} M parameters)")
    return {"path": str(out), "size": out.stat().st_size}


__all__ = ["PackConfig", "voice_sections", "experiment_voice", "question_setup", "trained_vocoders", "run"]
