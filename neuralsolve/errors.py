"""Exceptions and warning categories of neuralsolve.

The rule (see CONVENTIONS.md, 8): ``TypeError`` for the wrong kind of object, ``ValueError`` or
one of its subclasses below for bad values. Every message says what was expected, what came,
and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceError",
    "DataFormatError",
    "DeviceError",
    "FileWriteError",
    "GridStructureError",
    "GridTransferWarning",
    "InvalidTypeError",
    "NeuralSolveWarning",
    "NonFiniteError",
    "NotSPDError",
    "PreconditionerShiftWarning",
    "RunLockedError",
]


class InvalidTypeError(TypeError, ValueError):
    """An argument of the wrong kind: a string where a number belongs, a float or a ``bool``
    where an integer belongs (raised by :mod:`neuralsolve.checks`).

    A ``TypeError``, as the rule says; also a ``ValueError`` because the argument checks it
    replaced raised one or the other for the same mistake, and callers catching either keep
    working.
    """


class NotSPDError(ValueError):
    """The operator is known not to be symmetric positive definite, but the method needs SPD."""


class NonFiniteError(ValueError):
    """An input holds NaN or infinite values."""


class DataFormatError(ValueError):
    """A file is missing, unreadable, or lacks a key the reader needs (the message names both)."""


class DeviceError(ValueError):
    """A torch device that this machine or this torch build does not have (``cuda`` on a CPU
    build, ``cuda:3`` with two GPUs), or a device name torch does not know."""


class FileWriteError(OSError):
    """An output file could not be written: read-only directory, a directory in the way, a
    full disk. The message names the file and the cause; ``errno`` is the underlying one.

    The earlier file at that path, if any, is left as it was (writes are atomic).
    """

    def __str__(self) -> str:
        return self.strerror if isinstance(self.strerror, str) else super().__str__()


class GridStructureError(ValueError):
    """A method that works on structured grids was given an operator without grid structure."""


class ConvergenceError(RuntimeError):
    """Raised by :meth:`SolveResult.raise_for_status` when a solve did not converge."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class NeuralSolveWarning(UserWarning):
    """Base class of the warnings neuralsolve emits (filter them with this category)."""


class PreconditionerShiftWarning(NeuralSolveWarning):
    """An incomplete factorization broke down and was retried with a diagonal shift."""


class RunLockedError(ValueError):
    """A run's output directory is in use by another live run (see :mod:`neuralsolve.runlock`)."""


class GridTransferWarning(NeuralSolveWarning):
    """A model tied to its training grid (LSM) was evaluated on another grid because it was
    asked to (``allow_other_grid=True``, ``neuralsolve eval --allow-other-grid``); the message
    gives the measured error of such a transfer."""
