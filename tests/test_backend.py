"""The one backend vocabulary: names, automatic choice, errors."""
import pytest
import torch

from sps.backend import BACKENDS, resolve_backend


def test_auto_takes_the_first_that_runs_here(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_backend(None, cpu, what="f", choices=("cuda_graph", "native", "torch"),
                           native=lambda: object()) == "native"
    assert resolve_backend("auto", cpu, what="f", choices=("cuda_graph", "native", "torch"),
                           native=lambda: None) == "torch"
    # the Triton interpreter runs Triton on the CPU when asked by name, never by auto
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("auto", cpu, what="f", choices=("triton", "torch")) == "torch"
    if __import__("importlib").util.find_spec("triton"):
        assert resolve_backend("triton", cpu, what="f", choices=("triton", "torch")) == "triton"


@pytest.mark.parametrize("name,match", [("gpu", "unknown backend 'gpu'"), ("triton", "no 'triton' backend"),
                                        ("native", "needs a C compiler"), ("cuda_graph", "needs CUDA tensors")])
def test_errors_name_the_problem(name, match):
    with pytest.raises(ValueError, match=match):
        resolve_backend(name, torch.device("cpu"), what="f", choices=("native", "cuda_graph", "torch"),
                        native=lambda: None)


def test_vocabulary():
    assert BACKENDS == ("auto", "torch", "native", "triton", "cuda_graph")
