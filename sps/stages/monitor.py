"""Training hooks that watch a model as it trains (:class:`sps.train.Trainer` hooks).

* :class:`ValidMetrics` (stage ``train``): at every validation, the objective metrics of
  the model on the validation split: for an acoustic model MCD, BAP distortion, F0 RMSE
  and correlation and V/UV error of the MLPG-generated static features (natural
  durations, the training variances, the ``eval`` stage's definitions); for a
  duration model the duration RMSE in frames. Recorded with
  :meth:`~sps.train.Trainer.log_metrics`: ``valid_mcd_db`` ... in ``log.jsonl`` and
  ``valid/mcd_db`` ... in TensorBoard.
* :class:`AudioSamples` (stage ``train-vocoder``): at every validation (``valid_every``
  steps), the vocoder's copy synthesis of the first seconds of a validation utterance
  and its spectrogram, as TensorBoard audio and images (the natural ones once, for
  comparison). Nothing without TensorBoard.

Both run on rank 0 only, in eval mode without gradients, one batch of utterances at a
time (memory does not grow with the split).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from sps.dsp import deemphasis
from sps.io import load_array
from sps.metrics import duration_rmse, nanmean
from sps.mlpg import generate_streams
from sps.models import split_output
from sps.spec import static_columns
from sps.stages.datasets import FeatureDataset, collate_pairs
from sps.stages.evaluate import acoustic_metrics
from sps.synthesis import round_durations

logger = logging.getLogger(__name__)


class ValidMetrics:
    """Objective metrics on the validation split at every validation (see the module docstring).

    Parameters
    ----------
    dataset : FeatureDataset
        The validation pairs (its normaliser de-normalises the predictions).
    kind : {"acoustic", "duration"}
    spec : dict, optional
        The ``out_acoustic`` stream spec (acoustic models).
    predict_variance : bool
        The model's output holds log-variances after the means.
    batch_size : int
        Utterances per forward pass.
    """

    #: streams an acoustic model's spec needs for the metrics
    STREAMS = frozenset({"mgc", "lf0", "vuv", "bap"})

    def __init__(self, dataset: FeatureDataset, kind: str, spec: dict | None = None,
                 predict_variance: bool = False, batch_size: int = 8):
        if kind == "acoustic" and spec is None:
            raise ValueError("acoustic validation metrics need the stream spec dump/out_acoustic.json")
        self.dataset, self.kind, self.spec = dataset, kind, spec
        self.pv, self.batch_size = predict_variance, batch_size

    def metrics(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Mean metrics over the dataset's utterances (keys as in ``metrics.json``)."""
        norm = self.dataset.norm
        mean = torch.as_tensor(norm.out_mean, dtype=torch.float32, device=device)
        std = torch.as_tensor(norm.out_std, dtype=torch.float32, device=device)
        cols = static_columns(self.spec) if self.kind == "acoustic" else None
        per_utt = []
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(self.dataset), self.batch_size):
                    idx = range(start, min(start + self.batch_size, len(self.dataset)))
                    batch = collate_pairs([self.dataset[i] for i in idx])
                    lengths = batch["lengths"].to(device)
                    out, _ = split_output(model(batch["x"].to(device), lengths), self.pv)
                    pred = out.float() * std + mean                  # natural units
                    if self.kind == "acoustic":
                        pred = generate_streams(pred, std ** 2, self.spec, lengths)
                    pred = pred.cpu().numpy()
                    for b, i in enumerate(idx):
                        n = int(lengths[b])
                        natural = self.dataset.load(i)[1][:n]
                        if self.kind == "acoustic":
                            per_utt.append(acoustic_metrics(natural[:, cols], pred[b, :n], self.spec))
                        else:
                            gen = round_durations(pred[b, :n]).astype(np.float64)
                            per_utt.append({"duration_rmse_frames": duration_rmse(natural, gen)})
        finally:
            model.train(was_training)
        keys = [k for k in per_utt[0] if k != "frames"] if per_utt else []
        return {k: nanmean(u[k] for u in per_utt) for k in keys}

    def on_validate(self, trainer, loss: float) -> None:
        if not trainer.main or len(self.dataset) == 0:
            return
        values = self.metrics(trainer.model, trainer.device)
        trainer.log_metrics({f"valid_{k}": v for k, v in values.items()})
        logger.info("step %d validation metrics: %s", trainer.state.step,
                    ", ".join(f"{k}={v:.4g}" for k, v in values.items()))


def spectrogram_image(wav: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Log-magnitude spectrogram [shape=(n_fft // 2 + 1, frames)] scaled to [0, 1] over
    80 dB below its peak, low frequencies at the bottom (a TensorBoard ``HW`` image)."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-8))
    img = ((db - db.max() + 80.0) / 80.0).clamp(0.0, 1.0)
    return img.flip(0).numpy()


class AudioSamples:
    """Vocoder copy synthesis of one validation utterance in TensorBoard at every
    validation (see the module docstring).

    Parameters
    ----------
    cond : ndarray [shape=(F, C)]
        Normalised conditioning frames (the vocoder's input).
    natural : ndarray [shape=(F * hop,)]
        The natural waveform of those frames.
    sample_rate : int
    preemphasis : float
        The vocoder was trained on pre-emphasised audio: generated audio is de-emphasised.
    seed : int
        Seed of the sampling (the same draw at every validation).
    """

    def __init__(self, cond: np.ndarray, natural: np.ndarray, sample_rate: int, preemphasis: float = 0.0,
                 seed: int = 0):
        self.cond = torch.as_tensor(np.asarray(cond, dtype=np.float32))
        self.natural = np.asarray(natural, dtype=np.float32)
        self.sample_rate, self.preemphasis, self.seed = int(sample_rate), float(preemphasis), seed
        self.natural_logged = False

    @classmethod
    def from_experiment(cls, exp, cond, preemphasis: float = 0.0, seconds: float = 1.0) -> "AudioSamples | None":
        """The first ``seconds`` of the first validation (else training) utterance with a
        dumped waveform; None when there is none. ``cond`` is the experiment's
        :class:`~sps.vocoders.conditioning.Conditioning`."""
        for split in ("dev", "train"):
            if not exp.list_path(split).exists():
                continue
            for utt in exp.utterances(split):
                feat_path, wav_path = exp.dump_path(split, "out_acoustic", utt), exp.dump_path(split, "wav", utt)
                if feat_path.exists() and wav_path.exists():
                    feats = load_array(feat_path)
                    frames = max(1, min(len(feats), int(seconds * cond.sample_rate / cond.hop_length)))
                    natural = load_array(wav_path).reshape(-1)[:frames * cond.hop_length]
                    return cls(cond(feats[:frames], feat_path), natural, cond.sample_rate, preemphasis)
        return None

    def generate(self, model: torch.nn.Module, device: torch.device) -> np.ndarray:
        """The model's waveform [shape=(F * hop,)] for the conditioning frames."""
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                wav = model.generate(self.cond[None].to(device), lengths=torch.tensor([len(self.cond)], device=device),
                                     generator=torch.Generator().manual_seed(self.seed))
        finally:
            model.train(was_training)
        wav = wav.float().cpu()
        if self.preemphasis:
            wav = deemphasis(wav, self.preemphasis)
        return np.clip(wav[0].numpy(), -1.0, 1.0)

    def on_validate(self, trainer, loss: float) -> None:
        tb = trainer.tensorboard
        if tb is None or not trainer.main:
            return
        step = trainer.state.step
        if not self.natural_logged:
            tb.add_audio("samples/natural", self.natural[None], step, sample_rate=self.sample_rate)
            tb.add_image("spectrogram/natural", spectrogram_image(self.natural), step, dataformats="HW")
            self.natural_logged = True
        wav = self.generate(trainer.model, trainer.device)
        tb.add_audio("samples/generated", wav[None], step, sample_rate=self.sample_rate)
        tb.add_image("spectrogram/generated", spectrogram_image(wav), step, dataformats="HW")
