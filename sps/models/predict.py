"""A trained duration or acoustic network with its normalisation: inputs in, natural units out."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sps.features import Normalizer


def split_output(out: torch.Tensor, predict_variance: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Network output -> (mean [shape=(..., D)], log-variance or None), normalised domain."""
    if not predict_variance:
        return out, None
    d = out.shape[-1] // 2
    return out[..., :d], out[..., d:]


class TrainedModel:
    """A network in eval mode, the statistics it was trained with, and its output layout.

    Parameters
    ----------
    net : nn.Module
        ``(B, T, D_in), lengths -> (B, T, D_out or 2 D_out)``.
    normalizer : Normalizer
        Input min-max and output mean/std statistics of its training data.
    predict_variance : bool
        The network also outputs log-variances (second half of its output).
    """

    def __init__(self, net: nn.Module, normalizer: Normalizer, predict_variance: bool = False):
        self.net = net.eval()
        self.norm = normalizer
        self.predict_variance = bool(predict_variance)

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One utterance through the network, in natural units.

        Parameters
        ----------
        x : ndarray [shape=(T, D_in)]
            Raw (un-normalised) inputs.

        Returns
        -------
        y : ndarray [shape=(T, D_out)] float64
            De-normalised outputs.
        var : ndarray [shape=(T, D_out)] or None
            Predicted variances in natural units (``predict_variance``).
        """
        if x.ndim != 2 or x.shape[1] != self.norm.in_dim:
            raise ValueError(f"model input of shape {x.shape}, the model expects (T, {self.norm.in_dim})")
        xs = torch.from_numpy(self.norm.inputs(x.astype(np.float64)).astype(np.float32))[None]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one short sequence: thread hand-offs per LSTM step cost more than they gain
        try:
            out = self.net(xs, torch.tensor([xs.shape[1]]))
        finally:
            torch.set_num_threads(threads)
        mean, log_var = split_output(out[0].double(), self.predict_variance)
        y = self.norm.unscale_outputs(mean.numpy())
        var = None if log_var is None else np.exp(log_var.numpy()) * self.norm.out_std ** 2
        return y, var
