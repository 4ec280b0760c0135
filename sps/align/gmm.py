"""Diagonal-covariance Gaussian mixtures: log-likelihoods, sufficient statistics, re-estimation
and mixture splitting (the HTK recipe: split the heaviest component, means moved by +-0.2
standard deviations).

Parameters of ``P`` output distributions with ``M`` components of dimension ``D``:
``means [P, M, D]``, ``variances [P, M, D]`` and ``log_weights [P, M]`` (a component
with weight 0, ``-inf``, is unused: a distribution may have fewer than ``M`` live
components).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class GmmStats:
    """Sufficient statistics of ``P`` mixtures (float64): occupancy ``occ [P, M]``, first
    moments ``first [P, M, D]`` and second moments ``second [P, M, D]``."""
    occ: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor

    @classmethod
    def zeros(cls, P: int, M: int, D: int) -> "GmmStats":
        z = torch.zeros
        return cls(z(P, M, dtype=torch.float64), z(P, M, D, dtype=torch.float64), z(P, M, D, dtype=torch.float64))

    def __iadd__(self, other: "GmmStats") -> "GmmStats":
        self.occ += other.occ
        self.first += other.first
        self.second += other.second
        return self


@dataclass
class Gmm:
    """``P`` diagonal Gaussian mixtures (see the module docstring for the shapes)."""
    means: torch.Tensor
    variances: torch.Tensor
    log_weights: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.means.shape)

    @classmethod
    def single(cls, P: int, mean: torch.Tensor, variance: torch.Tensor) -> "Gmm":
        """``P`` copies of one Gaussian (a flat start)."""
        D = mean.numel()
        return cls(mean.double().view(1, 1, D).repeat(P, 1, 1), variance.double().view(1, 1, D).repeat(P, 1, 1),
                   torch.zeros(P, 1, dtype=torch.float64))

    def component_log_likelihood(self, x: torch.Tensor, pdfs: torch.Tensor) -> torch.Tensor:
        """``log w_m + log N(x_t; mu_m, diag var_m)`` for the distributions ``pdfs``.

        Parameters
        ----------
        x : Tensor [shape=(T, D)]
        pdfs : LongTensor [shape=(U,)]

        Returns
        -------
        Tensor [shape=(T, U, M), float32]
            -inf for unused components.
        """
        prec = 1.0 / self.variances[pdfs]                                    # (U, M, D)
        mu = self.means[pdfs]
        const = (self.log_weights[pdfs]
                 - 0.5 * (mu.shape[-1] * LOG_2PI + torch.log(self.variances[pdfs]).sum(-1) + (mu * mu * prec).sum(-1)))
        U, M, D = mu.shape
        x = x.float()
        lin = torch.cat([x * x, x], dim=1) @ torch.cat([-0.5 * prec, mu * prec], dim=2).view(U * M, 2 * D).float().T
        return lin.view(-1, U, M) + const.float()

    def update(self, stats: GmmStats, var_floor: torch.Tensor, min_occ: float = 3.0) -> None:
        """Maximum-likelihood re-estimation in place.

        A component with occupancy below ``min_occ`` frames is removed (weight 0), unless
        it is the last of its distribution; a distribution with less occupancy in all keeps
        its parameters. Variances are floored at ``var_floor [D]``.
        """
        occ = stats.occ
        total = occ.sum(1)
        trained = total >= min_occ
        heaviest = occ == occ.max(1, keepdim=True).values
        live = ((occ >= min_occ) | heaviest) & trained.unsqueeze(1)
        safe = occ.clamp(min=1e-10).unsqueeze(-1)
        mean = stats.first / safe
        var = torch.maximum(stats.second / safe - mean * mean, var_floor.view(1, 1, -1).double())
        m = live.unsqueeze(-1)
        self.means = torch.where(m, mean, self.means)
        self.variances = torch.where(m, var, self.variances)
        new_w = torch.where(live, occ, torch.zeros_like(occ))
        new_lw = torch.log(new_w / new_w.sum(1, keepdim=True).clamp(min=1e-300))
        self.log_weights = torch.where(trained.unsqueeze(1), new_lw, self.log_weights)

    def split(self, mixtures: int, perturb: float = 0.2) -> None:
        """Grow every distribution to ``mixtures`` live components: split the heaviest
        component into two with half its weight each and means ``mu +- perturb * sigma``."""
        P, M, D = self.shape
        if mixtures > M:
            pad = mixtures - M
            self.means = torch.cat([self.means, self.means.new_zeros(P, pad, D)], 1)
            self.variances = torch.cat([self.variances, self.variances.new_ones(P, pad, D)], 1)
            self.log_weights = torch.cat([self.log_weights, self.log_weights.new_full((P, pad), -math.inf)], 1)
        for p in range(P):
            lw = self.log_weights[p]
            while bool(torch.isfinite(lw).sum() < mixtures):
                heavy = int(torch.argmax(lw))
                free = int(torch.nonzero(~torch.isfinite(lw))[0])
                sd = self.variances[p, heavy].sqrt()
                self.means[p, free] = self.means[p, heavy] + perturb * sd
                self.means[p, heavy] = self.means[p, heavy] - perturb * sd
                self.variances[p, free] = self.variances[p, heavy]
                lw[heavy] = lw[heavy] - math.log(2.0)
                lw[free] = lw[heavy]


def accumulate(stats: GmmStats, x: torch.Tensor, pdfs: torch.Tensor, occupancy: torch.Tensor,
               posteriors: torch.Tensor | None) -> None:
    """Add one utterance's statistics.

    Parameters
    ----------
    stats : GmmStats
        Accumulators (float64), updated in place.
    x : Tensor [shape=(T, D)]
    pdfs : LongTensor [shape=(U,)]
        Distinct distributions of the utterance.
    occupancy : Tensor [shape=(T, U)]
        Posterior of each distribution at each frame.
    posteriors : Tensor [shape=(T, U, M)] or None
        Posterior of each component given its distribution (None: single Gaussians).
        The sums over the utterance's frames are taken in float32, then added in float64.
    """
    T = x.shape[0]
    occ = occupancy.float()
    r = occ if posteriors is None else (posteriors * occ.unsqueeze(-1)).reshape(T, -1)    # (T, U*M)
    U, M = pdfs.numel(), r.shape[1] // pdfs.numel()
    x = x.float()
    rt = r.T
    stats.occ.index_add_(0, pdfs, r.sum(0).double().view(U, M))
    stats.first.index_add_(0, pdfs, (rt @ x).double().view(U, M, -1))
    stats.second.index_add_(0, pdfs, (rt @ (x * x)).double().view(U, M, -1))
