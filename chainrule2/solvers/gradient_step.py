"""Stage A of plain back-propagation: one exact step on the linearised problem (per item on the host,
or batched in the logits' array namespace and on their device)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from array_api_compat import array_namespace

from chainrule2.base import Batch, BatchResult, Divergence, Loss, SolverState
from chainrule2.divergences import Squared, softmax
from chainrule2.energies.linearized import LinearizedBatch, LinearizedEnergy
from chainrule2.solvers.base import first_state, host_copy, next_state
from chainrule2.validation import check_logits, check_positive


@dataclass(frozen=True)
class GradientStep:
    """x* = S − α∇_S L(S) with α = 1/β: linearised loss, Euclidean trust region (PAPER.md §2).

    Needs ``trust_divergence=Squared()`` and a loss with ``value`` and ``gradient``. With
    a Squared d_B and one SGD step in stage B, the trust region is exactly back-propagation
    with learning rate η·α.

    **Batched, on the model's device.** :meth:`batch_energy` and :meth:`run_batch` take the step
    for N items at once in the logits' array namespace and on their device (float64), for a loss
    whose ``value`` and ``gradient`` compute there (``loss.array_api`` true, e.g.
    :class:`~chainrule2.losses.ScribblePotts`); :class:`~chainrule2.StageA` then takes that path.

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

    def _check(self, loss: Loss, trust_divergence: Divergence, trust_weight: float) -> float:
        beta = check_positive(trust_weight, "trust_weight")
        if not isinstance(trust_divergence, Squared):
            raise TypeError(
                f"trust_divergence: GradientStep solves the Euclidean trust region, expected Squared(), "
                f"got {type(trust_divergence).__name__}"
            )
        for method in ("value", "gradient"):
            if not callable(getattr(loss, method, None)):
                raise TypeError(f"loss: GradientStep needs loss.{method}(probs, batch); {type(loss).__name__} has none")
        return beta

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> list[LinearizedEnergy]:
        check_logits(logits)
        beta = self._check(loss, trust_divergence, trust_weight)
        probs = np.asarray(softmax(np.asarray(logits, dtype=np.float64)))
        values = np.asarray(loss.value(probs, batch), dtype=np.float64)
        grad = np.asarray(loss.gradient(probs, batch), dtype=np.float64)
        return [LinearizedEnergy(probs[i], float(values[i]), grad[i], beta) for i in range(probs.shape[0])]

    def batch_supported(self, loss: Loss) -> bool:
        """Whether ``loss.value`` and ``loss.gradient`` compute in any array namespace (``loss.array_api``)."""
        return getattr(loss, "array_api", False) is True

    def batch_energy(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> LinearizedBatch:
        """The N problems of :meth:`energies` as one :class:`LinearizedBatch`, in ``logits``' namespace and device."""
        xp = check_logits(logits)
        beta = self._check(loss, trust_divergence, trust_weight)
        probs = softmax(xp.astype(logits, xp.float64))
        values, grad = loss.value(probs, batch), loss.gradient(probs, batch)
        for name, x in (("value", values), ("gradient", grad)):
            try:
                same = array_namespace(x) is xp
            except TypeError:
                same = False
            if not same:
                raise TypeError(
                    f"loss: GradientStep.batch_energy needs loss.{name} in the logits' namespace; "
                    f"{type(loss).__name__}.{name} returned {type(x).__module__}.{type(x).__name__}"
                )
        return LinearizedBatch(probs, xp.astype(values, xp.float64), xp.astype(grad, xp.float64), beta)

    def init(self, energy: LinearizedEnergy, initial: Any = None) -> SolverState:
        start = energy.probs.copy() if initial is None else np.array(initial, dtype=np.float64)
        if start.shape != energy.shape:
            raise ValueError(f"initial: expected shape {energy.shape}, got {start.shape}")
        return first_state(start, energy.value(start))

    def step(self, energy: LinearizedEnergy, state: SolverState) -> SolverState:
        solution = energy.probs - energy.grad / energy.trust_weight
        return next_state(state, solution, energy.value(solution), converged=True)

    def run_batch(self, energy: LinearizedBatch, initials: Sequence[Any] | None = None) -> BatchResult:
        """The step for every item at once: ``solutions`` ``(N, ..., L)`` in the energy's namespace;
        ``traces`` per item (E at the start, ``initials[n]`` or S, and at x*), as :func:`~chainrule2.solvers.run`."""
        if not isinstance(energy, LinearizedBatch):
            raise TypeError(f"energy: GradientStep.run_batch solves a LinearizedBatch, got {type(energy).__name__}")
        xp = array_namespace(energy.probs)
        n = energy.shape[0]
        start = energy.probs
        if initials is not None:
            initials = list(initials)
            if len(initials) != n:
                raise ValueError(f"initials: expected {n} items (one per batch item), got {len(initials)}")
            rows = []
            for i, a in enumerate(initials):
                if a is not None and tuple(int(s) for s in a.shape) != energy.shape[1:]:
                    raise ValueError(f"initials[{i}]: expected shape {energy.shape[1:]}, got {tuple(a.shape)}")
                rows.append(energy.probs[i, ...] if a is None else xp.astype(a, xp.float64))
            start = xp.stack(rows)
        solution = energy.probs - energy.grad / energy.trust_weight
        values = np.asarray(host_copy(xp.stack([energy.value(start), energy.value(solution)])), dtype=np.float64)
        return BatchResult(solution, tuple((float(values[0, i]), float(values[1, i])) for i in range(n)))
