"""Regularised losses: each builds its stage-A energies and offers a relaxed, differentiable form."""

from chainrule2.losses.chain import ChainScribblePotts

__all__ = ["ChainScribblePotts"]
