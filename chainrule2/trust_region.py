"""The robust trust region ("generalized chain rule"): stage A in output space, stage B on θ."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chainrule2._validation import check_logits, check_positive
from chainrule2.base import Batch, Composite, FitReport, Proposal, StageAReport, StepReport, as_items
from chainrule2.solvers.base import solve_batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrustRegion:
    """One outer step = stage A (``propose``) then stage B (``fit``).

    Stage A solves, per item, ``min_x loss(x) + trust_weight · d_A(x, S_θ)`` with ``stage_a``;
    stage B moves θ toward the solution with ``stage_b`` (which owns d_B and the optimizer).

    Parameters
    ----------
    stage_a : Subproblem
        E.g. :class:`~chainrule2.solvers.GradientStep` or a discrete solver.
    stage_b : Fitter
        E.g. ``chainrule2_torch.OptimizerFitter`` or :class:`~chainrule2.models.SGDFitter`.
    trust_divergence : Divergence
        d_A, the trust region around the current prediction.
    trust_weight : float
        β ≥ 0.
    batch_solver : callable or None
        ``batch_solver(solver, energies, initials) -> list[SolverState]``; default a serial loop
        (:func:`chainrule2.solvers.solve_batch`). Pass a parallel one for large batches.

    Configurations of note (PAPER.md §2): GradientStep + Squared d_A/d_B + one stage-B step is
    back-propagation; a discrete solver + CrossEntropy d_A/d_B + one step is ADM; a discrete
    solver + RobustCrossEntropy d_B + many steps is the robust trust region.
    """

    stage_a: Any
    stage_b: Any
    trust_divergence: Any
    trust_weight: float
    batch_solver: Any = None

    def __post_init__(self) -> None:
        check_positive(self.trust_weight, "trust_weight", allow_zero=True)
        for method in ("init", "step", "energies", "max_steps"):
            if not callable(getattr(self.stage_a, method, None)):
                raise TypeError(f"stage_a: expected a Subproblem with {method}(), got {type(self.stage_a).__name__}")
        if not callable(getattr(self.stage_b, "fit", None)):
            raise TypeError(
                f"stage_b: expected a Fitter with fit(model, batch, targets), got {type(self.stage_b).__name__}"
            )
        if not callable(getattr(self.trust_divergence, "label_costs", None)):
            raise TypeError(f"trust_divergence: expected a Divergence, got {type(self.trust_divergence).__name__}")

    def propose(self, composite: Composite, batch: Batch, initial: Sequence[Any] | None = None) -> Proposal:
        """Stage A only: targets for every item of ``batch`` (cache them, augment them, reuse them).

        ``initial`` is an optional per-item warm start (e.g. the cached previous solution).
        """
        start = time.perf_counter()
        logits = composite.model.predict(batch.inputs)
        if not isinstance(logits, np.ndarray):
            raise TypeError(f"model.predict: expected a host numpy array of logits, got {type(logits).__name__}")
        check_logits(logits, "model.predict(inputs)")
        predicted = time.perf_counter()
        energies = self.stage_a.energies(composite.loss, logits, batch, self.trust_divergence, self.trust_weight)
        initials = as_items(initial, len(energies), "initial")
        batch_solver = solve_batch if self.batch_solver is None else self.batch_solver
        states = batch_solver(self.stage_a, energies, initials)
        targets = np.stack([state.solution for state in states])
        report = StageAReport(
            traces=tuple(state.trace for state in states),
            predict_seconds=predicted - start,
            solve_seconds=time.perf_counter() - predicted,
        )
        logger.debug("stage A: energy %.6g in %.3fs", report.energy, report.seconds)
        return Proposal(targets, report)

    def fit(self, composite: Composite, batch: Batch, targets: Any) -> FitReport:
        """Stage B only: fit the model to ``targets`` (from ``propose`` or a cache)."""
        return self.stage_b.fit(composite.model, batch, targets)

    def step(self, composite: Composite, batch: Batch, initial: Sequence[Any] | None = None) -> StepReport:
        """``propose`` then ``fit`` on the same batch."""
        proposal = self.propose(composite, batch, initial)
        return StepReport(proposal.report, self.fit(composite, batch, proposal.targets), proposal.targets)
