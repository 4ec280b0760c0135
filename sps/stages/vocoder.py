"""Recipe stages for neural vocoders: ``train-vocoder`` and ``vocode`` (any vocoder of the protocol).

Config (``conf/wavenet.yaml``, :class:`VocoderConfig`)::

    vocoder: wavenet_lpc        # registry name (sps.vocoders.VOCODERS; see VOCODER_NAMES)
    name: wavenet               # models/<name>, synth/<name>_copy (default: vocoder)
    model: {...}                # keyword arguments of the vocoder class (checked), e.g.
                                # preemphasis: 0.85 (the one place pre-emphasis is set)
    train: {segment_frames: 40, batch_size: 8, max_steps: 2000, ...}   # + sps.train.TrainConfig
    vocode:
      splits: [eval]
      acoustic_models: null     # synth/<m>/<split>/*.npy to vocode (null: every one present)
      batch_size: 4             # utterances per generate() call
      temperature: 1.0
      seed: 0
      device: null              # null: cuda if available
      max_utts: null
      metrics: true
      generate: {}              # extra keyword arguments of generate() (e.g. backend: native)

Conditioning (:mod:`sps.vocoders.conditioning`): the static columns of ``out_acoustic``
(``[mgc | lf0 | vuv | bap]``), normalised with the mean/std of those columns in
``stats/out_acoustic.npz``; one frame is ``hop_length`` samples.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from sps.config import bind, bind_kwargs
from sps.io import atomic_path, load_array, write_wav
from sps.stages.datasets import SegmentDataset, collate_segments, natural_utterances
from sps.stages.best import best_name
from sps.stages.evaluate import found_systems, write_system_metrics
from sps.stages.experiment import Experiment, check_names
from sps.stages.monitor import AudioSamples
from sps.stages.runner import StageContext, StageFailed, StageSummary, select_shard
from sps.stages.stamps import Stamps, digest, file_digest, files_digest
from sps.stages.train import current_run
from sps.synthesis.vocoding import VocoderRunner
from sps.train import TrainConfig, checkpoints, fit, load_checkpoint, read_checkpoint, seed_everything, weights_path
from sps.vocoders import build_vocoder, get_vocoder, legacy_options
from sps.vocoders.conditioning import Conditioning
from sps.vocoders.pruning import PruningConfig, pruning_hook

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VocoderTrainConfig(TrainConfig):
    """Training options of a vocoder: :class:`~sps.train.TrainConfig` plus the segment length."""
    segment_frames: int = 40      # teacher-forced segments of this many frames
    bucket: bool = False          # segments have one length
    prune: PruningConfig = field(default_factory=PruningConfig)   # gradual block pruning (WaveRNN)
    #: conditioning: natural features, or the acoustic model's generated with natural durations
    #: ("ground-truth aligned"; stage 7's synthesis of the train and dev splits, natural durations)
    features: Literal["natural", "generated"] = "natural"
    acoustic_model: str | None = None   # features: generated: models/<name> (None: eval/best.json's)
    cond_noise: float = 0.0             # std of Gaussian noise on the (normalised) training conditioning

    def __post_init__(self):
        super().__post_init__()
        if not self.cond_noise >= 0:
            raise ValueError(f"train.cond_noise must be >= 0, got {self.cond_noise}")


@dataclass(frozen=True)
class VocodeConfig:
    """Section ``vocode``."""
    splits: tuple[str, ...] = ("eval",)
    acoustic_models: tuple[str, ...] | None = None   # synth/<m>/<split>/*.npy to vocode (None: all)
    batch_size: int = 4                               # utterances per generate() call
    temperature: float = 1.0
    seed: int = 0
    device: str | None = None                         # None: cuda if available
    max_utts: int | None = None
    metrics: bool = True
    generate: dict = field(default_factory=dict)      # keyword arguments of the vocoder's generate()

    def __post_init__(self):
        check_names(splits=self.splits, acoustic_models=self.acoustic_models)
        if self.batch_size < 1 or (self.max_utts is not None and self.max_utts < 1):
            raise ValueError("batch_size must be >= 1 and max_utts >= 1 or null")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


@dataclass(frozen=True)
class VocoderConfig:
    """Keys of ``conf/wavenet.yaml``, ``conf/wavernn.yaml`` ..."""
    vocoder: str = ""                                 # registry name (required)
    name: str | None = None                           # models/<name> (default: the vocoder)
    model: dict = field(default_factory=dict)         # keyword arguments of the vocoder class
    init_from: str | None = None                      # start from these weights (file, or models/<name>)
    train: VocoderTrainConfig = field(default_factory=VocoderTrainConfig)
    vocode: VocodeConfig = field(default_factory=VocodeConfig)

    def __post_init__(self):
        check_names(name=self.name)
        if not self.vocoder:
            raise ValueError("needs a 'vocoder' key (one of the sps.vocoders.VOCODERS names)")
        get_vocoder(self.vocoder)  # unknown names fail here

    @property
    def model_name(self) -> str:
        return self.name or self.vocoder


def vocoder_config(config: dict) -> VocoderConfig:
    """The checked config; the ``model`` and ``vocode.generate`` sections are bound to the
    vocoder's constructor and ``generate`` keyword arguments."""
    if "preemphasis" in config:
        raise ValueError("'preemphasis' is an option of the model now: set model.preemphasis "
                         "(the one place for every vocoder)")
    cfg = bind(VocoderConfig, config, "vocoder")
    cls = get_vocoder(cfg.vocoder)
    bind_kwargs(cls, cfg.model, f"{cfg.vocoder}.model", skip=("cond_dim",))
    bind_kwargs(cls.generate, cfg.vocode.generate, "vocode.generate",
                skip=("cond", "lengths", "temperature", "generator"))
    return cfg


def make_vocoder(cfg: VocoderConfig, cond: Conditioning):
    """The vocoder of ``cfg`` for ``cond``: hop length (and, for vocoders that read the
    features, their layout) from the spec; the conditioning statistics set."""
    model = dict(cfg.model)
    model.setdefault("hop_length", cond.hop_length)
    if int(model["hop_length"]) != cond.hop_length:
        raise ValueError(f"model.hop_length {model['hop_length']} != {cond.hop_length} samples per "
                         f"frame of dump/out_acoustic.json")
    if get_vocoder(cfg.vocoder).reads_features:
        model.setdefault("features", cond.layout())
    vocoder = build_vocoder(cfg.vocoder, model, cond.dim)
    vocoder.set_conditioning(cond.mean, cond.std)
    return vocoder, model


def resolve_init(exp: Experiment, init_from: str) -> Path:
    """``init_from`` as a file or directory: a path as given (relative to the working
    directory), else the experiment's ``models/<init_from>``."""
    path = Path(init_from).expanduser()
    if path.exists():
        return path
    if exp.model_dir(init_from).exists():
        return exp.model_dir(init_from)
    raise FileNotFoundError(f"init_from {init_from}: no such file, directory or model in {exp.root / 'models'}")


def init_weights(model, path: Path, cond: Conditioning) -> None:
    """Load the weights of ``path`` (a checkpoint, a model directory or an exported
    ``.pt`` of :func:`export_weights`) into ``model``; the experiment's conditioning
    statistics are set again afterwards. A different architecture is an error naming
    the first differing tensor."""
    state = load_checkpoint(path)["model"]
    own = model.state_dict()
    for key in sorted(set(own) | set(state)):
        if key not in own or key not in state or own[key].shape != state[key].shape:
            have = tuple(own[key].shape) if key in own else "missing"
            got = tuple(state[key].shape) if key in state else "missing"
            raise ValueError(f"init_from {path}: a different architecture (tensor {key}: model {have}, "
                             f"file {got}); the model section must match the one it was trained with")
    model.load_state_dict(state)
    model.set_conditioning(cond.mean, cond.std)
    logger.info("initialised from %s", path)


def export_weights(model_dir: Path, out: Path) -> Path:
    """Write the weights and config of a trained vocoder (``best.pt``) as a small
    self-contained file (tensors and plain types: no optimizer or RNG state), atomically."""
    import yaml
    ckpt = load_checkpoint(model_dir)
    meta = yaml.safe_load((model_dir / "config.yaml").read_text())
    payload = {"model": {k: v.detach().clone() for k, v in ckpt["model"].items()},
               "metadata": {k: meta[k] for k in ("vocoder", "model", "cond_dim", "preemphasis") if k in meta},
               "step": int((ckpt.get("state") or {}).get("step", 0))}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out


def export(ctx: StageContext) -> dict:
    """Stage ``export-vocoder``: ``models/<name>`` -> one weights file (``--out``)."""
    config = dict(ctx.config)
    out = config.pop("out", None)
    cfg = vocoder_config(config)
    model_dir = ctx.exp.model_dir(cfg.model_name)
    path = export_weights(model_dir, Path(out) if out else model_dir / f"{cfg.model_name}.pt")
    print(f"export-vocoder: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return {"path": str(path)}


def loss_step(model, batch) -> torch.Tensor:
    """``step_fn`` for :func:`sps.train.fit`: the vocoder's teacher-forced loss."""
    return model.loss(batch["wav"], batch["cond"])


def generated_features(exp: Experiment, tcfg: VocoderTrainConfig) -> dict[str, Path]:
    """``{split: synth/<acoustic model>/<split>}`` of the train and dev splits for
    ``features: generated`` (``{}`` for natural features). The synth stage makes them with
    natural durations (``sps synth splits=[train,dev]``); a split it has not synthesized is
    an error giving that command."""
    if tcfg.features == "natural":
        return {}
    model = tcfg.acoustic_model
    if model is None:
        model, why = best_name(exp, "acoustic_model")
        print(f"train-vocoder: generated features of {model} ({why})")
    dirs = {}
    for split in ("train", "dev"):
        if not exp.list_path(split).exists():
            continue
        info = exp.synth_info(model, split)
        if info.get("durations") != "oracle" or info.get("acoustic_model") != model:
            raise FileNotFoundError(f"{exp.synth_dir(model, split) / 'synth.json'}: no {split} synthesis of {model} "
                                    f"with natural durations; run: sps synth --exp-dir {exp.root} "
                                    f"acoustic_model={model} splits=[train,dev]")
        dirs[split] = exp.synth_dir(model, split)
    return dirs


def train(ctx: StageContext) -> dict:
    """Train the vocoder on the train split (``dev`` validates): natural features, or with
    ``train.features: generated`` the acoustic model's (ground-truth aligned, :func:`generated_features`).

    Resumes from the latest checkpoint of ``models/<name>`` unless ``--force``.
    """
    cfg = vocoder_config(ctx.config)
    exp = ctx.exp
    if not get_vocoder(cfg.vocoder).trainable:
        raise ValueError(f"vocoder {cfg.vocoder} has nothing to train: run 'sps vocode' with this config")
    cond = exp.conditioning()
    seed_everything(cfg.train.seed)   # the initial weights follow the seed
    model, model_cfg = make_vocoder(cfg, cond)
    if cfg.init_from:
        init_weights(model, resolve_init(exp, cfg.init_from), cond)
    model.observe_corpus(natural_utterances(exp, "train", cond))   # e.g. the LPC vocoders' excitation colour
    # a vocoder with context frames sees them before every segment (state and history warm-up)
    frames = cfg.train.segment_frames + int(model.context_frames)
    emphasis = model.target_preemphasis     # the part of the model's pre-emphasis the data carries
    features = generated_features(exp, cfg.train)
    train_set = SegmentDataset(exp, "train", cond, frames, train=True, preemphasis=emphasis,
                               features=features.get("train"), cond_noise=cfg.train.cond_noise)
    if len(train_set) == 0:
        raise ValueError(f"{exp.list_path('train')}: no utterance with dumped wav and out_acoustic")
    valid_set = None
    if exp.list_path("dev").exists():
        valid_set = SegmentDataset(exp, "dev", cond, frames, train=False, preemphasis=emphasis,
                                   features=features.get("dev")) or None
    data = digest({"train": train_set.digest, "valid": valid_set.digest if valid_set else None,
                   "init_from": file_digest(weights_path(resolve_init(exp, cfg.init_from))) if cfg.init_from else None})
    metadata = {"vocoder": cfg.vocoder, "model": model_cfg, "cond_dim": cond.dim, "data_digest": data}
    out_dir = exp.model_dir(cfg.model_name)
    logger.info("training %s (%d parameters) on %d utterances -> %s", cfg.vocoder,
                sum(p.numel() for p in model.parameters()), len(train_set), out_dir)
    hook = pruning_hook(model, cfg.train.prune)
    if hook is not None:
        logger.info("pruning %s to %.0f %% zero %d x %d blocks over steps %d..%d", ", ".join(hook.params),
                    100 * hook.target, *hook.block, hook.start, hook.end)
    resume = not ctx.force and current_run(out_dir, data)
    hooks = [hook] if hook else []
    samples = AudioSamples.from_experiment(exp, cond, emphasis)   # TensorBoard audio at validations
    if samples is not None:
        hooks.append(samples)
    summary = fit(model, loss_step, train_set, valid_set, out_dir, cfg.train, collate_fn=collate_segments,
                  resume=resume, metadata=metadata, hooks=hooks)
    complete_checkpoints(model, out_dir)
    return summary


def complete_checkpoints(model, out_dir: Path) -> None:
    """Checkpoints written before the model had a buffer (an LPC vocoder's corpus colour) get
    the value this run measured; their weights stay as they are. Re-running the stage on a
    finished model is how an older one gains its colour."""
    state = model.state_dict()
    for path in [out_dir / "best.pt", *checkpoints(out_dir)]:
        if not path.exists():
            continue
        ckpt = read_checkpoint(path)
        missing = {k: v for k, v in state.items() if k not in ckpt["model"]}
        if missing:
            ckpt["model"].update(missing)
            with atomic_path(path) as tmp:
                torch.save(ckpt, tmp)
            logger.info("%s: added %s", path, ", ".join(missing))


def load_vocoder(exp: Experiment, name: str, cond: Conditioning, device: torch.device):
    """Rebuild the vocoder of ``models/<name>`` from its ``config.yaml`` and load ``best.pt``."""
    saved = exp.model_config(name)
    if int(saved["cond_dim"]) != cond.dim:
        raise ValueError(f"{exp.model_dir(name) / 'config.yaml'}: trained on {saved['cond_dim']} conditioning "
                         f"features, the experiment has {cond.dim}")
    model = build_vocoder(saved["vocoder"], legacy_options(saved), cond.dim)
    load_checkpoint(exp.model_dir(name), model)
    return model.to(device).eval()


def _vocode_set(model, jobs: list[tuple[str, Path, Path]], cond: Conditioning, vcfg: VocodeConfig,
                summary: StageSummary, name: str) -> list[str]:
    """Generate ``out`` wavs for (utt, features path, out path) jobs in length-sorted batches,
    through the one vocoding path of ``sps speak`` (:class:`~sps.synthesis.VocoderRunner`):
    every utterance draws from its own generator seeded with ``vocode.seed``, so a wav does
    not depend on the batch, the shard or the other utterances, and a voice packed from the
    experiment gives the same draws."""
    runner = VocoderRunner(name, cond.spec, model=model, conditioning=cond, temperature=vcfg.temperature,
                           generate=vcfg.generate)
    loaded = []
    for utt, feat_path, out_path in jobs:     # (a non-finite file fails alone, named, not its batch)
        try:
            feats = load_array(feat_path)
            loaded.append((utt, feats, len(cond(feats, feat_path)), out_path))
        except (ValueError, FileNotFoundError) as err:
            summary.failed[utt] = str(err)
            logger.error("%s: %s", utt, err)
    loaded.sort(key=lambda item: item[2])
    done, bs = [], max(1, vcfg.batch_size)
    for i in range(0, len(loaded), bs):
        group = loaded[i:i + bs]
        try:
            wavs = runner.waveforms([feats for _, feats, _, _ in group], seed=vcfg.seed, batch_size=bs)
        except (ValueError, RuntimeError) as err:
            for utt, _, _, _ in group:
                summary.failed[utt] = f"{type(err).__name__}: {err}"
            logger.error("generation failed for %s: %s", [u for u, _, _, _ in group], err)
            continue
        for (utt, _, _, out_path), wav in zip(group, wavs):
            write_wav(out_path, wav, cond.sample_rate)
            summary.ok += 1
            done.append(utt)
    return done


def vocode(ctx: StageContext) -> dict:
    """Copy synthesis of natural features and vocoding of acoustic models' features.

    For each split in ``vocode.splits``: natural ``dump/<split>/out_acoustic`` ->
    ``synth/<name>_copy/<split>/<utt>.wav``; every ``synth/<m>/<split>/<utt>.npy`` of the
    acoustic models ``vocode.acoustic_models`` (null: all present) ->
    ``synth/<m>_<name>/<split>/<utt>.wav``; then ``eval/<out>/<split>/metrics.json``.
    Wavs whose record (``synth/<out>/<split>/.stamps/``) shows them made from the same
    features, model and settings are kept unless ``--force``; stale ones are redone. An
    utterance whose features are missing, unreadable or non-finite fails alone, named;
    the stage fails (exit status 1) when every utterance of an output failed or more
    than ``--max-failed`` of them.
    """
    cfg = vocoder_config(ctx.config)
    exp, vcfg, name = ctx.exp, cfg.vocode, cfg.model_name
    device = torch.device(vcfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cond = exp.conditioning()
    trainable = get_vocoder(cfg.vocoder).trainable
    if trainable:
        model = load_vocoder(exp, name, cond, device)
    else:                                      # a classical vocoder: built from the config
        model = make_vocoder(cfg, cond)[0].to(device).eval()
    setup = {"model": files_digest([exp.model_dir(name) / "config.yaml", weights_path(exp.model_dir(name))],
                                   exp.root) if trainable else digest([cfg.vocoder, cfg.model]),
             "cond": digest([cond.mean.tolist(), cond.std.tolist()]), "specs": exp.spec_digests(["out_acoustic"]),
             "generate": [vcfg.temperature, vcfg.seed, vcfg.generate, "per-utterance draws"]}
    results, failures = {}, []
    for split in vcfg.splits:
        utts = select_shard(exp.utterances(split), ctx.shard)
        if vcfg.max_utts:
            utts = utts[:vcfg.max_utts]
        sources = {f"{name}_copy": exp.dump_dir / split / "out_acoustic"}
        models = vcfg.acoustic_models
        if models is None:
            models = [m for m in found_systems(exp, split) if any(exp.synth_dir(m, split).glob("*.npy"))]
        for m in models:
            sources[f"{m}_{name}"] = exp.synth_dir(m, split)
        for out_name, src in sources.items():
            out_dir = exp.synth_dir(out_name, split)
            summary = StageSummary(desc=f"vocode {out_name}/{split}")
            stamps = Stamps(exp.root, exp.stamp_dir("vocode", split, out_name),
                            outputs=lambda utt, d=out_dir: [d / f"{utt}.wav"],
                            key=lambda utt, s=src: digest({**setup, "features": file_digest(s / f"{utt}.npy")}))
            jobs, keys, stale = [], {}, set()
            absent = [u for u in utts if not (src / f"{u}.npy").exists()]
            if absent and out_name != f"{name}_copy":     # the acoustic model did not synthesize them
                logger.info("vocode %s/%s: %d utterances have no features in %s (e.g. %s): left out", out_name,
                            split, len(absent), src, absent[0])
            for utt in utts:
                state, keys[utt] = stamps.state(utt)
                if state == "done" and not ctx.force:
                    summary.skipped += 1
                elif utt not in absent:
                    jobs.append((utt, src / f"{utt}.npy", out_dir / f"{utt}.wav"))
                    if state == "stale" and not ctx.force:
                        stale.add(utt)
                elif out_name == f"{name}_copy":
                    summary.failed[utt] = f"{src / (utt + '.npy')}: features not found"
            for utt in _vocode_set(model, jobs, cond, vcfg, summary, name):
                stamps.write(utt, keys[utt])
                summary.stale += utt in stale
            for utt in summary.failed:
                stamps.forget(utt)
            (logger.warning if summary.failed else logger.info)("%s", summary)
            print(str(summary).splitlines()[0], file=sys.stderr)
            total = summary.ok + summary.skipped + len(summary.failed)
            if summary.failed and (not summary.ok + summary.skipped or len(summary.failed) > ctx.max_failed * total):
                utt, msg = next(iter(sorted(summary.failed.items())))
                failures.append(f"{out_name}/{split}: {len(summary.failed)} of {total} failed (first: {utt}: {msg})")
            if vcfg.metrics and summary.ok + summary.skipped:
                results[f"{out_name}/{split}"] = write_system_metrics(exp, out_name, split, source="audio")
    if failures:
        raise StageFailed(f"vocode: {'; '.join(failures)} (more than --max-failed {ctx.max_failed:g})")
    return results
