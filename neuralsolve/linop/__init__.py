"""One linear-operator protocol for every solver, preconditioner and curvature matrix.

Anything with ``shape``, ``dtype``, ``device`` and ``matvec`` (and ``@``) is an operator.
:func:`as_operator` turns a torch tensor (dense or sparse), a numpy array, a scipy sparse matrix,
a scipy ``LinearOperator`` or a plain callable into a :class:`LinearOperator`. Subclasses
implement ``_matmat`` (and ``_transpose`` where they can) and get ``@``, ``+``, ``-``, scalar
``*``, ``.T``, ``to_dense()`` and ``to_scipy()``.

Structure is declared, never guessed by calling ``matvec``: ``symmetric`` and
``positive_definite`` are ``True`` (declared or verified), ``False`` (known not to hold) or
``None`` (unknown). Explicit matrices get ``symmetric`` checked exactly when they are wrapped, and
``positive_definite=False`` when a diagonal entry is not positive (a necessary condition for
SPD).

The package's modules, along its seams: :mod:`.base` (the protocol, dtype and device rules, and the
sum, scale and product its operators build), :mod:`.matrices` (dense, sparse, diagonal,
identity, callable), :mod:`.conversion` (:func:`as_operator`) and :mod:`.tags` (tag inference). Import from
``neuralsolve.linop``: every name below stays here whichever module holds it.
"""

# The names outside __all__ are imported "as" themselves: re-exported for the modules that
# import them from here, as before the split.
from .base import MAX_DENSE_ELEMENTS as MAX_DENSE_ELEMENTS
from .base import SUPPORTED_DTYPES as SUPPORTED_DTYPES
from .base import LinearOperator
from .base import ProductOperator as ProductOperator
from .base import ScaledOperator as ScaledOperator
from .base import SumOperator as SumOperator
from .base import check_dtype as check_dtype
from .base import same_device as same_device
from .base import torch_dtype as torch_dtype
from .conversion import as_operator
from .matrices import (
    CallableOperator,
    DenseOperator,
    DiagonalOperator,
    IdentityOperator,
    SparseOperator,
)
from .matrices import canonical_csr as canonical_csr
from .matrices import check_compressed_arrays as check_compressed_arrays
from .matrices import csr_tensor_from_arrays as csr_tensor_from_arrays
from .matrices import quiet_sparse_warnings as quiet_sparse_warnings

__all__ = [
    "CallableOperator",
    "DenseOperator",
    "DiagonalOperator",
    "IdentityOperator",
    "LinearOperator",
    "SparseOperator",
    "as_operator",
]
