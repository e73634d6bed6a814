"""Regularised losses: each builds its stage-A energies and offers a relaxed, differentiable form."""

from chainrule2.losses.chain import ChainScribblePotts
from chainrule2.losses.dense import DenseCRFLoss
from chainrule2.losses.scribble import ScribblePotts

__all__ = ["ChainScribblePotts", "DenseCRFLoss", "ScribblePotts"]
