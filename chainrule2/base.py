"""Protocols and small immutable types shared by every part of chainrule2.

Layout convention: model outputs ("logits") are ``(N, ..., L)``, class axis last; labels
are integer arrays ``(N, ...)``; soft targets are ``(N, ..., L)`` floating arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from chainrule2.divergences import Divergence, softmax


class Batch(NamedTuple):
    """One batch of training data as the core sees it.

    Attributes
    ----------
    inputs : any
        What the model consumes (a numpy array, a torch tensor, ...).
    seeds : array (N, ...) of int
        Partial labels: a class id in ``[0, L)`` where known, 255 (unlabeled) or
        254 (padding) elsewhere.
    images : array (N, ..., C) or None
        Images, channel last, for losses with contrast-sensitive terms (numpy or torch; stage A
        copies them to the host once).
    ids : tuple of str or None
        Stable item ids, so stage-A labels can be cached and warm-started per item.
    targets : array (N, ...) of int or None
        Stage-B targets carried with the batch (e.g. cached stage-A labels, augmented jointly
        with the image by ``chainrule2_torch.data``); 255 unlabeled, 254 padding.
    """

    inputs: Any
    seeds: Any
    images: Any = None
    ids: tuple[str, ...] | None = None
    targets: Any = None


@runtime_checkable
class Energy(Protocol):
    """One stage-A problem (one item), immutable. ``value`` is exact, in float64."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of a solution (labels ``(...)`` or soft targets ``(..., L)``)."""

    @property
    def num_labels(self) -> int: ...

    def value(self, solution: Any) -> float:
        """The exact energy of ``solution`` (``inf`` where a hard constraint is violated)."""


#: The kind of energy a solver solves (``Subproblem[GridPotts]``); a bare ``Subproblem`` solves any.
E_contra = TypeVar("E_contra", bound="Energy", contravariant=True)
#: The kind of model a fitter fits (``Fitter[TorchModel]``); a bare ``Fitter`` fits any.
M_contra = TypeVar("M_contra", bound="Model", contravariant=True)
T = TypeVar("T")


class SolverState(NamedTuple):
    """State of a stage-A solver on one energy.

    ``trace`` holds the energy after init and after every step, so ``trace[-1] == energy``.
    ``memo`` is the solver's own immutable bookkeeping between steps (``None`` for most solvers;
    e.g. the labels whose expansion move is known to fail on ``solution``).
    """

    solution: Any
    energy: float
    trace: tuple[float, ...]
    iteration: int
    converged: bool
    memo: Any = None


@runtime_checkable
class Subproblem(Protocol[E_contra]):
    """A stage-A solver. Pure: never mutates the energy or the initial solution.

    ``monotone`` promises that ``step`` never raises the energy; the contract test in
    :mod:`chainrule2.testing` holds a solver to that promise. A solver solves one kind of
    :class:`Energy` (``AlphaExpansion`` is a ``Subproblem[GridPotts]``) and raises a ``TypeError``
    for another; a bare ``Subproblem`` is a solver of any kind.
    """

    @property
    def monotone(self) -> bool: ...

    def init(self, energy: E_contra, initial: Any = None) -> SolverState: ...

    def step(self, energy: E_contra, state: SolverState) -> SolverState: ...

    def max_steps(self) -> int:
        """Upper bound on ``step`` calls made by :func:`run`."""

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> Sequence[Energy]:
        """Build this solver's stage-A problems (one per item) from the loss and the model output."""


class BatchResult(NamedTuple):
    """A batched stage-A solve: ``solutions`` ``(N, ...)`` in the energy's array namespace and on its
    device; ``traces``: per item, the energy after the start and after each of its steps (host floats,
    as :attr:`SolverState.trace`)."""

    solutions: Any
    traces: tuple[tuple[float, ...], ...]


@runtime_checkable
class BatchSubproblem(Protocol):
    """A stage-A solver that also solves a whole batch at once in the logits' array namespace and on
    their device (e.g. torch on CUDA), with no host copy: :class:`~chainrule2.solvers.MeanField`,
    :class:`~chainrule2.solvers.DenseMeanField`, :class:`~chainrule2.solvers.GradientStep`.
    :class:`~chainrule2.StageA` takes this path when ``batch_supported(loss)`` is true (and
    ``trust_weight`` is a number, no ``batch_solver`` given).
    Each item's result equals the per-item :class:`Subproblem` path's to float round-off.
    """

    def batch_supported(self, loss: Loss) -> bool:
        """Whether :meth:`batch_energy` can build ``loss``'s problems in any array namespace."""

    def batch_energy(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> Any:
        """The N stage-A problems as one batched energy, in ``logits``' namespace and on its device."""

    def run_batch(self, energy: Any, initials: Sequence[Any] | None = None) -> BatchResult:
        """Solve every item of ``energy`` (per-item warm starts, ``None`` = cold)."""


class FitReport(NamedTuple):
    """What a stage-B fit did: the objective before each step, the step count, seconds."""

    losses: tuple[float, ...]
    steps: int
    seconds: float

    @property
    def loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


@runtime_checkable
class Loss(Protocol):
    """A regularised loss on the model's probabilities S = softmax(logits), ``(N, ..., L)``.

    A loss offers what the solvers need; a loss may offer only some of it (a solver that needs
    a missing capability raises a ``TypeError`` that says so):

    * ``value(probs, batch)``: per-item values ``(N,)`` of the relaxed (differentiable) loss,
      written with the array API so torch autograd flows through it (gradient-descent baselines);
    * ``gradient(probs, batch)``: analytic ``∂value/∂probs`` (for :class:`~chainrule2.solvers.GradientStep`);
    * ``energy(unary, batch, index)``: the exact discrete stage-A energy of item ``index``, with
      ``unary`` ``(..., L)`` (the trust-region term β·label_costs) added to the loss's own terms.
    """

    def value(self, probs: Any, batch: Batch) -> Any: ...

    def gradient(self, probs: Any, batch: Batch) -> Any: ...

    def energy(self, unary: Any, batch: Batch, index: int) -> Energy: ...


@runtime_checkable
class Fitter(Protocol[M_contra]):
    """Stage B: moves the model toward the stage-A targets under d_B; owns its optimizer.

    A fitter fits one kind of :class:`Model` (``OptimizerFitter`` is a ``Fitter[TorchModel]``) and
    raises a ``TypeError`` for another; a bare ``Fitter`` fits any.
    """

    def fit(self, model: M_contra, batch: Batch, targets: Any) -> FitReport: ...


@runtime_checkable
class Model(Protocol):
    """What :class:`~chainrule2.TrustRegion` needs of a model: logits ``(N, ..., L)`` (class axis last).

    ``predict`` is side-effect free (eval mode, no gradient), as the stage-A unary must be.
    """

    def predict(self, inputs: Any) -> Any: ...


@dataclass(frozen=True)
class Composite:
    """L(θ) = loss(model(inputs)): the objective :class:`~chainrule2.TrustRegion` optimises.

    Parameters
    ----------
    loss : Loss
        A regularised loss on the model's probabilities (see :class:`Loss`).
    model : Model
        Anything with ``predict(inputs) -> logits (N, ..., L)``.
    """

    loss: Loss
    model: Model

    def __post_init__(self) -> None:
        if not callable(getattr(self.model, "predict", None)):
            raise TypeError(f"model: expected an object with a predict(inputs) method, got {type(self.model).__name__}")

    def value(self, batch: Batch) -> float:
        """The loss of the current model on ``batch`` (the relaxed, differentiable form), summed over items."""
        return float(sum(self.loss.value(softmax(self.model.predict(batch.inputs)), batch)))


class StageAReport(NamedTuple):
    """Stage A on one batch: one energy trace per item; seconds for the prediction (the one
    device-to-host copy, plus the forward pass when :class:`~chainrule2.TrustRegion` ran the
    model) and for the solver; the items that failed.

    ``failures`` lists ``(index, id, message)`` for each item whose problem could not be built or
    solved under ``StageA(on_failure="keep")`` (``id`` from ``batch.ids``, ``None`` without ids);
    such an item's trace is empty ``()`` and its target is what it kept (see
    :class:`~chainrule2.StageA`).

    ``betas`` is the trust weight β used per item under ``StageA(trust_weight="auto")`` (``nan``
    for a failed item); empty ``()`` for a fixed β (every item used ``StageA.trust_weight``).
    """

    traces: tuple[tuple[float, ...], ...]
    predict_seconds: float
    solve_seconds: float
    failures: tuple[tuple[int, str | None, str], ...] = ()
    betas: tuple[float, ...] = ()

    @property
    def seconds(self) -> float:
        return self.predict_seconds + self.solve_seconds

    @property
    def energy(self) -> float:
        """Sum over the solved items of the final stage-A energy (failed items have no trace)."""
        return float(sum(trace[-1] for trace in self.traces if trace))


class Proposal(NamedTuple):
    """Stage-A output: targets for stage B (labels ``(N, ...)`` or soft ``(N, ..., L)``) and a report."""

    targets: Any
    report: StageAReport


class StepReport(NamedTuple):
    """One outer trust-region step."""

    stage_a: StageAReport
    stage_b: FitReport
    targets: Any


def as_items(x: Sequence[T] | None, n: int, name: str) -> list[T | None]:
    """Per-item list of optional values (``None`` -> ``[None] * n``)."""
    if x is None:
        return [None] * n
    if len(x) != n:
        raise ValueError(f"{name}: expected {n} items (one per batch item), got {len(x)}")
    return list(x)
