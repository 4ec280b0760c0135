"""From linguistic features to speech parameters and waveforms with trained models.

:class:`Synthesizer` holds a trained duration model and acoustic model of an
experiment directory with their normalisation statistics and the stream spec, and
runs the pipeline

labels -> phone-level linguistic features -> duration model -> frames per phone
(or state) -> frame-level linguistic features -> acoustic model -> de-normalise ->
MLPG with the training-data variances -> [postfilter] -> V/UV and F0 -> WORLD.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from sps.features import mgc_to_log_power

logger = logging.getLogger(__name__)

#: synthesis options (section-less keys of ``conf/synth.yaml``)
SYNTH_DEFAULTS = {
    "acoustic_model": "acoustic_dnn_mge",  # models/<name>
    "duration_model": "duration_dnn",      # models/<name>
    "durations": "oracle",                 # oracle (natural durations, for eval) | predicted
    "postfilter": False,                   # Merlin-style mel-cepstral formant enhancement
    "postfilter_beta": 1.4,                # weight of c2.. (Merlin's pf_coef)
    "vuv_threshold": 0.5,
    "questions": None,                     # question file (None: the one in dump/in_acoustic.json)
    "subphone_features": None,             # positional features (None: as the frontend stage wrote)
    "voice": "cmu_us_slt_arctic_hts",      # Festival voice for text input
}


def postfilter(mgc: np.ndarray, alpha: float, beta: float = 1.4, fft_size: int = 1024) -> np.ndarray:
    """Mel-cepstral formant enhancement keeping each frame's energy (Merlin's post-filter).

    The coefficients ``c2 .. cM`` are multiplied by ``beta``; then ``c0`` is raised by
    ``0.5 ln(r0 / r0')``, where ``r0`` and ``r0'`` are the energies (zero-lag
    autocorrelation, the mean of the power spectrum over the FFT circle) of the
    original and weighted envelopes, so the frame energy is unchanged.

    Parameters
    ----------
    mgc : ndarray [shape=(T, M+1)]
        Mel-cepstra.
    alpha : float
        All-pass constant.
    beta : float
        Enhancement factor (1 = no change).
    fft_size : int
        FFT length for the energies.

    Returns
    -------
    ndarray [shape=(T, M+1)]
    """
    mgc = np.asarray(mgc, dtype=np.float64)
    if mgc.ndim != 2 or mgc.shape[1] < 3:
        raise ValueError(f"postfilter: expected mel-cepstra (T, M+1) with M >= 2, got {mgc.shape}")
    weighted = mgc.copy()
    weighted[:, 2:] *= beta

    def log_energy(c):
        lp = mgc_to_log_power(c, alpha, fft_size)
        top = lp.max(1, keepdims=True)  # ln of the two-sided mean, computed stably
        p = np.exp(lp - top)
        return top[:, 0] + np.log((p[:, 0] + p[:, -1] + 2 * p[:, 1:-1].sum(1)) / fft_size)

    weighted[:, 0] += 0.5 * (log_energy(mgc) - log_energy(weighted))
    return weighted


def round_durations(d: np.ndarray) -> np.ndarray:
    """Predicted frames -> integers, at least 1 per phone (or state)."""
    return np.maximum(np.rint(np.asarray(d, dtype=np.float64)), 1).astype(np.int64)


@torch.no_grad()
def run_model(model, model_cfg: dict, norm, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """One utterance through a trained model, in natural units.

    Parameters
    ----------
    model : nn.Module
        From :func:`sps.models.stage.load_model` (eval mode).
    model_cfg : dict
        Its ``config.yaml`` (``predict_variance``).
    norm : sps.models.data.Normalizer
    x : ndarray [shape=(T, D_in)]
        Raw (un-normalised) inputs.

    Returns
    -------
    y : ndarray [shape=(T, D_out)] float64
        De-normalised outputs.
    var : ndarray [shape=(T, D_out)] or None
        Predicted variances in natural units (models with ``predict_variance``).
    """
    from sps.models.stage import split_output
    if x.ndim != 2 or x.shape[1] != norm.in_dim:
        raise ValueError(f"model input of shape {x.shape}, the model expects (T, {norm.in_dim})")
    xs = torch.from_numpy(norm.inputs(x.astype(np.float64)).astype(np.float32))[None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one short sequence: thread hand-offs per LSTM step cost more than they gain
    try:
        out = model(xs, torch.tensor([xs.shape[1]]))
    finally:
        torch.set_num_threads(threads)
    mean, log_var = split_output(out[0].double(), bool(model_cfg.get("predict_variance")))
    y = norm.unscale_outputs(mean.numpy())
    var = None if log_var is None else np.exp(log_var.numpy()) * norm.out_std ** 2
    return y, var


class Synthesizer:
    """Trained models of an experiment, ready to generate.

    Parameters
    ----------
    exp_dir : path-like
        Experiment directory (``models/``, ``stats/``, ``dump/*.json``).
    config : dict
        :data:`SYNTH_DEFAULTS` keys.
    need_duration : bool
        Load the duration model (not needed with oracle durations).
    """

    def __init__(self, exp_dir: str | os.PathLike, config: dict | None = None, need_duration: bool = True):
        from sps.io import read_json
        from sps.models.data import Normalizer
        from sps.models.stage import load_model
        self.exp = Path(exp_dir)
        self.cfg = {**SYNTH_DEFAULTS, **(config or {})}
        spec_path = self.exp / "dump" / "out_acoustic.json"
        if not spec_path.exists():
            raise FileNotFoundError(f"{spec_path}: stream spec not found (run the features stage)")
        self.spec = read_json(spec_path)
        self.acoustic, self.ac_cfg = load_model(self.exp / "models" / self.cfg["acoustic_model"])
        self.ac_norm = Normalizer.from_exp(self.exp, "in_acoustic", "out_acoustic")
        self.duration = self.dur_cfg = self.dur_norm = None
        if need_duration:
            self.duration, self.dur_cfg = load_model(self.exp / "models" / self.cfg["duration_model"])
            self.dur_norm = Normalizer.from_exp(self.exp, "in_duration", "out_duration")
        self._questions = None

    # -- front end --------------------------------------------------------------------
    def frontend_settings(self) -> tuple[Path, str]:
        """(question file, subphone mode) used for the training data."""
        from sps.frontend import DEFAULT_QUESTION_FILE
        meta: dict = {}
        path = self.exp / "dump" / "in_acoustic.json"
        if path.exists():
            from sps.io import read_json
            meta = read_json(path)
        q = self.cfg["questions"] or meta.get("question_file") or DEFAULT_QUESTION_FILE
        mode = self.cfg["subphone_features"] or meta.get("subphone_features") or "auto"
        return Path(q), str(mode)

    @property
    def questions(self):
        if self._questions is None:
            from sps.frontend import load_questions
            self._questions = load_questions(self.frontend_settings()[0])
        return self._questions

    # -- models -----------------------------------------------------------------------
    def predict_durations(self, phone_features: np.ndarray) -> np.ndarray:
        """Phone-level linguistic features [shape=(N, Q)] -> frames [shape=(N, S)] int64, >= 1."""
        if self.duration is None:
            raise ValueError("no duration model loaded (durations: oracle)")
        d, _ = run_model(self.duration, self.dur_cfg, self.dur_norm, phone_features)
        return round_durations(d)

    def acoustic_params(self, frame_features: np.ndarray) -> np.ndarray:
        """Frame-level linguistic features [shape=(T, L)] -> static features [shape=(T, S)].

        ``S`` columns ``[mgc | lf0 | vuv | bap]`` in natural units (lf0 continuous log
        Hz, vuv the network output), generated by MLPG with the training-data
        variances (or the predicted ones), post-filtered when configured.
        """
        from sps.mlpg import generate_streams
        y, var = run_model(self.acoustic, self.ac_cfg, self.ac_norm, frame_features)
        if var is None:
            var = self.ac_norm.out_std ** 2
        static = generate_streams(y, var, self.spec)
        if self.cfg["postfilter"]:
            from sps.features import split_streams
            mgc = split_streams(static, self.spec)["mgc"]
            a = self.spec["analysis"]
            mgc[...] = postfilter(mgc, float(a["alpha"]), float(self.cfg["postfilter_beta"]), int(a["fft_size"]))
        return static.astype(np.float32)

    def frame_features(self, labels, durations: np.ndarray) -> np.ndarray:
        """Frame-level linguistic features of ``labels`` timed with ``durations`` [shape=(N, S)]."""
        from sps.frontend import linguistic_features
        _, mode = self.frontend_settings()
        timed = labels.with_durations(durations)
        return linguistic_features(timed, self.questions, frame_level=True, subphone_features=mode)

    def from_labels(self, labels) -> np.ndarray:
        """Untimed (or timed: times are ignored) labels -> static features [shape=(T, S)]."""
        from sps.frontend import linguistic_features
        phone = linguistic_features(labels, self.questions, frame_level=False)
        d = self.predict_durations(phone)
        if d.shape[1] != labels.num_states:
            raise ValueError(f"the duration model predicts {d.shape[1]} values per phone, the labels have "
                             f"{labels.num_states} states per phone")
        return self.acoustic_params(self.frame_features(labels, d))

    def waveform(self, static: np.ndarray) -> np.ndarray:
        """Static features [shape=(T, S)] -> WORLD waveform [shape=(T * hop,)] float64."""
        from sps.vocoders.world import synthesize
        return synthesize(static, self.spec, vuv_threshold=float(self.cfg["vuv_threshold"]))
