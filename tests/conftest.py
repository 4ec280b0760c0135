"""Fixtures shared by the test modules."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

CORPUS = Path(__file__).resolve().parents[1] / "data" / "slt_festival"


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add overhead (and contention in CI)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def corpus_exp(tmp_path):
    """``corpus_exp(n=3, extra=(), name="exp")``: an experiment over the first ``n`` shipped
    utterances (+ ``extra`` (utt, wav, lab) triples), all in the train list; returns
    ``(exp_dir, [(utt, wav, lab), ...])``."""
    def make(n=3, extra=(), name="exp"):
        wavs = sorted((CORPUS / "wav").glob("*.flac"))[:n]
        utts = [(w.stem, w, CORPUS / "lab" / f"{w.stem}.lab") for w in wavs] + list(extra)
        data = tmp_path / name / "data"
        data.mkdir(parents=True)
        (data / "wav.scp").write_text("".join(f"{u} {w}\n" for u, w, _ in utts))
        (data / "lab.scp").write_text("".join(f"{u} {lab}\n" for u, _, lab in utts))
        (data / "train.list").write_text("".join(f"{u}\n" for u, _, _ in utts))
        return tmp_path / name, utts
    return make
