"""Recipe stage ``sps train``: a duration or acoustic model, MSE or MGE -> ``models/<name>/``.

Config (``conf/acoustic.yaml`` etc.)::

    name: acoustic_dnn       # models/<name>
    kind: acoustic           # acoustic | duration
    loss: mse                # mse | mge (acoustic only)
    predict_variance: false  # model also outputs log-variances (Gaussian NLL training)
    variance: global         # mge: "global" (std^2 of the train data) | "predicted"
    init_from: null          # mge fine-tuning: start from models/<init_from> (its architecture)
    model: {type: dnn, hidden_dim: 256, num_layers: 3, ...}   # sps.models.MODEL_DEFAULTS
    train: {batch_size: 16, lr: 1e-3, epochs: 20, ...}        # sps.train.DEFAULTS

A finished model directory (``done.json``) is skipped unless ``--force``; an
interrupted one resumes exactly from its latest checkpoint.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sps.models.data import FeatureDataset, Normalizer, collate
from sps.models.losses import gaussian_nll, masked_mse
from sps.models.nets import MODEL_DEFAULTS, build_model

logger = logging.getLogger(__name__)

KINDS = {"acoustic": ("in_acoustic", "out_acoustic"), "duration": ("in_duration", "out_duration")}
STAGE_DEFAULTS = {"name": None, "kind": "acoustic", "loss": "mse", "predict_variance": False,
                  "variance": "global", "init_from": None, "train_split": "train", "valid_split": "dev"}


def stage_config(config: dict) -> dict:
    """Stage options over :data:`STAGE_DEFAULTS`, checked."""
    c = {**STAGE_DEFAULTS, **{k: v for k, v in config.items() if k in STAGE_DEFAULTS}}
    if c["kind"] not in KINDS:
        raise ValueError(f"kind must be 'acoustic' or 'duration', got {c['kind']!r}")
    if c["loss"] not in ("mse", "mge"):
        raise ValueError(f"loss must be 'mse' or 'mge', got {c['loss']!r}")
    if c["loss"] == "mge" and c["kind"] != "acoustic":
        raise ValueError("loss 'mge' applies to acoustic models only")
    if c["variance"] not in ("global", "predicted"):
        raise ValueError(f"variance must be 'global' or 'predicted', got {c['variance']!r}")
    if c["name"] is None:
        c["name"] = f"{c['kind']}_{config.get('model', {}).get('type', 'dnn')}_{c['loss']}"
    return c


def split_output(out: torch.Tensor, predict_variance: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Network output -> (mean [shape=(B, T, D)], log-variance or None), normalised domain."""
    if not predict_variance:
        return out, None
    d = out.shape[-1] // 2
    return out[..., :d], out[..., d:]


def make_step_fn(c: dict, norm: Normalizer, spec: dict | None = None) -> Callable[[nn.Module, dict], torch.Tensor]:
    """``step_fn(model, batch) -> loss`` for :func:`sps.train.fit`.

    * ``mse``: masked MSE of the standardised outputs (Gaussian NLL when the model
      predicts variances).
    * ``mge``: the means are de-normalised, turned into static trajectories by the
      differentiable MLPG with the global variances (``std^2`` of the train data)
      or the predicted ones, and compared with the natural static features
      (:func:`sps.mlpg.mge.mge_loss`).
    """
    pv = bool(c["predict_variance"])
    if c["loss"] == "mse":
        def step_mse(model: nn.Module, batch: dict) -> torch.Tensor:
            mean, log_var = split_output(model(batch["x"], batch["lengths"]), pv)
            if log_var is None:
                return masked_mse(mean, batch["y"], batch["lengths"])
            return gaussian_nll(mean, log_var, batch["y"], batch["lengths"])
        return step_mse

    from sps.mlpg.mge import mge_loss, static_columns
    if spec is None:
        raise ValueError("MGE training needs the stream spec dump/out_acoustic.json")
    if c["variance"] == "predicted" and not pv:
        raise ValueError("variance: predicted needs a model trained with predict_variance: true")
    out_mean = torch.as_tensor(norm.out_mean, dtype=torch.float32)
    out_std = torch.as_tensor(norm.out_std, dtype=torch.float32)
    static = torch.as_tensor(static_columns(spec))

    def step_mge(model: nn.Module, batch: dict) -> torch.Tensor:
        mean, log_var = split_output(model(batch["x"], batch["lengths"]), pv)
        m, s = out_mean.to(mean.device), out_std.to(mean.device)
        cols = static.to(mean.device)
        target = (batch["y"].float() * s + m).index_select(-1, cols)  # natural statics
        var = s ** 2 if c["variance"] == "global" else torch.exp(log_var.float()) * s ** 2
        return mge_loss(mean.float(), target, var, spec, batch["lengths"], mean=m, std=s)
    return step_mge


def read_model_config(model_dir: str | os.PathLike) -> dict:
    import yaml
    path = Path(model_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: model config not found (train the model first)")
    return yaml.safe_load(path.read_text())


def load_model(model_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A trained model (``best.pt``, else the latest checkpoint) and its config, in eval mode."""
    from sps.train import load_checkpoint
    cfg = read_model_config(model_dir)
    model = build_model(cfg["model"], int(cfg["in_dim"]), int(cfg["net_out_dim"]))
    load_checkpoint(model_dir, model, map_location)
    return model.eval(), cfg


def train(ctx) -> None:
    """Stage ``train``: fit the model the config describes (see the module docstring)."""
    from sps.io import read_json, write_json
    from sps.train import fit, merge_defaults
    config = ctx.config
    c = stage_config(config)
    exp = Path(ctx.exp_dir)
    out_dir = exp / "models" / c["name"]
    if (out_dir / "done.json").exists() and not ctx.force:
        print(f"train: {out_dir} is complete (done.json); use --force to retrain")
        return
    in_kind, out_kind = KINDS[c["kind"]]
    norm = Normalizer.from_exp(exp, in_kind, out_kind)
    model_cfg = {**MODEL_DEFAULTS, **(config.get("model") or {})}
    init_state = None
    if c["init_from"]:
        init_dir = exp / "models" / str(c["init_from"])
        init_cfg = read_model_config(init_dir)
        if init_cfg.get("kind") != c["kind"]:
            raise ValueError(f"{init_dir}: is a {init_cfg.get('kind')} model, this config trains a {c['kind']} model")
        model_cfg = init_cfg["model"]  # fine-tuning keeps the architecture
        c["predict_variance"] = bool(init_cfg.get("predict_variance", False))
        from sps.train import load_checkpoint
        init_state = load_checkpoint(init_dir)["model"]
    net_out = norm.out_dim * (2 if c["predict_variance"] else 1)
    model = build_model(model_cfg, norm.in_dim, net_out)
    if init_state is not None:
        model.load_state_dict(init_state)
        logger.info("initialised from %s", c["init_from"])
    spec_path = exp / "dump" / f"{out_kind}.json"
    spec = read_json(spec_path) if spec_path.exists() else None
    train_set = FeatureDataset(exp, c["train_split"], in_kind, out_kind, norm)
    valid_set = FeatureDataset(exp, c["valid_split"], in_kind, out_kind, norm)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("%s: %s model, %d parameters, %d train / %d valid utterances", c["name"], model_cfg["type"],
                n_params, len(train_set), len(valid_set))
    cfg = {**merge_defaults(config.get("train")), **c, "model": model_cfg, "in_dim": norm.in_dim,
           "out_dim": norm.out_dim, "net_out_dim": net_out, "in_kind": in_kind, "out_kind": out_kind}
    resume = not ctx.force
    if ctx.force and out_dir.exists():  # a fresh run must not inherit stale files
        for p in [*out_dir.glob("checkpoint_*.pt"), out_dir / "best.pt", out_dir / "done.json"]:
            p.unlink(missing_ok=True)
    result = fit(model, make_step_fn(c, norm, spec), train_set, valid_set, out_dir, cfg,
                 collate_fn=collate, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(out_dir / "done.json", {**result, "parameters": n_params})
    print(f"train: {c['name']}: {result['step']} steps, best valid loss {result['best_valid']:.4f} -> {out_dir}")
