"""Stage-A problems as immutable data (one per item); ``value`` is exact."""

from chainrule2.energies.bilateral import BilateralKernel
from chainrule2.energies.chain import ChainPotts
from chainrule2.energies.dense import DenseMeanFieldBatch, DenseMeanFieldEnergy
from chainrule2.energies.grid import GridPotts, contrast_weights
from chainrule2.energies.linearized import LinearizedEnergy
from chainrule2.energies.mean_field import MeanFieldEnergy

__all__ = [
    "BilateralKernel",
    "ChainPotts",
    "DenseMeanFieldBatch",
    "DenseMeanFieldEnergy",
    "GridPotts",
    "LinearizedEnergy",
    "MeanFieldEnergy",
    "contrast_weights",
]
