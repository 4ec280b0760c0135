"""The aligner as a library object: train, save, load, align.

>>> from sps.align import Aligner
>>> aligner = Aligner.load("exp/voice/align/model.pt")                    # doctest: +SKIP
>>> result = aligner.align(audio, 16000, "What time does it start?")       # doctest: +SKIP
>>> result.labels.to_text()          # phone-aligned HTS full-context labels  # doctest: +SKIP
>>> result.state_labels.to_text()    # state-aligned (HTS convention [2]..[S+1])  # doctest: +SKIP

``align`` takes the transcript (run through Festival's front end), Festival's untimed
labels (:class:`sps.frontend.Labels`, or a list of contexts), decides where pauses go,
finds the best state path (Viterbi with the model's beam and minimum state duration)
and returns an :class:`Alignment`. An utterance that cannot be aligned raises
:class:`AlignmentError` with the reason.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sps.align.context import apply_pauses, merge_pauses, phone_of
from sps.align.features import align_features
from sps.align.graph import Graph, segments
from sps.align.hmm import batch_graphs, viterbi
from sps.align.model import HmmSet
from sps.align.train import AlignerConfig, Example, batches, make_graph, one_thread, train
from sps.frontend import Labels


class AlignmentError(ValueError):
    """An utterance cannot be aligned (beam failure, audio too short, unknown phone, ...)."""


@dataclass
class Alignment:
    """The alignment of one utterance.

    labels : Labels
        Phone-aligned full-context labels (times in 100 ns on the frame grid), with the
        chosen pauses (:mod:`sps.align.context`).
    state_labels : Labels
        The same phones, state-aligned (``num_states`` states each).
    loglik : float
        Log-likelihood of the best path.
    frames : int
        Frames of the utterance.
    pauses_added, pauses_dropped : int
        Word-boundary pauses inserted; Festival's phrase pauses left out.
    """
    labels: Labels
    state_labels: Labels
    loglik: float
    frames: int
    pauses_added: int = 0
    pauses_dropped: int = 0

    @property
    def loglik_per_frame(self) -> float:
        return self.loglik / max(1, self.frames)


def as_contexts(labels) -> list[str]:
    """Festival's contexts from ``Labels``, a label file path, or a sequence of contexts."""
    if isinstance(labels, Labels):
        return list(labels.contexts)
    if isinstance(labels, (str, os.PathLike)) and Path(labels).suffix == ".lab":
        from sps.frontend import load_labels
        return list(load_labels(labels).contexts)
    return [str(c) for c in labels]


@dataclass
class Aligner:
    """A trained HMM set with the options it aligns with."""
    model: HmmSet
    config: AlignerConfig = field(default_factory=AlignerConfig)

    # ---------------------------------------------------------------- construction
    @classmethod
    def train(cls, examples: Sequence[Example], config: AlignerConfig = AlignerConfig(), jobs: int = 1,
              backend: str | None = "auto", log=None) -> "Aligner":
        """Train from a flat start (:func:`sps.align.train.train`) on examples made with
        :meth:`example`."""
        return cls(train(examples, config, jobs, backend, log), config)

    def example(self, utt: str, audio: np.ndarray, sample_rate: int, labels) -> Example:
        """A training example from audio and Festival's labels."""
        return make_example(utt, audio, sample_rate, labels, self.config)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model and its options (tensors and plain types; atomic)."""
        from sps.config import to_dict
        from sps.io import atomic_path
        state = self.model.state_dict()
        cfg = to_dict(self.config)
        cfg.pop("features")
        state["config"] = cfg
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides) -> "Aligner":
        """A saved aligner (``torch.load(weights_only=True)``); ``overrides`` change alignment
        options (``beam``, ``min_duration``, ``word_pauses`` ...)."""
        from sps.config import bind
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: aligner model not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
            raise ValueError(f"{path}: cannot read aligner model ({type(err).__name__}: {err})") from None
        model = HmmSet.from_state_dict(state, str(path))
        cfg = dict(state.get("config", {}))
        cfg.update(overrides)
        cfg["features"] = model.features.to_dict()
        cfg["num_states"] = model.num_states
        return cls(model, bind(AlignerConfig, cfg, str(path)))

    # ---------------------------------------------------------------- aligning
    def align(self, audio: np.ndarray, sample_rate: int, labels, words: Sequence[str] | None = None,
              backend: str | None = "auto") -> Alignment:
        """Align one utterance.

        Parameters
        ----------
        audio : ndarray [shape=(N,)]
            Mono waveform.
        sample_rate : int
            Hz.
        labels : str, Labels or sequence of str
            The transcript (Festival's front end makes the labels), or Festival's untimed
            labels.
        backend : {"auto", "torch", "native"}

        Raises
        ------
        AlignmentError
            With the reason (beam failure, audio too short, phone not in the model).
        """
        if isinstance(labels, str) and not labels.endswith(".lab"):
            from sps.frontend import text_to_labels
            labels = text_to_labels(labels)
        ex = make_example("utt", audio, sample_rate, labels, self.config)
        out = self.align_examples([ex], backend=backend)["utt"]
        if isinstance(out, str):
            raise AlignmentError(out)
        return out

    def align_examples(self, examples: Sequence[Example], backend: str | None = "auto") -> dict:
        """Align many utterances: ``utt -> Alignment``, or ``utt -> reason`` for those that fail
        (on one thread: :func:`sps.align.train.one_thread`)."""
        with one_thread():
            return self._align_examples(examples, backend)

    def _align_examples(self, examples, backend) -> dict:
        results: dict = {}
        items = []
        for ex in examples:
            try:
                graph = make_graph(ex.contexts, self.model.models, self.config, pauses=True)
            except ValueError as err:
                results[ex.utt] = str(err)
                continue
            if ex.features.shape[0] < graph.min_frames:
                results[ex.utt] = (f"audio too short: {ex.features.shape[0]} frames for {graph.min_frames} "
                                   f"states ({len(graph.units)} phones)")
                continue
            items.append((ex, graph))
        for idx in batches([(ex.features.shape[0], len(g)) for ex, g in items], self.config.batch_states):
            todo = [items[i] for i in idx]
            for beam in (self.config.beam, self.config.retry_beam):
                paths, scores = self._viterbi(todo, beam, backend)
                left = []
                for (ex, graph), path, score in zip(todo, paths, scores):
                    if math.isfinite(score):
                        results[ex.utt] = self._alignment(ex, graph, path, score)
                    else:
                        left.append((ex, graph))
                todo = left
                if not todo:
                    break
            for ex, _ in todo:
                results[ex.utt] = f"no path within the beam ({self.config.retry_beam:g})"
        return results

    def _viterbi(self, items, beam, backend):
        log_bs = [self.model.state_log_likelihood(torch.from_numpy(ex.features), g)[0] for ex, g in items]
        inputs = batch_graphs([g for _, g in items], log_bs, self.model.log_loop(), self.model.log_enter())
        path, score = viterbi(**inputs, beam=beam, backend=backend)
        return ([path[b, :ex.features.shape[0]].numpy() for b, (ex, _) in enumerate(items)],
                [float(s) for s in score])

    def _alignment(self, ex: Example, graph: Graph, path: np.ndarray, score: float) -> Alignment:
        used, bounds = segments(graph, path)
        contexts, kept = apply_pauses(ex.contexts, graph.units, used)
        fs = self.model.features.frame_shift_100ns
        times = bounds * fs
        S = self.model.num_states
        state_labels = Labels(contexts=contexts, times=times, num_states=S, path=ex.utt)
        labels = Labels(contexts=contexts, times=times[:, [0, S]], num_states=1, path=ex.utt)
        added = sum(1 for k in kept if graph.units[k].index is None)
        dropped = sum(1 for k, u in enumerate(graph.units) if u.optional is not None and u.index is not None
                      and not used[k])
        return Alignment(labels=labels, state_labels=state_labels, loglik=score, frames=int(path.shape[0]),
                         pauses_added=added, pauses_dropped=dropped)


def make_example(utt: str, audio: np.ndarray, sample_rate: int, labels, config: AlignerConfig) -> Example:
    """Features of ``audio`` and the contexts of ``labels`` (see :func:`as_contexts`)."""
    contexts = merge_pauses(as_contexts(labels))
    if not contexts:
        raise AlignmentError(f"{utt}: no phones to align")
    for c in contexts:
        phone_of(c)   # raises for a label that is not full-context
    return Example(utt, align_features(audio, sample_rate, config.features), contexts)
