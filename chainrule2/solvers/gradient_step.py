"""Stage A of plain back-propagation: one exact step on the linearised problem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from chainrule2.base import Batch, Divergence, Loss, SolverState
from chainrule2.divergences import Squared, softmax
from chainrule2.energies.linearized import LinearizedEnergy
from chainrule2.solvers.base import first_state, next_state
from chainrule2.validation import check_logits, check_positive


@dataclass(frozen=True)
class GradientStep:
    """x* = S − α∇_S L(S) with α = 1/β: linearised loss, Euclidean trust region (PAPER.md §2).

    Needs ``trust_divergence=Squared()`` and a loss with ``value`` and ``gradient``. With
    a Squared d_B and one SGD step in stage B, the trust region is exactly back-propagation
    with learning rate η·α.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.linearized import LinearizedEnergy
    >>> from chainrule2.solvers import GradientStep, run
    >>> e = LinearizedEnergy(np.array([[0.5, 0.5]]), 1.0, np.array([[1.0, -1.0]]), trust_weight=4.0)
    >>> run(GradientStep(), e).solution
    array([[0.25, 0.75]])
    """

    monotone: ClassVar[bool] = True

    def max_steps(self) -> int:
        return 1

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> list[LinearizedEnergy]:
        check_logits(logits)
        beta = check_positive(trust_weight, "trust_weight")
        if not isinstance(trust_divergence, Squared):
            raise TypeError(
                f"trust_divergence: GradientStep solves the Euclidean trust region, expected Squared(), "
                f"got {type(trust_divergence).__name__}"
            )
        for method in ("value", "gradient"):
            if not callable(getattr(loss, method, None)):
                raise TypeError(f"loss: GradientStep needs loss.{method}(probs, batch); {type(loss).__name__} has none")
        probs = np.asarray(softmax(np.asarray(logits, dtype=np.float64)))
        values = np.asarray(loss.value(probs, batch), dtype=np.float64)
        grad = np.asarray(loss.gradient(probs, batch), dtype=np.float64)
        return [LinearizedEnergy(probs[i], float(values[i]), grad[i], beta) for i in range(probs.shape[0])]

    def init(self, energy: LinearizedEnergy, initial: Any = None) -> SolverState:
        start = energy.probs.copy() if initial is None else np.array(initial, dtype=np.float64)
        if start.shape != energy.shape:
            raise ValueError(f"initial: expected shape {energy.shape}, got {start.shape}")
        return first_state(start, energy.value(start))

    def step(self, energy: LinearizedEnergy, state: SolverState) -> SolverState:
        solution = energy.probs - energy.grad / energy.trust_weight
        return next_state(state, solution, energy.value(solution), converged=True)
