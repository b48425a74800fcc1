"""Optimizers, curvature tools, schedules and the one Trainer.

Not built yet: this package is the home of issue 4 ("optim: the matrix-aware optimizers, the
curvature package, and the one Trainer") and exports nothing so far.
"""

__all__: list[str] = []
