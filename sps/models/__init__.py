"""Duration and acoustic models: networks, losses, datasets and the ``train`` stage.

>>> from sps.models import build_model
>>> net = build_model({"type": "lstm", "num_layers": 2}, in_dim=425, out_dim=199)

Importing this package needs only torch (no pysptk/pyworld). See ``docs/models.md``.
"""
from sps.models.nets import MODEL_DEFAULTS, FeedForward, RecurrentNet, build_model
from sps.models.losses import gaussian_nll, masked_mse

__all__ = ["MODEL_DEFAULTS", "FeedForward", "RecurrentNet", "build_model", "masked_mse", "gaussian_nll"]
