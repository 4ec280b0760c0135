"""The generic training loop :func:`fit`.

One loop serves the duration and acoustic models (MSE and MGE) and the neural
vocoders. The caller supplies the model, a ``step_fn(model, batch) -> loss`` and two
datasets; the loop owns everything else: batching (length buckets), Adam with a
learning-rate schedule, gradient clipping, AMP on CUDA, DistributedDataParallel under
``torchrun``, validation, checkpoints, exact resume, JSONL log and loss curve.

Exact resume: a checkpoint holds the model, optimizer, scheduler, grad scaler, step,
epoch, the position inside the epoch and every RNG state (python, numpy, torch,
CUDA). The batch order of an epoch depends only on the seed and the epoch number
(:class:`sps.train.data.BucketBatchSampler`), and data loading never draws from the
global generators, so on CPU ``N`` steps in one go and ``N/2 + resume + N/2`` give
bit-identical parameters.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sps.train.data import BucketBatchSampler

logger = logging.getLogger(__name__)

#: training options and their defaults (``cfg`` may hold other keys: they are saved
#: to ``config.yaml`` untouched)
DEFAULTS: dict[str, Any] = {
    "batch_size": 16,
    "lr": 1e-3,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "epochs": 10,            # used when max_steps is None
    "max_steps": None,       # stop after this many optimizer steps
    "grad_clip": 1.0,        # max global gradient norm (None: no clipping)
    "lr_schedule": None,     # None | "noam" | "step" | "cosine"
    "warmup_steps": 0,       # linear warm-up (all schedules)
    "lr_step_size": 1000,    # "step": multiply by lr_gamma every lr_step_size steps
    "lr_gamma": 0.5,
    "lr_min_ratio": 0.01,    # "cosine": final lr / lr
    "seed": 0,
    "amp": True,             # mixed precision (CUDA only)
    "amp_dtype": "bfloat16", # "bfloat16" | "float16" (float16 uses a grad scaler)
    "num_workers": 0,
    "checkpoint_every": None,  # steps between checkpoint_<step>.pt (None: each epoch)
    "keep_checkpoints": 2,     # periodic checkpoints kept (best.pt is kept apart)
    "valid_every": None,       # steps between validations (None: each epoch)
    "log_every": 10,           # steps between train-loss log records
    "bucket": True,            # bucket batches by train_set.lengths when present
    "device": None,            # None: cuda if available else cpu
    "num_threads": None,       # CPU threads for torch during fit (None: leave torch's setting)
    "plot": True,              # write loss.png
}


# ----------------------------------------------------------------------------- helpers

def merge_defaults(cfg: dict | None) -> dict:
    """``cfg`` over :data:`DEFAULTS` (unknown keys are kept)."""
    out = dict(DEFAULTS)
    out.update(cfg or {})
    return out


def lr_lambda(cfg: dict, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at step ``s`` for ``cfg['lr_schedule']``."""
    kind, warm = cfg["lr_schedule"], int(cfg["warmup_steps"] or 0)

    def warmup(s: int) -> float:
        return min(1.0, (s + 1) / warm) if warm > 0 else 1.0

    if kind in (None, "none", "constant"):
        return warmup
    if kind == "noam":
        w = max(warm, 1)
        return lambda s: min((s + 1) / w, math.sqrt(w / (s + 1)))
    if kind == "step":
        size, gamma = int(cfg["lr_step_size"]), float(cfg["lr_gamma"])
        return lambda s: warmup(s) * gamma ** (s // size)
    if kind == "cosine":
        lo = float(cfg["lr_min_ratio"])

        def cosine(s: int) -> float:
            p = min(1.0, max(0, s - warm) / max(1, total_steps - warm))
            return warmup(s) * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * p)))
        return cosine
    raise ValueError(f"lr_schedule must be null, 'noam', 'step' or 'cosine', got {kind!r}")


def to_device(batch, device: torch.device):
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Periodic checkpoints ``checkpoint_<step>.pt`` of a model directory, oldest first."""
    paths = Path(out_dir).glob("checkpoint_*.pt")
    return sorted((p for p in paths if p.stem.split("_")[-1].isdigit()),
                  key=lambda p: int(p.stem.split("_")[-1]))


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint (``best.pt``, ``checkpoint_<step>.pt`` or a model directory,
    meaning its ``best.pt`` or else its latest checkpoint) and load the weights into
    ``model`` when given. Returns the checkpoint dict."""
    path = Path(path)
    if path.is_dir():
        cands = [path / "best.pt"] if (path / "best.pt").exists() else checkpoints(path)[-1:]
        if not cands:
            raise FileNotFoundError(f"{path}: no best.pt or checkpoint_<step>.pt in model directory")
        path = cands[0]
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if model is not None:
        model.load_state_dict(ckpt["model"])
    return ckpt


class _StepModule(nn.Module):
    """Puts ``step_fn`` inside ``forward`` so DDP sees (and syncs) every use of the model."""

    def __init__(self, model: nn.Module, step_fn: Callable):
        super().__init__()
        self.model, self.step_fn = model, step_fn

    def forward(self, batch):
        return self.step_fn(self.model, batch)


def _dist_setup(device_pref: str | None) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device_pref in (None, "cuda")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device(device_pref or "cpu")


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Train and validation loss against step from ``log.jsonl`` -> ``loss.png``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    train, valid = [], []
    for line in log_path.read_text().splitlines():
        rec = json.loads(line)
        if "train_loss" in rec:
            train.append((rec["step"], rec["train_loss"]))
        if "valid_loss" in rec:
            valid.append((rec["step"], rec["valid_loss"]))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for pts, label in ((train, "train"), (valid, "valid")):
        if pts:
            ax.plot(*zip(*pts), label=label, marker="o" if label == "valid" else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from sps.io import atomic_path
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------- fit

def fit(model: nn.Module, step_fn: Callable[[nn.Module, Any], torch.Tensor], train_set, valid_set,
        out_dir: str | os.PathLike, cfg: dict | None = None, *, collate_fn: Callable | None = None,
        resume: bool = False) -> dict:
    """Train ``model`` by minimising ``step_fn(model, batch)``.

    Parameters
    ----------
    model : nn.Module
        Moved to the training device; its trained weights stay in it.
    step_fn : callable
        ``step_fn(model, batch) -> loss`` (scalar tensor); used for training (model in
        train mode) and validation (eval mode, no grad). ``batch`` is what
        ``collate_fn`` returns, moved to the device.
    train_set, valid_set : Dataset
        Map-style datasets; ``train_set.lengths`` (frames per item), when present,
        enables length bucketing. ``valid_set`` may be None (no validation, best.pt
        follows the train loss of each epoch).
    out_dir : path-like
        Model directory: ``config.yaml``, ``checkpoint_<step>.pt``, ``best.pt``,
        ``log.jsonl``, ``loss.png``.
    cfg : dict
        Training options (:data:`DEFAULTS`); other keys are written to ``config.yaml``.
    collate_fn : callable
        List of items -> batch.
    resume : bool
        Continue from the latest ``checkpoint_<step>.pt`` in ``out_dir`` exactly
        (start afresh when there is none).

    Returns
    -------
    dict
        ``step``, ``epoch``, ``train_loss`` (mean over the last epoch or log window),
        ``valid_loss`` (last), ``best_valid``, ``best_path``, ``last_path``, ``epoch_times``.
    """
    cfg = merge_defaults(cfg)
    threads = torch.get_num_threads()
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    try:
        return _fit(model, step_fn, train_set, valid_set, Path(out_dir), cfg, collate_fn, resume)
    finally:
        torch.set_num_threads(threads)


def _fit(model, step_fn, train_set, valid_set, out_dir: Path, cfg: dict, collate_fn, resume: bool) -> dict:
    rank, world, device = _dist_setup(cfg["device"])
    main = rank == 0
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    log_path, cfg_path = out_dir / "log.jsonl", out_dir / "config.yaml"

    model.to(device)
    use_amp = bool(cfg["amp"]) and device.type == "cuda"
    amp_dtype = getattr(torch, cfg["amp_dtype"])
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=float(cfg["lr"]), betas=tuple(cfg["betas"]),
                                 weight_decay=float(cfg["weight_decay"]))

    lengths = getattr(train_set, "lengths", None) if cfg["bucket"] else None
    sampler = BucketBatchSampler(len(train_set), int(cfg["batch_size"]), lengths, shuffle=True,
                                 seed=int(cfg["seed"]), rank=rank, world_size=world)
    steps_per_epoch = len(sampler.batches(0))
    if steps_per_epoch == 0:
        raise ValueError("training set is empty")
    max_steps = int(cfg["max_steps"]) if cfg["max_steps"] else int(cfg["epochs"]) * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, max_steps))

    step, epoch, batch_in_epoch, best = 0, 0, 0, math.inf
    window, window_n, epoch_sum, epoch_n = 0.0, 0, 0.0, 0  # running loss sums (log, epoch mean)
    history: dict[str, list] = {"epoch_times": []}
    last = checkpoints(out_dir)[-1:] if resume else []
    if last:
        ckpt = torch.load(last[0], map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        best = ckpt["best_valid"]
        window, window_n, epoch_sum, epoch_n = ckpt["running"]
        set_rng_state(ckpt["rng"])
        logger.info("resumed from %s (step %d, epoch %d)", last[0], step, epoch)
        if main and log_path.exists():  # drop records written after the checkpoint
            keep = [l for l in log_path.read_text().splitlines() if json.loads(l)["step"] <= step]
            log_path.write_text("".join(k + "\n" for k in keep))
    else:
        if resume:
            logger.info("%s: no checkpoint to resume from, starting afresh", out_dir)
        seed_everything(int(cfg["seed"]) + rank)
        if main and log_path.exists():
            log_path.unlink()
    if main:
        import yaml
        from sps.io import write_text
        write_text(cfg_path, yaml.safe_dump(cfg, sort_keys=False))
    if world > 1:
        dist.barrier()

    wrapped: nn.Module = _StepModule(model, step_fn)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        wrapped = DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    # a private generator: creating DataLoader iterators must not consume global RNG
    loader_gen = torch.Generator().manual_seed(int(cfg["seed"]))
    nw = int(cfg["num_workers"])
    loader_kw = dict(collate_fn=collate_fn, num_workers=nw, generator=loader_gen,
                     pin_memory=device.type == "cuda", persistent_workers=False)
    train_loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, **loader_kw)
    valid_loader = None
    if valid_set is not None and len(valid_set) > 0:
        vsampler = BucketBatchSampler(len(valid_set), int(cfg["batch_size"]), getattr(valid_set, "lengths", None),
                                      shuffle=False, rank=rank, world_size=1)
        # validation batches are split over ranks by hand (no batch may be dropped)
        vbatches = vsampler.batches(0)[rank::world]
        valid_loader = torch.utils.data.DataLoader(valid_set, batch_sampler=vbatches, **loader_kw)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    def log(rec: dict) -> None:
        if main:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def validate() -> float:
        wrapped.eval()
        total, count = torch.zeros(2, dtype=torch.float64, device=device), 0
        with torch.no_grad():
            for batch in (valid_loader if valid_loader is not None else []):
                with autocast():
                    loss = wrapped(to_device(batch, device))
                total[0] += float(loss) * _batch_size(batch)
                total[1] += _batch_size(batch)
        if world > 1:
            dist.all_reduce(total)
        wrapped.train()
        return float(total[0] / total[1]) if total[1] > 0 else math.nan

    def save(name: str) -> Path:
        path = out_dir / name
        if main:
            from sps.io import atomic_path
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                     "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                     "best_valid": best, "rng": rng_state(), "config": cfg,
                     "running": [window, window_n, epoch_sum, epoch_n]}
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
        return path

    def prune() -> None:
        if main and int(cfg["keep_checkpoints"]) > 0:
            for p in checkpoints(out_dir)[:-int(cfg["keep_checkpoints"])]:
                p.unlink()

    wrapped.train()
    valid_loss, last_path = math.nan, None
    t_epoch = time.perf_counter()
    while step < max_steps:
        sampler.set_epoch(epoch, skip=batch_in_epoch)
        bar = tqdm(total=steps_per_epoch, initial=batch_in_epoch, desc=f"epoch {epoch + 1}",
                   unit="step", leave=False, disable=None if main else True, file=sys.stderr)
        for batch in train_loader:
            batch = to_device(batch, device)
            with autocast():
                loss = wrapped(batch)
            if not torch.isfinite(loss):
                raise ValueError(f"non-finite training loss {float(loss.detach())} at step {step + 1} (epoch {epoch + 1})")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg["grad_clip"]:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, float(cfg["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            batch_in_epoch += 1
            value = float(loss.detach())
            window += value
            window_n += 1
            epoch_sum += value
            epoch_n += 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if step % int(cfg["log_every"]) == 0 or step == max_steps:
                log({"step": step, "epoch": epoch + 1, "train_loss": window / window_n,
                     "lr": scheduler.get_last_lr()[0]})
                window, window_n = 0.0, 0
            end_of_epoch = batch_in_epoch >= steps_per_epoch
            if end_of_epoch:
                history["epoch_times"].append(time.perf_counter() - t_epoch)
                epoch, batch_in_epoch = epoch + 1, 0
            periodic_valid = cfg["valid_every"] and step % int(cfg["valid_every"]) == 0
            if periodic_valid or (not cfg["valid_every"] and end_of_epoch) or step == max_steps:
                valid_loss = validate() if valid_loader is not None else epoch_sum / max(epoch_n, 1)
                rec = {"step": step, "epoch": epoch + (0 if end_of_epoch else 1), "valid_loss": valid_loss,
                       "epoch_train_loss": epoch_sum / max(epoch_n, 1)}
                if end_of_epoch:
                    rec["epoch_time"] = history["epoch_times"][-1]
                log(rec)
                logger.info("step %d epoch %d: train %.4f valid %.4f", step, rec["epoch"],
                            rec["epoch_train_loss"], valid_loss)
                if valid_loss < best:
                    best = valid_loss
                    save("best.pt")
            if end_of_epoch:
                history["train_loss"] = epoch_sum / max(epoch_n, 1)
                epoch_sum, epoch_n = 0.0, 0
            every = cfg["checkpoint_every"]
            if (every and step % int(every) == 0) or (not every and end_of_epoch) or step == max_steps:
                last_path = save(f"checkpoint_{step}.pt")
                prune()
            if end_of_epoch:
                t_epoch = time.perf_counter()
            if step >= max_steps or end_of_epoch:
                break
        bar.close()
    if world > 1:
        dist.barrier()
    if main and cfg["plot"] and log_path.exists():
        try:
            plot_losses(log_path, out_dir / "loss.png")
        except Exception as err:  # noqa: BLE001 - a plot never fails a training run
            logger.warning("loss plot failed: %s", err)
    return {"step": step, "epoch": epoch, "train_loss": history.get("train_loss", epoch_sum / max(epoch_n, 1)),
            "valid_loss": valid_loss, "best_valid": best,
            "best_path": str(out_dir / "best.pt"), "last_path": str(last_path) if last_path else None,
            "epoch_times": history["epoch_times"]}


def _batch_size(batch) -> int:
    """Items in a batch: the ``lengths`` entry or the first tensor's leading dimension."""
    if isinstance(batch, dict):
        if "lengths" in batch:
            return len(batch["lengths"])
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for v in batch:
            if isinstance(v, torch.Tensor):
                return v.shape[0]
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    return 1
