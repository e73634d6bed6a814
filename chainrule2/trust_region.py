"""The robust trust region ("generalized chain rule"): stage A in output space, stage B on θ."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from chainrule2.base import Batch, Composite, Divergence, FitReport, Fitter, Loss, Proposal, StepReport, Subproblem
from chainrule2.solvers.base import BatchSolver
from chainrule2.stage_a import StageA
from chainrule2.trust_radius import BetaSearch
from chainrule2.validation import check_instance


def _items(x: Any) -> int | None:
    """The leading (batch) size of an array, or None (left to :class:`~chainrule2.StageA` to refuse)."""
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) >= 1 else None


@dataclass(frozen=True)
class TrustRegion:
    """One outer step = stage A (``propose``) then stage B (``fit``) on the same batch.

    Stage A solves, per item, ``min_x loss(x) + trust_weight · d_A(x, S_θ)`` with ``stage_a``
    (through :class:`~chainrule2.StageA`); stage B moves θ toward the solution with ``stage_b``
    (which owns d_B and the optimizer). Only needed for :meth:`step`: a training loop that has its
    own logits, optimizer and criterion uses :class:`~chainrule2.StageA` alone.

    Parameters
    ----------
    stage_a : Subproblem
        E.g. :class:`~chainrule2.solvers.GradientStep` or a discrete solver.
    stage_b : Fitter
        E.g. ``chainrule2_torch.OptimizerFitter`` or :class:`~chainrule2.models.SGDFitter`.
    trust_divergence : Divergence
        d_A, the trust region around the current prediction.
    trust_weight : float or "auto"
        β ≥ 0, or ``"auto"``: per item, the β of the adaptive trust region (:class:`~chainrule2.StageA`).
    batch_solver : callable or None
        ``batch_solver(solver, energies, initials) -> list[SolverState]``; default a serial loop
        (:func:`chainrule2.solvers.solve_batch`). Pass a parallel one for large batches.
    max_changed, beta_search : as in :class:`~chainrule2.StageA`
        Only with ``trust_weight="auto"``: the radius τ and the β search.

    Configurations of note (PAPER.md §2): GradientStep + Squared d_A/d_B + one stage-B step is
    back-propagation; a discrete solver + CrossEntropy d_A/d_B + one step is ADM; a discrete
    solver + RobustCrossEntropy d_B + many steps is the robust trust region.
    """

    stage_a: Subproblem
    stage_b: Fitter
    trust_divergence: Divergence
    trust_weight: float | str
    batch_solver: BatchSolver | None = None
    max_changed: float | str | None = None
    beta_search: BetaSearch | None = None

    def __post_init__(self) -> None:
        check_instance(self.stage_b, "stage_b", call="(...)")  # the class has a fit function too
        if not callable(getattr(self.stage_b, "fit", None)):
            raise TypeError(
                f"stage_b: expected a Fitter with fit(model, batch, targets), got {type(self.stage_b).__name__}"
            )
        # β, the solver, d_A and batch_solver are checked where StageA checks them (the loss comes with each batch)
        self.stage_a_for(cast(Loss, None))

    def stage_a_for(self, loss: Loss) -> StageA:
        """The :class:`~chainrule2.StageA` of this trust region for ``loss``."""
        try:
            return StageA(
                self.stage_a, loss, self.trust_divergence, self.trust_weight, self.batch_solver,
                max_changed=self.max_changed, beta_search=self.beta_search,
            )  # fmt: skip
        except TypeError as err:  # name the argument as the caller spelled it
            raise TypeError(str(err).replace("solver:", "stage_a:", 1)) from None

    def propose(
        self,
        composite: Composite,
        batch: Batch,
        initial: Sequence[Any] | None = None,
        beta_hint: Sequence[float | None] | None = None,
    ) -> Proposal:
        """Stage A only: targets for every item of ``batch`` (cache them, augment them, reuse them).

        The logits are ``composite.model.predict(batch.inputs)`` (eval mode, no gradient);
        ``initial`` is an optional per-item warm start (e.g. the cached previous solution);
        ``beta_hint`` (``trust_weight="auto"`` only) the per-item β to start the search from (e.g.
        the previous ``report.betas``, ``None`` for an item without one).
        """
        start = time.perf_counter()
        logits = composite.model.predict(batch.inputs)
        predicted = time.perf_counter() - start
        n, got = _items(getattr(batch, "seeds", None)), _items(logits)
        if n is not None and got is not None and got != n:
            raise ValueError(
                f"composite.model: expected predict(batch.inputs) to return logits for {n} items (one per item of "
                f"batch.seeds), got {got} (logits of shape {tuple(logits.shape)})"
            )
        proposal = self.stage_a_for(composite.loss).propose(logits, batch, initial, beta_hint=beta_hint)
        report = proposal.report._replace(predict_seconds=proposal.report.predict_seconds + predicted)
        return Proposal(proposal.targets, report)

    def fit(self, composite: Composite, batch: Batch, targets: Any) -> FitReport:
        """Stage B only: fit the model to ``targets`` (from ``propose`` or a cache)."""
        return self.stage_b.fit(composite.model, batch, targets)

    def step(
        self,
        composite: Composite,
        batch: Batch,
        initial: Sequence[Any] | None = None,
        beta_hint: Sequence[float | None] | None = None,
    ) -> StepReport:
        """``propose`` then ``fit`` on the same batch."""
        proposal = self.propose(composite, batch, initial, beta_hint)
        return StepReport(proposal.report, self.fit(composite, batch, proposal.targets), proposal.targets)
