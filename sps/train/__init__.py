"""Training shared by the acoustic/duration models and the vocoders: :class:`Trainer`.

>>> from sps.train import fit
>>> result = fit(model, step_fn, train_set, valid_set, "models/acoustic", {"epochs": 5},
...              collate_fn=collate)                                # doctest: +SKIP

See :mod:`sps.train.trainer` for the options (:class:`TrainConfig`).
"""
from sps.train.data import BucketBatchSampler, RankBatches, length_mask, pad_sequences, rank_share
from sps.train.trainer import (TrainConfig, Trainer, TrainState, batch_weight, checkpoints, fit, load_checkpoint,
                               open_tensorboard, plot_losses, read_checkpoint, seed_everything, train_config,
                               weights_path)

__all__ = ["Trainer", "TrainConfig", "TrainState", "fit", "train_config", "load_checkpoint",
           "read_checkpoint", "checkpoints", "weights_path", "plot_losses", "seed_everything", "batch_weight",
           "open_tensorboard", "BucketBatchSampler", "RankBatches", "rank_share", "pad_sequences", "length_mask"]
