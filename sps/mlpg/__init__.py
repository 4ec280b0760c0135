"""Maximum-likelihood parameter generation (MLPG) on CPU and GPU.

Public API::

    from sps.mlpg import mlpg, unit_variance_mlpg, MLPG, default_windows, solve_banded
    from sps.mlpg import generate_streams, mge_loss, static_columns

See ``docs/mlpg.md`` for the maths and benchmarks.
"""
from sps.spec import default_windows, static_columns

from .banded import solve_banded
from .core import MLPG, mlpg, unit_variance_mlpg
from .mge import generate_streams, mge_loss

__all__ = ["mlpg", "unit_variance_mlpg", "MLPG", "default_windows", "solve_banded",
           "generate_streams", "mge_loss", "static_columns"]
