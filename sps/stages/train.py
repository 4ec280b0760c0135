"""Recipe stage ``sps train``: a duration or acoustic model, MSE or MGE -> ``models/<name>/``.

Config (``conf/acoustic.yaml`` etc.)::

    name: acoustic_dnn       # models/<name>
    kind: acoustic           # acoustic | duration
    loss: mse                # mse | mge (acoustic only)
    predict_variance: false  # model also outputs log-variances (Gaussian NLL training)
    variance: global         # mge: "global" (std^2 of the train data) | "predicted"
    init_from: null          # mge fine-tuning: start from models/<init_from> (its architecture)
    stream_weights: null     # acoustic: loss weight per stream, e.g. {lf0: 4, vuv: 4} (others 1)
    model: {type: dnn, hidden_dim: 256, num_layers: 3, ...}   # sps.models.ModelConfig
    train: {batch_size: 16, lr: 1e-3, epochs: 20, ...}        # sps.train.TrainConfig

A finished model directory (``done.json``) is skipped unless ``--force`` or stale; an
interrupted one resumes exactly from its newest readable checkpoint. ``config.yaml``
and ``done.json`` record a digest of the training data (the dump files of both splits,
the statistics, the specs, the ``init_from`` model): a model made from other data than
the experiment holds now is stale, and is trained afresh. ``--force``
validates the whole config and the data first, then sets the old run aside
(``models/<name>/.replaced``, deleted once the new run succeeds). The seed (``train.seed``)
seeds the weight initialisation too, so two runs with one seed are identical on CPU.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
import yaml
from torch import nn

from sps.config import bind, to_dict
from sps.features import Normalizer
from sps.io import write_json
from sps.mlpg import generate_streams, mge_loss
from sps.models import ModelConfig, build_model, gaussian_nll, masked_mse, split_output
from sps.spec import parse_spec, static_columns
from sps.stages.datasets import FeatureDataset, collate_pairs
from sps.stages.experiment import check_names
from sps.stages.monitor import ValidMetrics
from sps.stages.runner import StageContext
from sps.stages.stamps import digest
from sps.train import TrainConfig, fit, load_checkpoint, seed_everything

logger = logging.getLogger(__name__)

KINDS = {"acoustic": ("in_acoustic", "out_acoustic"), "duration": ("in_duration", "out_duration")}


@dataclass(frozen=True)
class TrainStageConfig:
    """Keys of ``conf/acoustic*.yaml`` and ``conf/duration.yaml``."""
    name: str | None = None                             # models/<name>; default <kind>_<type>_<loss>
    kind: Literal["acoustic", "duration"] = "acoustic"
    loss: Literal["mse", "mge"] = "mse"
    predict_variance: bool = False                      # also output log-variances (Gaussian NLL)
    variance: Literal["global", "predicted"] = "global"  # MGE: std^2 of the data, or predicted
    init_from: str | None = None                        # start from models/<init_from> (its architecture)
    #: acoustic: loss weight of each named stream (mgc, lf0, vuv, bap; unnamed ones 1);
    #: MSE/NLL weigh every column of the stream, MGE its static columns
    stream_weights: dict[str, float] | None = None
    train_split: str = "train"
    valid_split: str = "dev"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check_names(name=self.name, init_from=self.init_from, train_split=self.train_split,
                    valid_split=self.valid_split)
        if self.loss == "mge" and self.kind != "acoustic":
            raise ValueError("loss 'mge' applies to acoustic models only")
        if self.stream_weights is not None:
            if self.kind != "acoustic":
                raise ValueError("stream_weights apply to acoustic models only")
            for k, v in self.stream_weights.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                    raise ValueError(f"stream_weights.{k}: expected a number >= 0, got {v!r}")

    @property
    def model_name(self) -> str:
        return self.name or f"{self.kind}_{self.model.type}_{self.loss}"


def make_step_fn(c: TrainStageConfig, norm: Normalizer, spec: dict | None = None
                 ) -> Callable[[nn.Module, dict], torch.Tensor]:
    """``step_fn(model, batch) -> loss`` for :func:`sps.train.fit`.

    * ``mse``: masked MSE of the standardised outputs (Gaussian NLL when the model
      predicts variances).
    * ``mge``: the means are de-normalised, turned into static trajectories by the
      differentiable MLPG with the global variances (``std^2`` of the train data)
      or the predicted ones, and compared with the natural static features
      (:func:`sps.mlpg.mge_loss`).
    """
    pv = c.predict_variance
    weights = None if not c.stream_weights else column_weights(spec, c.stream_weights)
    if c.loss == "mse":
        def step_mse(model: nn.Module, batch: dict) -> torch.Tensor:
            mean, log_var = split_output(model(batch["x"], batch["lengths"]), pv)
            if log_var is None:
                return masked_mse(mean, batch["y"], batch["lengths"], weights)
            return gaussian_nll(mean, log_var, batch["y"], batch["lengths"], weights)
        return step_mse

    if spec is None:
        raise ValueError("MGE training needs the stream spec dump/out_acoustic.json")
    if c.variance == "predicted" and not pv:
        raise ValueError("variance: predicted needs a model trained with predict_variance: true")
    out_mean = torch.as_tensor(norm.out_mean, dtype=torch.float32)
    out_std = torch.as_tensor(norm.out_std, dtype=torch.float32)
    static = torch.as_tensor(static_columns(spec))

    def step_mge(model: nn.Module, batch: dict) -> torch.Tensor:
        mean, log_var = split_output(model(batch["x"], batch["lengths"]), pv)
        m, s = out_mean.to(mean.device), out_std.to(mean.device)
        cols = static.to(mean.device)
        target = (batch["y"].float() * s + m).index_select(-1, cols)  # natural statics
        var = s ** 2 if c.variance == "global" else torch.exp(log_var.float()) * s ** 2
        if weights is None:
            return mge_loss(mean.float(), target, var, spec, batch["lengths"], mean=m, std=s)
        # weighted: the same std-scaled error, each static column weighted (mean weight 1)
        gen = generate_streams(mean.float() * s + m, var, spec, batch["lengths"])
        return masked_mse(gen / s[cols], target / s[cols], batch["lengths"], static_w.to(mean.device))
    static_w = None if weights is None else weights[static]
    return step_mge


def column_weights(spec: dict | None, stream_weights: dict[str, float]) -> torch.Tensor:
    """Per-column loss weights [shape=(D,)] of ``out_acoustic`` from per-stream weights.

    Every column of a named stream (static and dynamic) gets its weight, the columns
    of other streams 1. A name that is not a stream of ``spec`` is an error.
    """
    if spec is None:
        raise ValueError("stream_weights need the stream spec dump/out_acoustic.json")
    _, streams = parse_spec(spec)
    names = {st.name for st in streams}
    unknown = sorted(set(stream_weights) - names)
    if unknown:
        raise ValueError(f"stream_weights: unknown stream(s) {unknown}; the streams are {sorted(names)}")
    w = torch.ones(int(spec["dim"]))
    for st in streams:
        w[st.start:st.start + st.static_dim * st.num_windows] = float(stream_weights.get(st.name, 1.0))
    return w


def current_run(out_dir, data_digest: str) -> bool:
    """Whether the run in ``out_dir`` (if any) was made from the data of ``data_digest``, so
    that it may be resumed or kept. A run made from other data (features redone, another
    corpus, a retrained ``init_from`` model) is stale: it is said so, and a fresh run
    replaces it (the old files are set aside until the new run succeeds)."""
    cfg_path = out_dir / "config.yaml"
    if not cfg_path.exists():
        return True
    try:
        recorded = (yaml.safe_load(cfg_path.read_text()) or {}).get("data_digest")
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
        recorded = None
    if recorded == data_digest:
        return True
    print(f"{out_dir} is stale (it was trained on other data than the experiment holds now, or its "
          "record is missing): training afresh", file=sys.stderr)
    return False


def train(ctx: StageContext) -> None:
    """Stage ``train``: fit the model the config describes (see the module docstring)."""
    c = bind(TrainStageConfig, ctx.config, "train")
    exp = ctx.exp
    name = c.model_name
    out_dir = exp.model_dir(name)
    in_kind, out_kind = KINDS[c.kind]
    norm = exp.normalizer(in_kind, out_kind)
    init_state = None
    if c.init_from:
        init_cfg = exp.model_config(c.init_from)
        if init_cfg.get("kind") != c.kind:
            raise ValueError(f"{exp.model_dir(c.init_from)}: is a {init_cfg.get('kind')} model, this config "
                             f"trains a {c.kind} model")
        # fine-tuning keeps the architecture and the output layout
        c = dataclasses.replace(c, model=bind(ModelConfig, init_cfg["model"], "model"),
                                predict_variance=bool(init_cfg.get("predict_variance", False)))
        init_state = load_checkpoint(exp.model_dir(c.init_from))["model"]
    net_out = norm.out_dim * (2 if c.predict_variance else 1)
    seed_everything(c.train.seed)   # the initial weights follow the seed
    model = build_model(c.model, norm.in_dim, net_out)
    if init_state is not None:
        model.load_state_dict(init_state)
        logger.info("initialised from %s", c.init_from)
    spec = exp.spec(out_kind) if exp.spec_path(out_kind).exists() else None
    train_set = FeatureDataset(exp, c.train_split, in_kind, out_kind, norm)
    valid_set = FeatureDataset(exp, c.valid_split, in_kind, out_kind, norm)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("%s: %s model, %d parameters, %d train / %d valid utterances", name, c.model.type,
                n_params, len(train_set), len(valid_set))
    metadata = {k: v for k, v in to_dict(c).items() if k != "train"}
    data = digest({"train": train_set.digest, "valid": valid_set.digest,
                   "init_from": exp.model_digest(c.init_from) if c.init_from else None})
    metadata.update(name=name, in_dim=norm.in_dim, out_dim=norm.out_dim, net_out_dim=net_out,
                    in_kind=in_kind, out_kind=out_kind, data_digest=data)
    resume = not ctx.force and current_run(out_dir, data)
    if resume and (out_dir / "done.json").exists():
        print(f"train: {out_dir} is complete (done.json, same data); use --force to retrain")
        return
    # everything above validated the run; a fresh one sets the old files aside only now
    step_fn = make_step_fn(c, norm, spec)
    # objective metrics at every validation (acoustic models: with the eval stage's streams)
    scored = c.kind == "duration" or (spec is not None and ValidMetrics.STREAMS <= {st.name for st in parse_spec(spec)[1]})
    hooks = [ValidMetrics(valid_set, c.kind, spec, c.predict_variance)] if scored and len(valid_set) else []
    result = fit(model, step_fn, train_set, valid_set, out_dir, c.train,
                 collate_fn=collate_pairs, resume=resume, metadata=metadata, hooks=hooks)
    if int(os.environ.get("RANK", "0")) == 0:
        if not (out_dir / "best.pt").exists():
            raise ValueError(f"{out_dir}: training ended without best.pt (the validation loss was never "
                             "finite); no done.json written")
        write_json(out_dir / "done.json", {**result, "parameters": n_params, "data_digest": data})
    print(f"train: {name}: {result['step']} steps, best valid loss {result['best_valid']:.4f} -> {out_dir}")
