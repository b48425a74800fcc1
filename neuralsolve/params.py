"""Marks on model parameters that optimizers read: set by the models, read by ``optim``.

A neutral core module, so that a model (``operators.fno``, ``operators.t1``) can mark its
weights without importing an optimizer, and an optimizer (:class:`neuralsolve.optim.Muon`) can
read the mark without importing a model.
"""

from __future__ import annotations

import torch

__all__ = ["MATRIX_DIMS", "matrix_dims"]

# Name of the parameter attribute that tells Muon how to read a parameter as matrices.
MATRIX_DIMS = "matrix_dims"


def matrix_dims(param: torch.Tensor, dims: tuple[int, int] | None) -> torch.Tensor:
    """Tell :class:`~neuralsolve.optim.Muon` how to read ``param`` as matrices; returns ``param``.

    ``dims = (rows, cols)``: ``param`` is a stack of matrices along those two axes, indexed by
    the others, and Muon orthogonalises each matrix on its own. This is the right geometry for
    weights that act per mode, such as T1's per-mode channel mixing ``(modes, in, out)`` (dims
    ``(1, 2)``): without the mark, Muon reads a parameter as ``(shape[0], rest)``, right for a
    convolution kernel but for T1's 1024 per-mode ``32 x 32`` matrices one ``1024 x 1024``
    matrix. ``dims = None``: not a matrix (a bias or gain stored with several axes); Muon gives
    it AdamW.

    The mark is an attribute of the parameter object: it follows ``module.to(...)`` but, as any
    attribute, not ``copy.deepcopy`` (torch copies a parameter's data alone).
    """
    if dims is not None:
        if len(dims) != 2:
            raise ValueError(f"dims must be (rows, cols) or None, got {dims!r}")
        rows, cols = (
            d % param.ndim if isinstance(d, int) and -param.ndim <= d < param.ndim else None
            for d in dims
        )
        if rows is None or cols is None or rows == cols:
            raise ValueError(
                f"dims {dims!r} are not two different axes of a parameter of shape "
                f"{tuple(param.shape)}"
            )
        dims = (rows, cols)
    setattr(param, MATRIX_DIMS, dims)
    return param
