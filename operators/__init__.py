"""Neural operators: DeepONet, LSM (latent spectral models), T1 (transform once), and FNO as
the baseline; each an ``nn.Module`` with a dataclass config, made by name::

    model = ns.operators.create("lsm", in_channels=1, width=32)

Inputs are ``(batch, in_channels, *grid)``, outputs ``(batch, out_channels, *grid)``.
:mod:`.training` trains them on HDF5 datasets through :class:`neuralsolve.optim.Trainer` and
evaluates checkpoints. :mod:`.dcdm_train` trains the DCDM solver's network the same way (not
imported here: ``from neuralsolve.operators.dcdm_train import train_dcdm``).
"""

from .base import MODELS, OperatorConfig, available, config_dict, create, make_config
from .deeponet import DeepONet, DeepONetConfig
from .fno import FNO, FNOConfig, SpectralConv
from .lsm import LSM, LSMConfig
from .t1 import T1, T1Config, spectral_relative_l2
from .training import (
    NormalizedOperator,
    evaluate,
    load_operator,
    plot_predictions,
    relative_l2,
    train_operator,
)

__all__ = [
    "FNO",
    "LSM",
    "MODELS",
    "T1",
    "DeepONet",
    "DeepONetConfig",
    "FNOConfig",
    "LSMConfig",
    "NormalizedOperator",
    "OperatorConfig",
    "SpectralConv",
    "T1Config",
    "available",
    "config_dict",
    "create",
    "evaluate",
    "load_operator",
    "make_config",
    "plot_predictions",
    "relative_l2",
    "spectral_relative_l2",
    "train_operator",
]
