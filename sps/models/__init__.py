"""Duration and acoustic models: networks, losses and trained-model prediction.

>>> from sps.models import build_model
>>> net = build_model({"type": "lstm", "num_layers": 2}, in_dim=425, out_dim=199)

Importing this package needs only torch (no pysptk/pyworld). See ``docs/models.md``.
"""
from sps.models.losses import gaussian_nll, masked_mse
from sps.models.nets import ConvNet, FeedForward, ModelConfig, RecurrentNet, build_model
from sps.models.predict import TrainedModel, split_output

__all__ = ["ModelConfig", "FeedForward", "RecurrentNet", "ConvNet", "build_model", "masked_mse", "gaussian_nll",
           "TrainedModel", "split_output"]
