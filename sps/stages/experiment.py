"""The experiment directory: one object for its paths, specs, statistics and models.

Every stage reads and writes through :class:`Experiment`, so the on-disk contract
(DESIGN.md) lives in one place::

    data/{train,dev,eval}.list, wav.scp, lab.scp     stage 0
    dump/<split>/<kind>/<utt>.npy, dump/<kind>.json   features, linguistic
    stats/<kind>.npz                                  stats
    models/<name>/{config.yaml, best.pt, ...}         train, train-vocoder
    synth/<system>/<split>/<utt>.{wav,npy,png}        synth, vocode
    eval/<system>/<split>/metrics.json, report.html   eval, vocode, report
    eval/best.json                                    eval (the best-scored models)
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np
import yaml

from sps.features import FeatureConfig, Normalizer
from sps.io import check_id, read_json, read_list, read_scp
from sps.models import TrainedModel, build_model
from sps.spec import static_columns
from sps.stages.stamps import check_inputs, digest, files_digest
from sps.train import load_checkpoint, weights_path
from sps.vocoders.conditioning import Conditioning

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "eval")
#: file beside a system's utterances recording how they were synthesized
SYNTH_INFO = "synth.json"
#: the per-utterance files each data stage writes (dump/<split>/<kind>/<utt>.npy)
STAGE_KINDS = {"features": ("out_acoustic", "lf0_raw", "mel", "wav"),
               "linguistic": ("in_duration", "out_duration", "in_acoustic")}
#: the stages that make training data, in order: an utterance one of them rejects is left
#: out of every later stage
DATA_STAGES = ("features", "linguistic")


class Experiment:
    """An experiment directory (it need not exist yet).

    Parameters
    ----------
    root : path-like
        The directory (``--exp-dir``).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Experiment({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Experiment) and self.root == other.root

    def __hash__(self) -> int:
        return hash(self.root)

    # ---------------------------------------------------------------- paths
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def dump_dir(self) -> Path:
        return self.root / "dump"

    @property
    def stats_dir(self) -> Path:
        return self.root / "stats"

    def list_path(self, split: str) -> Path:
        return self.data_dir / f"{_name(split, 'split')}.list"

    def dump_path(self, split: str, kind: str, utt: str) -> Path:
        """``dump/<split>/<kind>/<utt>.npy``."""
        return self.dump_dir / _name(split, "split") / _name(kind, "feature kind") / f"{check_id(utt)}.npy"

    def spec_path(self, kind: str) -> Path:
        return self.dump_dir / f"{_name(kind, 'feature kind')}.json"

    def stats_path(self, kind: str) -> Path:
        return self.stats_dir / f"{_name(kind, 'feature kind')}.npz"

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / _name(name, "model name")

    def synth_dir(self, system: str, split: str) -> Path:
        return self.root / "synth" / _name(system, "system name") / _name(split, "split")

    def eval_dir(self, system: str, split: str) -> Path:
        return self.root / "eval" / _name(system, "system name") / _name(split, "split")

    def synth_info(self, system: str, split: str) -> dict:
        """The synth stage's record of how ``synth/<system>/<split>`` was made ({} if none)."""
        path = self.synth_dir(system, split) / SYNTH_INFO
        return read_json(path) if path.exists() else {}

    @property
    def best_path(self) -> Path:
        """``eval/best.json``: the models and vocoder the eval stage scored best."""
        return self.root / "eval" / "best.json"
    def stamp_dir(self, stage: str, split: str, system: str | None = None) -> Path:
        """Where a per-utterance stage records what made each utterance's outputs
        (:mod:`sps.stages.stamps`): ``dump/<split>/.stamps/<stage>/`` for the data
        stages, ``synth/<system>/<split>/.stamps/`` for a synthesized system."""
        if system is not None:
            return self.synth_dir(system, split) / ".stamps"
        return self.dump_dir / _name(split, "split") / ".stamps" / _name(stage, "stage")

    def spec_digests(self, kinds) -> dict[str, str]:
        """``kind -> digest`` of the stream specs ``dump/<kind>.json`` that exist."""
        return {k: digest(self.spec(k)) for k in kinds if self.spec_path(k).exists()}

    def check_current(self, split: str, kinds, utts) -> None:
        """``ValueError`` when a data file of ``kinds`` of one of ``utts`` was made with other
        stream settings than the spec files now say (an interrupted ``--force`` run of
        the stage that writes them, not rerun since)."""
        for stage, stage_kinds in STAGE_KINDS.items():
            wanted = [k for k in kinds if k in stage_kinds]
            specs = self.spec_digests(wanted)
            if not specs:
                continue
            stale = check_inputs(self.stamp_dir(stage, split), utts, specs, f"{stage} {split}")
            if stale:
                raise ValueError(f"{self.dump_dir / split}: {len(stale)} of {len(list(utts))} utterances' "
                                 f"{'/'.join(wanted)} were made with other settings than "
                                 f"{', '.join(str(self.spec_path(k)) for k in specs)} (e.g. {stale[0]}; an "
                                 f"interrupted --force run?): rerun the {stage} stage")

    # ---------------------------------------------------------------- contents
    def splits(self) -> list[str]:
        """The splits whose list exists, in the usual order."""
        return [s for s in SPLITS if self.list_path(s).exists()]

    def rejected_path(self, stage: str, shard: tuple[int, int] | None = None) -> Path:
        """Registry of the utterances ``stage`` rejected (one file per shard)."""
        suffix = "" if shard is None else f".{shard[0]}of{shard[1]}"
        return self.data_dir / "rejected" / f"{stage}{suffix}.txt"

    def rejected(self, before: str | None = None) -> dict[str, str]:
        """Utterances rejected by the data stages (``utt -> "stage: reason"``); with ``before``,
        only by the stages that run before it (:data:`DATA_STAGES`)."""
        stages = DATA_STAGES[:DATA_STAGES.index(before)] if before in DATA_STAGES else DATA_STAGES
        out: dict[str, str] = {}
        for stage in stages:
            for path in sorted((self.data_dir / "rejected").glob(f"{stage}*.txt")):
                for line in path.read_text().splitlines():
                    utt, _, reason = line.partition("\t")
                    if utt:
                        out.setdefault(utt, f"{stage}: {reason}")
        return out

    def utterances(self, split: str, stage: str | None = None) -> list[str]:
        """Utterance ids of ``split`` (``data/<split>.list``) that no earlier data stage
        rejected: the one source of truth of what takes part (``stage``: the stage
        asking; None: a stage after all data stages)."""
        path = self.list_path(split)
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found (run the prepare stage first)")
        rejected = self.rejected(before=stage)
        utts = read_list(path)
        if rejected:
            left = [u for u in utts if u in rejected]
            if left:
                logger.info("%s: %d utterances rejected by an earlier stage are left out (e.g. %s: %s)",
                            split, len(left), left[0], rejected[left[0]])
            utts = [u for u in utts if u not in rejected]
        return utts

    def scp(self, name: str) -> dict[str, str]:
        """``data/<name>.scp`` (``wav`` or ``lab``) as a dict utt -> path."""
        path = self.data_dir / f"{name}.scp"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found (run the prepare stage first)")
        return _read_scp(str(path), path.stat().st_mtime)

    def spec(self, kind: str = "out_acoustic") -> dict:
        """The stream spec ``dump/<kind>.json``."""
        path = self.spec_path(kind)
        if not path.exists():
            stage = "linguistic" if kind in ("in_acoustic", "in_duration", "out_duration") else "features"
            raise FileNotFoundError(f"{path}: stream spec not found (run the {stage} stage)")
        return read_json(path)

    def feature_config(self) -> FeatureConfig:
        """The analysis settings that made ``out_acoustic`` (for re-analysis of audio)."""
        return FeatureConfig.from_spec(self.spec("out_acoustic"))

    def stats(self, kind: str) -> dict[str, np.ndarray]:
        """``stats/<kind>.npz``: ``count``, ``mean``, ``std``, ``min``, ``max`` (float64)."""
        path = self.stats_path(kind)
        if not path.exists():
            raise FileNotFoundError(f"{path}: statistics not found (run the stats stage)")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: np.asarray(data[k], dtype=np.float64) for k in data.files}
        except Exception as err:  # noqa: BLE001 - zip, pickle and format errors alike
            raise ValueError(f"{path}: not a readable statistics file ({type(err).__name__}: "
                             f"{' '.join(str(err).split())}); rerun the stats stage") from None

    def normalizer(self, in_kind: str, out_kind: str) -> Normalizer:
        """Input min-max scaling and output standardisation from the statistics."""
        return Normalizer(self.stats(in_kind), self.stats(out_kind))

    def conditioning(self):
        """The neural vocoders' conditioning: normalised static acoustic columns."""
        spec = self.spec("out_acoustic")
        st = self.stats("out_acoustic")
        if st["mean"].shape[-1] != spec["dim"]:
            raise ValueError(f"{self.stats_path('out_acoustic')}: {st['mean'].shape[-1]} columns, "
                             f"the spec has {spec['dim']}")
        cols = static_columns(spec)
        return Conditioning(spec, st["mean"][cols], st["std"][cols])

    def load_model(self, name: str, map_location: str = "cpu") -> TrainedModel:
        """The trained duration/acoustic model ``models/<name>`` (``best.pt``, else the
        latest checkpoint) with the statistics it was trained with."""
        cfg = self.model_config(name)
        net = build_model(cfg["model"], int(cfg["in_dim"]), int(cfg["net_out_dim"]))
        load_checkpoint(self.model_dir(name), net, map_location)
        return TrainedModel(net, self.normalizer(cfg["in_kind"], cfg["out_kind"]),
                            bool(cfg.get("predict_variance", False)))

    def model_digest(self, name: str) -> str:
        """Digest of what a trained model's output depends on: its ``config.yaml``, the
        weights it loads (``best.pt``, else the latest checkpoint) and its statistics."""
        d = self.model_dir(name)
        cfg = self.model_config(name)
        stats = [self.stats_path(k) for k in (cfg.get("in_kind"), cfg.get("out_kind")) if k]
        return files_digest([d / "config.yaml", weights_path(d), *[p for p in stats if p.exists()]], self.root)

    def model_config(self, name: str) -> dict:
        """``models/<name>/config.yaml``."""
        path = self.model_dir(name) / "config.yaml"
        if not path.exists():
            raise FileNotFoundError(f"{path}: model config not found (train the model first)")
        try:
            cfg = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a readable model config ({type(err).__name__})") from None
        missing = [k for k in ("model", "in_dim", "net_out_dim", "in_kind", "out_kind")
                   if not isinstance(cfg, dict) or k not in cfg]
        if not isinstance(cfg, dict) or ("vocoder" not in cfg and missing):
            raise ValueError(f"{path}: not a model config (missing {', '.join(missing) or 'everything'}); "
                             "retrain the model")
        return cfg


def _name(value: str, what: str) -> str:
    """A name that becomes a path inside the experiment, checked like an utterance id."""
    return check_id(value, what, what)


def check_names(**names) -> None:
    """Config check: every given name (``key=value``; None and lists allowed) is a valid
    path component (:func:`sps.io.check_id`); the error names the key."""
    for key, value in names.items():
        for v in ([] if value is None else [value] if isinstance(value, str) else list(value)):
            check_id(v, key, "name")


@functools.lru_cache(maxsize=8)
def _read_scp(path: str, mtime: float) -> dict[str, str]:
    return read_scp(path)
