"""Neural operators (DeepONet, LSM, T1, FNO baseline) trained on HDF5 datasets.

Not built yet: this package is the home of issue 5 ("Neural operators on HDF5 datasets") and
exports nothing so far.
"""

__all__: list[str] = []
