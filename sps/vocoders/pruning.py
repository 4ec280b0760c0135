"""Block-sparse weights: gradual magnitude pruning during training (Zhu & Gupta 2017).

The WaveRNN paper's recipe for a fast large model: train it dense at first, then zero
ever more of its recurrent and output weights, a block at a time, until a target
sparsity; the generation kernels then skip the zero blocks
(:mod:`sps.vocoders.wavernn.native`, block-CSR).

Sparsity at step ``t`` (cubic schedule)::

    s(t) = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3    for t0 <= t <= t1

with ``s_i = 0``; every ``every`` steps inside ``[t0, t1]`` each pruned matrix keeps
its ``1 - s(t)`` fraction of blocks of largest L2 norm. Blocks are ``rows x cols``
(``16 x 1``: sixteen consecutive outputs of one input, the shape the kernels read in one
vector load). Between pruning steps the masks are applied after every optimizer step,
so pruned weights stay zero; the masks are part of the training state (saved with every
checkpoint, restored on resume).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def cubic_sparsity(step: int, target: float, start: int, end: int) -> float:
    """Sparsity of the schedule at ``step`` (0 before ``start``, ``target`` after ``end``)."""
    if step <= start:
        return 0.0
    if step >= end:
        return float(target)
    return float(target) * (1.0 - (1.0 - (step - start) / (end - start)) ** 3)


def block_mask(weight: Tensor, sparsity: float, block: tuple[int, int]) -> Tensor:
    """Mask keeping the ``1 - sparsity`` fraction of ``block``-shaped blocks of largest L2 norm.

    Parameters
    ----------
    weight : Tensor [shape=(M, K)]
        ``M`` and ``K`` multiples of the block rows and columns.
    block : (rows, cols)

    Returns
    -------
    Tensor [shape=(M, K)] float 0/1
    """
    br, bc = block
    M, K = weight.shape
    if M % br or K % bc:
        raise ValueError(f"a {M} x {K} matrix does not split into {br} x {bc} blocks")
    norms = weight.detach().float().reshape(M // br, br, K // bc, bc).square().sum((1, 3))
    n_blocks = norms.numel()
    drop = int(round(sparsity * n_blocks))
    keep = torch.ones_like(norms)
    if drop > 0:
        order = torch.argsort(norms.reshape(-1), stable=True)
        keep.view(-1)[order[:drop]] = 0.0
    return keep.repeat_interleave(br, 0).repeat_interleave(bc, 1).to(weight.dtype)


@dataclass(frozen=True)
class PruningConfig:
    """Section ``train.prune`` of a vocoder config (``target: 0``: no pruning).

    ``matrices`` names entries of the model's ``prunable()`` (null: all of them).
    """
    target: float = 0.0
    start: int = 0
    end: int = 0
    every: int = 100
    block: tuple[int, int] = (16, 1)
    matrices: tuple[str, ...] | None = None

    def __post_init__(self):
        if not 0.0 <= self.target < 1.0:
            raise ValueError(f"prune.target must be in [0, 1), got {self.target}")
        if self.target > 0 and (self.start < 0 or self.end < self.start or self.every < 1):
            raise ValueError(f"prune needs 0 <= start <= end and every >= 1, got start {self.start}, "
                             f"end {self.end}, every {self.every}")
        if len(self.block) != 2 or min(self.block) < 1:
            raise ValueError(f"prune.block must be two positive sizes (rows, cols), got {list(self.block)}")


def pruning_hook(model: nn.Module, cfg: PruningConfig) -> "GradualPruning | None":
    """The :class:`GradualPruning` hook of ``cfg`` for ``model`` (None when ``target`` is 0).

    Raises ValueError when the model has no ``prunable()`` matrices, a name of
    ``cfg.matrices`` is not one of them, or a matrix does not split into blocks.
    """
    if cfg.target == 0:
        return None
    available = model.prunable()
    if not available:
        raise ValueError(f"{type(model).__name__} has no prunable matrices (train.prune needs a WaveRNN)")
    names = list(cfg.matrices) if cfg.matrices is not None else list(available)
    for name in names:
        if name not in available:
            raise ValueError(f"prune.matrices: {type(model).__name__} has no prunable matrix {name!r} "
                             f"(it has {', '.join(available)})")
        M, K = available[name].shape
        if M % cfg.block[0] or K % cfg.block[1]:
            raise ValueError(f"prune.block {list(cfg.block)}: matrix {name} ({M} x {K}) does not split "
                             f"into blocks of that shape")
    return GradualPruning({n: available[n] for n in names}, cfg.target, cfg.start, cfg.end,
                          cfg.every, cfg.block)


class GradualPruning:
    """Trainer hook (:class:`sps.train.Trainer`) pruning named matrices of a model.

    Parameters
    ----------
    params : dict name -> Parameter
        The matrices to prune (``(M, K)`` each).
    target : float
        Final sparsity (fraction of zero blocks).
    start, end : int
        Optimizer steps where pruning begins and reaches ``target``.
    every : int
        Steps between mask updates.
    block : (rows, cols)
        Block shape.
    """

    def __init__(self, params: dict[str, nn.Parameter], target: float, start: int, end: int,
                 every: int = 100, block: tuple[int, int] = (16, 1)):
        PruningConfig(target, start, end, every, tuple(block))          # the same checks as the config's
        self.params, self.target, self.start, self.end = dict(params), float(target), int(start), int(end)
        self.every, self.block = int(every), tuple(int(b) for b in block)
        self.masks: dict[str, Tensor] = {name: torch.ones_like(p, dtype=torch.float32)
                                         for name, p in self.params.items()}

    def sparsity(self, step: int) -> float:
        return cubic_sparsity(step, self.target, self.start, self.end)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Recompute the masks for ``step`` (when it is a pruning step) and apply them."""
        if self.start <= step <= self.end and (step - self.start) % self.every == 0 or step == self.end:
            s = self.sparsity(step)
            for name, p in self.params.items():
                self.masks[name] = block_mask(p.data * self.masks[name].to(p.device), s, self.block).float().cpu()
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, p in self.params.items():
            p.mul_(self.masks[name].to(p.device, p.dtype))

    def on_step_end(self, trainer) -> None:
        self.update(trainer.state.step)

    def may_be_best(self, trainer) -> bool:
        """Only models at the target sparsity become ``best.pt``."""
        return trainer.state.step >= self.end

    def state_dict(self) -> dict:
        return {"masks": {k: v.clone() for k, v in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.get("masks", {}).items():
            if k in self.masks:
                self.masks[k] = v.float().cpu()
        self.apply()
