"""Compatibility shims: other toolkits' call patterns on top of sps.

``sps.compat.nnmnkwii`` takes the differentiable MLPG calls of nnmnkwii
(``nnmnkwii.autograd`` and ``nnmnkwii.paramgen.unit_variance_mlpg_matrix``) with
their semantics, so a training script ports by changing its import lines; see
``docs/mlpg.md``.
"""
