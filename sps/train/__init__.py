"""Generic training loop shared by the acoustic/duration models and the vocoders.

>>> from sps.train import fit
>>> result = fit(model, step_fn, train_set, valid_set, "models/acoustic", cfg,
...              collate_fn=collate)                                # doctest: +SKIP

See :func:`sps.train.loop.fit` for the options (:data:`DEFAULTS`).
"""
from sps.train.data import BucketBatchSampler, length_mask, pad_sequences
from sps.train.loop import DEFAULTS, checkpoints, fit, load_checkpoint, merge_defaults, plot_losses

__all__ = ["fit", "DEFAULTS", "merge_defaults", "load_checkpoint", "checkpoints", "plot_losses",
           "BucketBatchSampler", "pad_sequences", "length_mask"]
