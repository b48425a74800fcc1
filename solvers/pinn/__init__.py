"""Pieces of the PINN solver: the bounded normalizing flow the AAS sampler will sample from."""

from .flow import AffineCoupling, BoundedFlow

__all__ = ["AffineCoupling", "BoundedFlow"]
