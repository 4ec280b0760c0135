"""The training loop shared by acoustic/duration models and neural vocoders: :class:`Trainer`.

The caller supplies the model, a ``step_fn(model, batch) -> loss`` and two datasets;
the :class:`Trainer` owns everything else: batching (length buckets), Adam with a
learning-rate schedule, gradient clipping, AMP on CUDA, DistributedDataParallel under
``torchrun`` and gradient accumulation with a constant global batch, validation,
checkpoints, exact resume, a JSONL log, TensorBoard events and the loss curve.
:func:`fit` is the one-call form.

Global batch: ``batch_size`` items per optimizer step whatever the number of
processes ``W`` and ``accum_steps`` ``A``: each global batch of the sampler is dealt to
the ranks and into micro-batches (:class:`sps.train.data.RankBatches`), and the
micro-batch losses are weighted by their frames (:func:`batch_weight`) so the
gradient is the whole batch's. A checkpoint counts global batches, so a run resumes
on another ``W`` (or ``A``) with the next global batch of the same order; under DDP it
also holds every rank's RNG states (``rng_ranks``).

Exact resume: a checkpoint holds the model, optimizer, scheduler and grad-scaler states,
the :class:`TrainState` (step, epoch, position inside the epoch, best validation loss,
running loss sums), every RNG state and the config, as tensors and plain types only:
it loads with ``torch.load(weights_only=True)``, so a file cannot run code. The batch
order of an epoch depends only on the seed and the epoch number
(:class:`sps.train.data.BucketBatchSampler`) and data loading never draws from the
global generators, so on CPU ``N`` steps in one go and ``N/2 + resume + N/2`` give
bit-identical parameters. Resuming with changed training options is an error (a
silently ignored learning rate is worse than a refusal).

Hooks (``hooks=[...]``) are objects with any of ``on_step_end(trainer)``,
``on_epoch_end(trainer)`` and ``on_validate(trainer, loss)``; they may also hold state
that must survive a resume through ``state_dict()`` / ``load_state_dict(d)``, and keep
a model out of ``best.pt`` while ``may_be_best(trainer)`` is False (gradual pruning:
until the target sparsity is reached).
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import pickle
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from sps.config import ConfigError, bind, to_dict
from sps.interrupt import deferred
from sps.io import atomic_path, write_text
from sps.train.data import BucketBatchSampler, RankBatches, WithFillers

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2


@dataclass(frozen=True)
class TrainConfig:
    """Training options (section ``train`` of a model or vocoder config)."""
    batch_size: int = 16               # items per optimizer step, summed over processes (DDP)
    accum_steps: int = 1               # micro-batches per process and step (gradient accumulation)
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    epochs: int = 10                   # used when max_steps is None
    max_steps: int | None = None       # stop after this many optimizer steps
    grad_clip: float | None = 1.0      # max global gradient norm (None: no clipping)
    lr_schedule: Literal[None, "none", "constant", "noam", "step", "cosine"] = None
    warmup_steps: int = 0              # linear warm-up (all schedules)
    lr_step_size: int = 1000           # "step": multiply by lr_gamma every lr_step_size steps
    lr_gamma: float = 0.5
    lr_min_ratio: float = 0.01         # "cosine": final lr / lr
    seed: int = 0
    amp: bool = True                   # mixed precision (CUDA only)
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"   # float16 uses a grad scaler
    num_workers: int = 0
    checkpoint_every: int | None = None  # steps between checkpoint_<step>.pt (None: each epoch)
    keep_checkpoints: int = 2            # periodic checkpoints kept (best.pt is kept apart)
    valid_every: int | None = None       # steps between validations (None: each epoch)
    log_every: int = 10                  # steps between train-loss log records
    bucket: bool = True                  # bucket batches by train_set.lengths when present
    device: str | None = None            # None: cuda if available else cpu
    num_threads: int | None = None       # CPU threads for torch during training
    plot: bool = True                    # write loss.png
    tensorboard: bool = True             # TensorBoard events in <out_dir>/tensorboard (when installed)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.accum_steps < 1:
            raise ValueError(f"accum_steps must be >= 1, got {self.accum_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1 (resume needs one), got {self.keep_checkpoints}")
        for name in ("checkpoint_every", "valid_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {getattr(self, name)}")
        if self.log_every < 1 or self.warmup_steps < 0 or self.num_workers < 0:
            raise ValueError("need log_every >= 1, warmup_steps >= 0 and num_workers >= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if not all(0.0 <= b < 1.0 for b in self.betas) or len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")

    #: options that may differ between a run and its resumption (accum_steps: the global
    #: batches stay the same, like the number of processes)
    RESUMABLE = ("epochs", "max_steps", "num_workers", "checkpoint_every", "keep_checkpoints",
                 "valid_every", "log_every", "device", "num_threads", "plot", "accum_steps", "tensorboard")


def train_config(cfg: TrainConfig | dict | None) -> TrainConfig:
    """A :class:`TrainConfig` from a config mapping (validated) or an instance."""
    if isinstance(cfg, TrainConfig):
        return cfg
    return bind(TrainConfig, cfg, "train")


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint under named fields."""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_valid: float = math.inf
    window: float = 0.0        # train-loss sum since the last log record
    window_n: int = 0
    epoch_sum: float = 0.0     # train-loss sum of the current epoch
    epoch_n: int = 0
    epoch_times: list = field(default_factory=list)
    last_epoch_train: float = math.nan  # mean train loss of the last finished epoch


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at step ``s`` for ``cfg.lr_schedule``."""
    kind, warm = cfg.lr_schedule, int(cfg.warmup_steps or 0)

    def warmup(s: int) -> float:
        return min(1.0, (s + 1) / warm) if warm > 0 else 1.0

    if kind in (None, "none", "constant"):
        return warmup
    if kind == "noam":
        w = max(warm, 1)
        return lambda s: min((s + 1) / w, math.sqrt(w / (s + 1)))
    if kind == "step":
        size, gamma = int(cfg.lr_step_size), float(cfg.lr_gamma)
        return lambda s: warmup(s) * gamma ** (s // size)
    lo = float(cfg.lr_min_ratio)

    def cosine(s: int) -> float:
        p = min(1.0, max(0, s - warm) / max(1, total_steps - warm))
        return warmup(s) * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * p)))
    return cosine


# ----------------------------------------------------------------------------- helpers
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
    """Every RNG state, as tensors and plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos,
                                                     has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


#: where a fresh run keeps the files of the run it replaces, until it succeeds
REPLACED = ".replaced"


def set_aside(out_dir: str | os.PathLike) -> list[str]:
    """Make room for a fresh run in ``out_dir``: move the files of the run there into
    ``out_dir/.replaced/`` (deleted by :meth:`Trainer.fit` once the new run succeeds), so
    a new run that fails or is killed never leaves new options beside old weights and
    never loses the old model. When ``.replaced`` already holds a run (an earlier fresh
    run never finished), the files now in ``out_dir`` are that unfinished run's and are
    deleted instead. Returns the names moved or deleted."""
    out_dir = Path(out_dir)
    aside = out_dir / REPLACED
    entries = sorted(p for p in out_dir.iterdir() if p.name != REPLACED) if out_dir.is_dir() else []
    if not entries:
        return []
    if (aside / ".complete").exists():
        for p in entries:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        logger.info("%s: files of an unfinished fresh run deleted (%s); the run before it stays in %s",
                    out_dir, ", ".join(p.name for p in entries), aside)
    else:      # (a move that was interrupted goes on where it stopped)
        aside.mkdir(exist_ok=True)
        for p in entries:
            os.replace(p, aside / p.name)
        (aside / ".complete").touch()
        logger.warning("%s: the previous run is moved to %s (deleted when this run succeeds)", out_dir, aside)
    return [p.name for p in entries]


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for ``rank`` that no other (seed, rank, step) shares."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


#: TensorBoard tags of log.jsonl keys (others: the first ``_`` becomes ``/``)
TB_TAGS = {"lr": "train/lr", "grad_norm": "train/grad_norm", "epoch_train_loss": "train/epoch_loss",
           "epoch_time": "train/epoch_time_s"}

_TB_MISSING_LOGGED = False


def open_tensorboard(log_dir: Path, purge_step: int | None = None):
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir`` (its calls safe from
    signals: :class:`_SignalSafeWriter`), or None (with one log
    message) when the ``tensorboard`` package is not installed."""
    global _TB_MISSING_LOGGED
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        if not _TB_MISSING_LOGGED:
            logger.info("no TensorBoard logs: %s (pip install 'sps[tensorboard]')", err)
            _TB_MISSING_LOGGED = True
        return None
    return _SignalSafeWriter(SummaryWriter(str(log_dir), purge_step=purge_step))


class _SignalSafeWriter:
    """A SummaryWriter whose every call defers SIGINT/SIGTERM/SIGHUP to its end
    (:func:`sps.interrupt.deferred`): a signal raised halfway through its queue put can
    leave the writer thread deaf to ``close()``, which then hangs (seen under SIGTERM)."""

    def __init__(self, writer):
        self._writer = writer

    def __getattr__(self, name):
        attr = getattr(self._writer, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with deferred():
                return attr(*args, **kwargs)
        return call


def checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Periodic checkpoints ``checkpoint_<step>.pt`` of a model directory, oldest first."""
    paths = Path(out_dir).glob("checkpoint_*.pt")
    return sorted((p for p in paths if p.stem.split("_")[-1].isdigit()),
                  key=lambda p: int(p.stem.split("_")[-1]))


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that cannot be read (torn, truncated, not a checkpoint at all)."""


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint file safely (``weights_only=True``).

    Raises
    ------
    FileNotFoundError
        No such file.
    UnreadableCheckpoint
        A torn or truncated file, or one that is not a checkpoint (a ``ValueError``).
    ValueError
        The file holds more than tensors and plain types (e.g. a pickled object that
        would run code: it is refused, nothing runs).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: refused: a checkpoint may hold only tensors and plain types "
                         f"({first})") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise UnreadableCheckpoint(f"{path}: not a readable checkpoint ({' '.join(str(err).split())})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UnreadableCheckpoint(f"{path}: not an sps checkpoint (no 'model' entry)")
    return ckpt


def weights_path(path: str | os.PathLike) -> Path:
    """The checkpoint file a path names: itself, or for a model directory its ``best.pt``,
    else its latest ``checkpoint_<step>.pt`` (``FileNotFoundError`` when it has neither)."""
    path = Path(path)
    if path.is_dir():
        cands = [path / "best.pt"] if (path / "best.pt").exists() else checkpoints(path)[-1:]
        if not cands:
            raise FileNotFoundError(f"{path}: no best.pt or checkpoint_<step>.pt in model directory")
        path = cands[0]
    return path


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint (``best.pt``, ``checkpoint_<step>.pt`` or a model directory,
    meaning its ``best.pt`` or else its latest checkpoint) and load the weights into
    ``model`` when given. Returns the checkpoint dict (see :func:`read_checkpoint`)."""
    ckpt = read_checkpoint(weights_path(path), map_location)
    if model is not None:
        model.load_state_dict(ckpt["model"])
    return ckpt


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Train and validation loss against step from ``log.jsonl`` -> ``loss.png``."""
    from matplotlib.figure import Figure   # no pyplot: no global backend state
    train, valid = [], []
    for rec in read_log(log_path):
        if "train_loss" in rec:
            train.append((rec["step"], rec["train_loss"]))
        if "valid_loss" in rec:
            valid.append((rec["step"], rec["valid_loss"]))
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for pts, label in ((train, "train"), (valid, "valid")):
        if pts:
            ax.plot(*zip(*pts), label=label, marker="o" if label == "valid" else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)


def read_log(log_path: Path) -> list[dict]:
    """Records of ``log.jsonl``; a torn last line (a kill during a write) is dropped with
    a warning, any other bad line is an error naming it."""
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    out = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                logger.warning("%s:%d: torn last record dropped", log_path, n)
                break
            raise ValueError(f"{log_path}:{n}: not a JSON record: {line[:80]!r}") from None
    return out


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
        # the group goes while the interpreter is whole: gloo's threads torn down during
        # interpreter finalisation can abort a process whose training had succeeded
        atexit.register(_destroy_group)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device(device_pref or "cpu")


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _CollateReal:
    """Collates ``(item, real)`` pairs of :class:`~sps.train.data.WithFillers`:
    ``(collate_fn(items), real)``; a micro-batch is all real or one filler."""

    def __init__(self, collate_fn: Callable | None):
        self.collate_fn = collate_fn or torch.utils.data.default_collate

    def __call__(self, pairs):
        return self.collate_fn([item for item, _ in pairs]), all(real for _, real in pairs)


def batch_weight(batch) -> float:
    """What a batch's loss is a mean over: its frames (the sum of ``lengths``) when the
    batch has them, else its items. Micro-batch losses are combined with these weights,
    so the gradient of a global batch split over processes and micro-batches is that of
    the whole batch (exactly, for a ``step_fn`` that returns such a mean)."""
    if isinstance(batch, dict) and "lengths" in batch:
        return float(torch.as_tensor(batch["lengths"]).sum())
    return float(_batch_size(batch))


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


# ----------------------------------------------------------------------------- Trainer
class Trainer:
    """Trains ``model`` by minimising ``step_fn(model, batch)``.

    Parameters
    ----------
    model : nn.Module
        Moved to the training device; its trained weights stay in it.
    step_fn : callable
        ``step_fn(model, batch) -> loss`` (scalar tensor); used for training (train
        mode) and validation (eval mode, no grad). ``batch`` is what ``collate_fn``
        returns, moved to the device.
    train_set, valid_set : Dataset
        Map-style datasets; ``train_set.lengths`` (frames per item), when present,
        enables length bucketing. ``valid_set`` may be None (best.pt then follows the
        epoch's train loss).
    out_dir : path-like
        Model directory: ``config.yaml``, ``checkpoint_<step>.pt``, ``best.pt``,
        ``log.jsonl``, ``loss.png``.
    config : TrainConfig or dict
        Training options.
    metadata : dict, optional
        Plain data written beside the options to ``config.yaml`` and into every
        checkpoint (model architecture, feature kinds ...).
    collate_fn : callable
        List of items -> batch.
    hooks : sequence
        See the module docstring.
    """

    def __init__(self, model: nn.Module, step_fn: Callable[[nn.Module, Any], torch.Tensor], train_set,
                 valid_set, out_dir: str | os.PathLike, config: TrainConfig | dict | None = None, *,
                 metadata: dict | None = None, collate_fn: Callable | None = None, hooks=()):
        self.cfg = cfg = train_config(config)
        self.metadata = dict(metadata or {})
        self.model, self.step_fn = model, step_fn
        self.train_set, self.valid_set = train_set, valid_set
        self.out_dir = Path(out_dir)
        self.hooks = list(hooks)
        self.rank, self.world, self.device = _dist_setup(cfg.device)
        self.main = self.rank == 0
        self.log_path, self.cfg_path = self.out_dir / "log.jsonl", self.out_dir / "config.yaml"
        self.state = TrainState()
        self.tensorboard = None      # a SummaryWriter on rank 0 during fit (cfg.tensorboard, when installed)
        self.grad_norm = math.nan    # global gradient norm of the last step (before clipping)

        model.to(self.device)
        self.use_amp = bool(cfg.amp) and self.device.type == "cuda"
        self.amp_dtype = getattr(torch, cfg.amp_dtype)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr, betas=tuple(cfg.betas),
                                          weight_decay=cfg.weight_decay)
        lengths = getattr(train_set, "lengths", None) if cfg.bucket else None
        # the global batches of each optimizer step: the same whatever the number of processes
        self.batches = BucketBatchSampler(len(train_set), cfg.batch_size, lengths, shuffle=True, seed=cfg.seed)
        self.sampler = RankBatches(self.batches, self.rank, self.world, cfg.accum_steps)
        self.steps_per_epoch = len(self.batches.batches(0))
        if self.steps_per_epoch == 0:
            raise ValueError("training set is empty")
        self.max_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg, self.max_steps))

        self.wrapped: nn.Module = _StepModule(model, step_fn)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.wrapped = DistributedDataParallel(
                self.wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # a private generator: creating DataLoader iterators must not consume global RNG
        loader_kw = dict(num_workers=cfg.num_workers, generator=torch.Generator().manual_seed(cfg.seed),
                         pin_memory=self.device.type == "cuda", persistent_workers=False)
        self.train_loader = torch.utils.data.DataLoader(WithFillers(train_set), batch_sampler=self.sampler,
                                                        collate_fn=_CollateReal(collate_fn), **loader_kw)
        self.valid_loader = None
        if valid_set is not None and len(valid_set) > 0:
            vsampler = BucketBatchSampler(len(valid_set), cfg.batch_size, getattr(valid_set, "lengths", None),
                                          shuffle=False)
            # validation batches are split over ranks by hand (no batch may be dropped)
            vbatches = vsampler.batches(0)[self.rank::self.world]
            self.valid_loader = torch.utils.data.DataLoader(valid_set, batch_sampler=vbatches,
                                                            collate_fn=collate_fn, **loader_kw)

    # ------------------------------------------------------------------ checkpoints
    def config_record(self) -> dict:
        """Options and metadata as written to ``config.yaml``."""
        return {**to_dict(self.cfg), **self.metadata}

    def save(self, name: str) -> Path:
        """Write checkpoint ``out_dir/name`` (rank 0; atomically) and return its path.

        Under DDP every rank calls it: the checkpoint also holds each rank's RNG states
        (``rng_ranks``), so a resume on as many processes continues every rank's draws.
        """
        path = self.out_dir / name
        rng, ranks = rng_state(), None
        if self.world > 1:
            ranks = [None] * self.world
            dist.all_gather_object(ranks, rng)
        if self.main:
            ckpt = {"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(), "state": dataclasses.asdict(self.state),
                    "rng": rng, "config": yaml.safe_dump(self.config_record(), sort_keys=False),
                    "hooks": [h.state_dict() if hasattr(h, "state_dict") else {} for h in self.hooks]}
            if ranks is not None:
                ckpt["rng_ranks"] = ranks
            buffer = io.BytesIO()   # serialised first: a full disk is then an OSError naming the file
            torch.save(ckpt, buffer)
            with atomic_path(path) as tmp:
                tmp.write_bytes(buffer.getbuffer())
        return path

    def restore(self) -> bool:
        """Continue exactly from the newest readable ``checkpoint_<step>.pt`` (False: none found).

        A torn (unreadable) checkpoint is renamed ``<name>.torn`` with a warning naming it,
        and the one before it is used.

        Raises
        ------
        ValueError
            The checkpoint was made with other training options (those of
            :attr:`TrainConfig.RESUMABLE` may change), is not a safe checkpoint, or every
            checkpoint is torn.
        """
        found = checkpoints(self.out_dir)
        if not found:
            return False
        torn, ckpt, last = [], None, None
        for path in reversed(found):
            try:
                ckpt, last = read_checkpoint(path, self.device), [path]
                break
            except UnreadableCheckpoint as err:
                torn.append(path)
                logger.warning("%s; falling back to the checkpoint before it", err)
                if self.main:
                    os.replace(path, path.with_name(path.name + ".torn"))
        if ckpt is None:
            raise ValueError(f"{self.out_dir}: no readable checkpoint ({', '.join(p.name for p in torn)} torn, "
                             "kept as *.torn); rerun with --force to start afresh")
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{last[0]}: checkpoint format {ckpt.get('format')}, this version writes "
                             f"{CHECKPOINT_FORMAT}; retrain with --force")
        self._check_same_options(last[0], yaml.safe_load(ckpt["config"]) or {})
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState(**ckpt["state"])
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if self.rank < len(ranks):
            set_rng_state(ranks[self.rank])
        else:   # more processes than the checkpoint's: a fresh stream of this rank's own
            seed_everything(rank_seed(self.cfg.seed, self.rank, self.state.step))
        for hook, hstate in zip(self.hooks, ckpt.get("hooks", [])):
            if hasattr(hook, "load_state_dict"):
                hook.load_state_dict(hstate)
        logger.info("resumed from %s (step %d, epoch %d)", last[0], self.state.step, self.state.epoch)
        if self.main and self.log_path.exists():  # drop records written after the checkpoint
            keep = [r for r in read_log(self.log_path) if r["step"] <= self.state.step]
            write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in keep))
        return True

    def _check_same_options(self, path: Path, saved: dict) -> None:
        now = self.config_record()
        changed = sorted(k for k in set(saved) | set(now)
                         if k not in type(self.cfg).RESUMABLE and _plain(saved.get(k)) != _plain(now.get(k)))
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
            raise ConfigError(f"{path}: was trained with other settings ({diffs}); resume with the "
                              f"same config, or use --force to start afresh")

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.use_amp else contextlib.nullcontext()

    def _log(self, rec: dict) -> None:
        if self.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if self.tensorboard is not None:
                for key, value in rec.items():
                    if key not in ("step", "epoch") and isinstance(value, (int, float)) and math.isfinite(value):
                        self.tensorboard.add_scalar(TB_TAGS.get(key, key.replace("_", "/", 1)), value, rec["step"])

    def log_metrics(self, values: dict[str, float]) -> None:
        """Record ``values`` (e.g. validation metrics of a hook: ``{"valid_mcd_db": 5.1}``)
        at the current step: a ``log.jsonl`` record and TensorBoard scalars
        (``valid_mcd_db`` -> ``valid/mcd_db``). Rank 0 writes; others ignore it."""
        self._log({"step": self.state.step, **{k: float(v) for k, v in values.items()}})

    def train_step(self, batch) -> float:
        """One optimizer step on ``batch`` (already on the device); returns the loss."""
        return self.accumulate_step([(batch, True)])

    def accumulate_step(self, micro: list[tuple[Any, bool]]) -> float:
        """One optimizer step on this rank's micro-batches ``(batch, real)`` of a global
        batch (on the device); returns the global batch's loss.

        Each micro-batch's loss is weighted by its share of the global batch's frames
        (:func:`batch_weight`; a filler: 0), so the summed gradients (all-reduced over
        the ranks by DDP on the last micro-batch) are those of the global batch's mean.
        """
        weights = [batch_weight(b) if real else 0.0 for b, real in micro]
        plain = self.world == 1 and len(micro) == 1
        total = torch.tensor([sum(weights)], dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(total)
        total_w = float(total[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros(1, dtype=torch.float64, device=self.device)
        for i, ((batch, real), w) in enumerate(zip(micro, weights)):
            # DDP all-reduces the gradients on the last micro-batch only
            sync = self.world == 1 or i == len(micro) - 1
            with contextlib.nullcontext() if sync else self.wrapped.no_sync():
                with self._autocast():
                    loss = self.wrapped(batch)
                if real and not torch.isfinite(loss):
                    raise ValueError(f"non-finite training loss {float(loss.detach())} at step "
                                     f"{self.state.step + 1} (epoch {self.state.epoch + 1})")
                # DDP averages over the W ranks: scaled by W, the average is the weighted sum
                scale = 1.0 if plain else w * self.world / total_w
                self.scaler.scale(loss if scale == 1.0 else loss * scale).backward()
            loss_sum += loss.detach().double() * w
        if self.world > 1:
            dist.all_reduce(loss_sum)
        self.scaler.unscale_(self.optimizer)
        clip = float(self.cfg.grad_clip) if self.cfg.grad_clip else math.inf
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach()) if plain else float(loss_sum[0]) / total_w

    def validate(self) -> float:
        """Mean validation loss (all-reduced over ranks); NaN without a validation set."""
        self.wrapped.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for batch in (self.valid_loader if self.valid_loader is not None else []):
                with self._autocast():
                    loss = self.wrapped(to_device(batch, self.device))
                total[0] += float(loss) * _batch_size(batch)
                total[1] += _batch_size(batch)
        if self.world > 1:
            dist.all_reduce(total)
        self.wrapped.train()
        return float(total[0] / total[1]) if total[1] > 0 else math.nan

    def _call_hooks(self, name: str, *args) -> None:
        for hook in self.hooks:
            fn = getattr(hook, name, None)
            if fn is not None:
                fn(self, *args)

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> dict:
        """Train to ``max_steps`` (or ``epochs``); returns a summary dict with ``step``,
        ``epoch``, ``train_loss``, ``valid_loss``, ``best_valid``, ``best_path``,
        ``last_path`` and ``epoch_times``."""
        threads = torch.get_num_threads()
        if self.cfg.num_threads:
            torch.set_num_threads(int(self.cfg.num_threads))
        try:
            return self._fit(resume)
        finally:
            torch.set_num_threads(threads)
            if self.tensorboard is not None:
                self.tensorboard.close()
                self.tensorboard = None

    def _fit(self, resume: bool) -> dict:
        cfg, st = self.cfg, self.state
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if not (resume and self.restore()):
            if resume:
                logger.info("%s: no checkpoint to resume from, starting afresh", self.out_dir)
            if self.main:
                set_aside(self.out_dir)
            seed_everything(cfg.seed if self.rank == 0 else rank_seed(cfg.seed, self.rank))
        st = self.state
        if self.main:
            write_text(self.cfg_path, yaml.safe_dump(self.config_record(), sort_keys=False))
            if cfg.tensorboard:   # events after the restored step are dropped from the view
                self.tensorboard = open_tensorboard(self.out_dir / "tensorboard", st.step + 1 if st.step else None)
        if self.world > 1:
            dist.barrier()

        self.wrapped.train()
        valid_loss, last_path = math.nan, None
        t_epoch = time.perf_counter()
        while st.step < self.max_steps:
            self.sampler.set_epoch(st.epoch, skip=st.batch_in_epoch)
            bar = tqdm(total=self.steps_per_epoch, initial=st.batch_in_epoch, desc=f"epoch {st.epoch + 1}",
                       unit="step", leave=False, disable=None if self.main else True, file=sys.stderr)
            micro = []
            for batch, real in self.train_loader:
                micro.append((to_device(batch, self.device), real))
                if len(micro) < cfg.accum_steps:
                    continue
                value = self.accumulate_step(micro)
                micro = []
                st.step += 1
                st.batch_in_epoch += 1
                st.window += value
                st.window_n += 1
                st.epoch_sum += value
                st.epoch_n += 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
                self._call_hooks("on_step_end")
                if st.step % cfg.log_every == 0 or st.step == self.max_steps:
                    self._log({"step": st.step, "epoch": st.epoch + 1, "train_loss": st.window / st.window_n,
                               "lr": self.scheduler.get_last_lr()[0], "grad_norm": self.grad_norm})
                    st.window, st.window_n = 0.0, 0
                end_of_epoch = st.batch_in_epoch >= self.steps_per_epoch
                if end_of_epoch:
                    st.epoch_times.append(time.perf_counter() - t_epoch)
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                periodic_valid = cfg.valid_every and st.step % cfg.valid_every == 0
                if periodic_valid or (not cfg.valid_every and end_of_epoch) or st.step == self.max_steps:
                    epoch_mean = st.epoch_sum / max(st.epoch_n, 1)
                    valid_loss = self.validate() if self.valid_loader is not None else epoch_mean
                    rec = {"step": st.step, "epoch": st.epoch + (0 if end_of_epoch else 1),
                           "valid_loss": valid_loss, "epoch_train_loss": epoch_mean}
                    if end_of_epoch:
                        rec["epoch_time"] = st.epoch_times[-1]
                    self._log(rec)
                    logger.info("step %d epoch %d: train %.4f valid %.4f", st.step, rec["epoch"],
                                epoch_mean, valid_loss)
                    self._call_hooks("on_validate", valid_loss)
                    eligible = all(h.may_be_best(self) for h in self.hooks if hasattr(h, "may_be_best"))
                    if eligible and valid_loss < st.best_valid:
                        st.best_valid = valid_loss
                        self.save("best.pt")
                if end_of_epoch:
                    st.last_epoch_train = st.epoch_sum / max(st.epoch_n, 1)
                    self._call_hooks("on_epoch_end")
                    st.epoch_sum, st.epoch_n = 0.0, 0
                every = cfg.checkpoint_every
                if (every and st.step % every == 0) or (not every and end_of_epoch) or st.step == self.max_steps:
                    last_path = self.save(f"checkpoint_{st.step}.pt")
                    self._prune()
                if end_of_epoch:
                    t_epoch = time.perf_counter()
                if st.step >= self.max_steps or end_of_epoch:
                    break
            bar.close()
        if self.world > 1:
            dist.barrier()
        if self.main and cfg.plot and self.log_path.exists():
            try:
                plot_losses(self.log_path, self.out_dir / "loss.png")
            except Exception as err:  # noqa: BLE001 - a plot never fails a training run
                logger.warning("loss plot failed: %s", err)
        if self.main:   # this run succeeded: the one it replaced goes
            shutil.rmtree(self.out_dir / REPLACED, ignore_errors=True)
        return {"step": st.step, "epoch": st.epoch,
                "train_loss": st.epoch_sum / st.epoch_n if st.epoch_n else st.last_epoch_train,
                "valid_loss": valid_loss, "best_valid": st.best_valid,
                "best_path": str(self.out_dir / "best.pt"), "last_path": str(last_path) if last_path else None,
                "epoch_times": list(st.epoch_times)}

    def _prune(self) -> None:
        if self.main and self.cfg.keep_checkpoints > 0:
            for p in checkpoints(self.out_dir)[:-self.cfg.keep_checkpoints]:
                p.unlink()


def _plain(v):
    """Tuples as lists, so a YAML round trip compares equal."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def fit(model: nn.Module, step_fn: Callable[[nn.Module, Any], torch.Tensor], train_set, valid_set,
        out_dir: str | os.PathLike, cfg: TrainConfig | dict | None = None, *, collate_fn: Callable | None = None,
        resume: bool = False, metadata: dict | None = None, hooks=()) -> dict:
    """Train ``model`` with a :class:`Trainer` (same arguments); returns its summary."""
    return Trainer(model, step_fn, train_set, valid_set, out_dir, cfg, metadata=metadata,
                   collate_fn=collate_fn, hooks=hooks).fit(resume=resume)
