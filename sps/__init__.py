"""sps: statistical parametric speech synthesis in Python.

Subpackages: ``sps.io``, ``sps.frontend``, ``sps.features``, ``sps.mlpg``, ``sps.dsp``,
``sps.models``, ``sps.train``, ``sps.vocoders``, ``sps.metrics``, ``sps.synthesis``.
Nothing heavy is imported here.
"""
__version__ = "0.1.0"
