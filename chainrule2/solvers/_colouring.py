"""The grid colouring of the block-update solvers (:class:`~chainrule2.solvers.ICM`, :class:`~chainrule2.solvers.MeanField`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def colour_classes(shape: tuple[int, int], offsets: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Boolean ``(H, W)`` masks that cover the grid, no pair at one of ``offsets`` joining two pixels of one mask.

    With horizontal and vertical offsets only (N4): the 2 colours of a checkerboard, (i + j) mod 2.
    With a diagonal offset (N8; GridPotts offsets are in {-1, 0, 1}²): the 4 colours
    (i mod 2, j mod 2), 2·(i mod 2) + (j mod 2). Updating every pixel of one class at once, each
    given its neighbours, is then an exact block update: the pixels of a class share no pair, so
    their best responses do not interact.

    The two callers differ with the default 8-neighbourhood. :class:`~chainrule2.solvers.MeanField`
    passes the energy's offsets, gets 4 classes, and each class update is the exact minimiser of
    the free energy over its pixels. :class:`~chainrule2.solvers.ICM` asks for ``N4_OFFSETS``
    whatever the energy's neighbourhood, so it always sweeps the 2 checkerboard colours. With N8
    that is not an exact block update: a diagonal pair, (i, j)–(i+1, j±1), joins two pixels of
    one colour, and each pixel's best label is computed from its diagonal neighbours' labels
    before the half-update, while those neighbours change in the same half-update (two diagonal
    neighbours labelled a and b may each switch to the other's label and still disagree, paying
    both new unaries). The half-update can therefore raise the energy; ICM evaluates each one with
    the exact energy and drops it unless it lowers the energy, which keeps ICM monotone at the
    price of discarding all of that colour's changes for the sweep; a sweep whose two
    half-updates are both dropped reports convergence, at a labelling that need not be a local
    minimum for single-pixel changes. (ICM keeps its 2 colours so that its results stay those of
    the baseline the benchmarks report; 4 colours would make every half-update a descent step.)

    Example
    -------
    >>> from chainrule2.energies.grid import N4_OFFSETS, N8_OFFSETS
    >>> [int(c.sum()) for c in colour_classes((3, 4), N4_OFFSETS)], len(colour_classes((3, 4), N8_OFFSETS))
    ([6, 6], 4)
    """
    h, w = shape
    i, j = np.arange(h)[:, None], np.arange(w)[None, :]
    if all(dy == 0 or dx == 0 for dy, dx in offsets):
        colour = (i + j) % 2
        return [colour == c for c in range(2)]
    colour = 2 * (i % 2) + (j % 2)
    return [colour == c for c in range(4)]
