"""Pieces of the PINN solver: collocation-point samplers (uniform, Sobol, Latin hypercube,
RAR-G, RAR-D, RAD, AAS) behind one interface, the bounded normalizing flow AAS samples from,
and ``error_sources`` (which part of a 2-D Poisson PINN's error its residual and its boundary
misfit cause).

    from neuralsolve.domain import Box
    from neuralsolve.solvers.pinn import make_sampler

    sampler = make_sampler("rad", Box.cube(2, -1.0, 1.0), 2000)
    X = sampler.initial(generator=g)                  # (2000, 2), round 0
    X = sampler.update(X, residual_fn, generator=g)   # each later round
"""

from .diagnostics import error_sources
from .flow import AffineCoupling, BoundedFlow
from .networks import ACTIVATIONS, MLP, FourierMLP
from .samplers import (
    SAMPLERS,
    AASSampler,
    LatinHypercubeSampler,
    RADSampler,
    RARDSampler,
    RARGSampler,
    ResidualFn,
    Sampler,
    SobolSampler,
    UniformSampler,
    aas_flow_loss,
    available_samplers,
    check_residuals,
    make_sampler,
)

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "SAMPLERS",
    "AASSampler",
    "AffineCoupling",
    "BoundedFlow",
    "FourierMLP",
    "LatinHypercubeSampler",
    "RADSampler",
    "RARDSampler",
    "RARGSampler",
    "ResidualFn",
    "Sampler",
    "SobolSampler",
    "UniformSampler",
    "aas_flow_loss",
    "available_samplers",
    "check_residuals",
    "error_sources",
    "make_sampler",
]
