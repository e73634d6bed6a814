"""Mean-field inference for :class:`~chainrule2.energies.grid.GridPotts`: a soft stage-A solver.

One implementation of the update serves both forms: :meth:`MeanField.step` on one host
:class:`~chainrule2.energies.mean_field.MeanFieldEnergy` is the batched update of
:meth:`MeanField.run_batch` on a batch of one, and :meth:`MeanField.run_batch` runs it on N items
at once in their arrays' namespace and on their device (torch on CUDA: no host copy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from chainrule2.base import Batch, BatchResult, Divergence, Loss, SolverState
from chainrule2.energies.grid import GridPotts
from chainrule2.energies.mean_field import (
    Constraints,
    MeanFieldBatch,
    MeanFieldEnergy,
    check_batch_distribution,
    neighbour_field,
    project,
    project_labels,
    softmin,
)
from chainrule2.solvers import _colouring
from chainrule2.solvers.base import (
    check_initial_labels,
    converged_items,
    discrete_energies,
    first_state,
    host_copy,
    next_state,
)
from chainrule2.validation import check_int, check_logits, check_positive


def colour_classes(energy: MeanFieldEnergy) -> list[np.ndarray]:
    """Sets of pixels no pair of the grid joins, covering the grid: (i + j) mod 2 for a
    4-neighbourhood, (i mod 2, j mod 2) when diagonal pairs exist (the colouring shared with ICM:
    :func:`chainrule2.solvers._colouring.colour_classes` of the grid's offsets)."""
    return _colouring.colour_classes(energy.grid.shape, energy.grid.offsets)


def check_mean_field_energy(energy: object, solver: str) -> MeanFieldEnergy:
    if not isinstance(energy, MeanFieldEnergy):
        hint = " (wrap a GridPotts: MeanFieldEnergy(grid, temperature))" if type(energy).__name__ == "GridPotts" else ""
        raise TypeError(f"energy: {solver} solves a MeanFieldEnergy, got {type(energy).__name__}{hint}")
    return energy


@dataclass(frozen=True)
class MeanField:
    """Mean-field inference with a checkerboard schedule: a soft stage-A solution ``(H, W, L)``.

    Minimises the free energy F(Q) of :class:`~chainrule2.energies.mean_field.MeanFieldEnergy`
    over factorised distributions. One :meth:`step` updates every colour class of
    :func:`colour_classes` in turn; the pixels of one class share no pair, so the update
    Q_p ∝ exp(−(U_p − Σ_q c_pq·Q_q)/T) of all of them at once is the exact minimiser of F over
    their Q given the rest, and F never increases (an update that the float round-off would raise
    is dropped). The parallel "all pixels at once" update of dense-CRF code has no such guarantee.
    Clamped seeds stay one-hot, disallowed labels get no mass.

    The solution is a distribution per pixel, for a stage B whose d_B takes soft targets (every
    divergence of :mod:`chainrule2.divergences` does).

    **Batched, on the model's device.** :meth:`batch_energy` and :meth:`run_batch` solve N items
    at once in the logits' array namespace and on their device (numpy, torch on CPU or CUDA,
    array_api_strict), with one vectorised update per colour class for the whole batch and the
    acceptance test per item (F of each item never increases; an item stops when it converges),
    so each item's result is that of :func:`~chainrule2.solvers.run` on it, to float round-off.
    :class:`~chainrule2.StageA` takes this path when :meth:`batch_supported` says the loss can
    build its problems there (:meth:`ScribblePotts.batch_energy
    <chainrule2.losses.ScribblePotts.batch_energy>`). It computes in float64.

    Parameters
    ----------
    max_sweeps : int
        Upper bound on sweeps.
    temperature : float
        T > 0 of the energies built by :meth:`energies` (a MeanFieldEnergy given directly keeps its own).
    tolerance : float
        A sweep that lowers F by at most ``tolerance * max(1, |F|)`` counts as converged.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.grid import GridPotts, contrast_weights
    >>> from chainrule2.energies.mean_field import MeanFieldEnergy
    >>> from chainrule2.solvers import run
    >>> unary = np.zeros((1, 3, 2)); unary[0, 0] = [0.0, 4.0]; unary[0, 2] = [0.0, 4.0]
    >>> grid = GridPotts(unary, contrast_weights(np.zeros((1, 3)), 4), offsets=((0, 1), (1, 0)), potts_weight=2.0)
    >>> q = run(MeanField(), MeanFieldEnergy(grid)).solution
    >>> bool(q[0, 1, 0] > 0.9)  # the middle pixel follows its neighbours
    True
    """

    max_sweeps: int = 50
    temperature: float = 1.0
    tolerance: float = 1e-6

    monotone: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int(self.max_sweeps, "max_sweeps", minimum=1)
        check_positive(self.temperature, "temperature")
        if not (isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 1):
            raise ValueError(f"tolerance: expected a number in [0, 1), got {self.tolerance!r}")

    def max_steps(self) -> int:
        return self.max_sweeps

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> list[MeanFieldEnergy]:
        """The loss's discrete stage-A energies (as for the discrete solvers), as free energies at ``temperature``."""
        grids = discrete_energies(type(self).__name__, loss, logits, batch, trust_divergence, trust_weight)
        return [MeanFieldEnergy(cast(GridPotts, grid), self.temperature) for grid in grids]  # it checks the kind

    def batch_supported(self, loss: Loss) -> bool:
        """Whether :meth:`batch_energy` can build ``loss``'s problems in the logits' namespace (``loss.batch_energy``)."""
        return callable(getattr(loss, "batch_energy", None))

    def batch_energy(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> MeanFieldBatch:
        """The N problems of :meth:`energies` as one :class:`MeanFieldBatch`, in ``logits``' namespace and device.

        ``batch.seeds`` and ``batch.images`` must be in that namespace and on that device too.
        """
        xp = check_logits(logits)
        beta = check_positive(trust_weight, "trust_weight", allow_zero=True)
        if not self.batch_supported(loss):
            raise TypeError(
                f"loss: {type(self).__name__}.batch_energy needs a loss with batch_energy(unary, batch); "
                f"{type(loss).__name__} has none"
            )
        unary = beta * xp.astype(
            trust_divergence.label_costs(logits), xp.float64
        )  # as the host path: costs in the logits dtype
        return MeanFieldBatch(loss.batch_energy(unary, batch), self.temperature)  # type: ignore[attr-defined]

    def init(self, energy: MeanFieldEnergy, initial: Any = None) -> SolverState:
        """Start from ``initial`` (an ``(H, W, L)`` distribution or an ``(H, W)`` labelling, projected
        onto the constraints) or from Q ∝ exp(−U/T), the minimiser of F without the pairs."""
        energy = check_mean_field_energy(energy, type(self).__name__)
        one = energy.as_batch()
        if initial is None:
            q = _softmin(one, one.grid.cost_unary)[0]
        elif isinstance(initial, np.ndarray) and initial.ndim == 2:
            labels = check_initial_labels(initial, energy.grid)
            q = np.eye(energy.num_labels)[energy.grid.project(labels)]
        else:
            q = np.asarray(_project(one, energy.check_distribution(initial, "initial")[None])[0])
        return first_state(q, energy.value(q))

    def step(self, energy: MeanFieldEnergy, state: SolverState) -> SolverState:
        energy = check_mean_field_energy(energy, type(self).__name__)
        one = energy.as_batch()
        start = np.asarray([state.energy], dtype=np.float64)
        q, current = _sweep(one, state.solution[None], start, np.ones(1, dtype=bool), _classes(one))
        value = float(current[0])
        converged = not (value < state.energy - self.tolerance * max(1.0, abs(state.energy)))
        return next_state(state, np.asarray(q[0]), value, converged)

    def run_batch(self, energy: MeanFieldBatch, initials: Sequence[Any] | None = None) -> BatchResult:
        """Solve every item of ``energy`` at once (``init``, then sweeps until each item converges or
        ``max_sweeps``), in its arrays' namespace and on their device.

        Parameters
        ----------
        energy : MeanFieldBatch
        initials : sequence of N warm starts or None
            Per item ``None`` (cold), an ``(H, W)`` labelling or an ``(H, W, L)`` distribution, in
            the energy's namespace; projected onto the constraints as in :meth:`init`.

        Returns
        -------
        BatchResult
            ``solutions`` ``(N, H, W, L)`` float64 in the energy's namespace; ``traces``: per item,
            F after the start and after each of its sweeps (host floats).
        """
        if not isinstance(energy, MeanFieldBatch):
            raise TypeError(
                f"energy: {type(self).__name__}.run_batch solves a MeanFieldBatch, got {type(energy).__name__}"
            )
        xp = array_namespace(energy.grid.cost_unary)
        n = energy.shape[0]
        g = energy.grid
        q = batch_start(initials, g.cost_unary, g, energy.temperature)
        current = energy.free_energy(q)
        values, actives = [current], []
        active = xp.ones((n,), dtype=xp.bool, device=array_device(q))
        classes = _classes(energy)
        for _ in range(self.max_sweeps):
            start = current
            q, current = _sweep(energy, q, current, active, classes)
            values.append(current)
            actives.append(active)
            converged = converged_items(current, start, self.tolerance)
            active = active & ~converged
            if not bool(xp.any(active)):  # one host sync per sweep: stop when every item has converged
                break
        # the traces: one host copy of the (sweeps + 1, N) values at the end
        trace_values = np.asarray(host_copy(xp.stack(values)), dtype=np.float64)
        trace_active = np.asarray(host_copy(xp.stack(actives)), dtype=bool)
        traces = tuple(
            (float(trace_values[0, i]),) + tuple(float(v) for v in trace_values[1:, i][trace_active[:, i]])
            for i in range(n)
        )
        return BatchResult(q, traces)


def _classes(energy: MeanFieldBatch) -> list[Any]:
    """The colour classes of :func:`colour_classes` as ``(1, H, W)`` masks in the energy's namespace and device."""
    g = energy.grid
    xp = array_namespace(g.cost_unary)
    masks = _colouring.colour_classes(g.shape[1:], g.offsets)
    return [xp.asarray(m[None], device=array_device(g.cost_unary)) for m in masks]


def _sweep(energy: MeanFieldBatch, q: Any, current: Any, active: Any, classes: list[Any]) -> tuple[Any, Any]:
    """One sweep over the colour classes for every item; an item's class update is kept only if it
    is ``active`` and does not raise that item's F (``current`` ``(N,)``)."""
    xp = array_namespace(q)
    g = energy.grid
    movable = ~(g.clamped | g.padding)
    for members in classes:
        update = (members & movable)[..., None]
        proposal = xp.where(update, _softmin(energy, g.cost_unary - neighbour_field(q, g.edge_costs, g.offsets)), q)
        value = energy.free_energy(proposal)
        accept = active & (value <= current)
        q = xp.where(accept[:, None, None, None], proposal, q)
        current = xp.where(accept, value, current)
    return q, current


def _softmin(energy: MeanFieldBatch, cost: Any) -> Any:
    """softmax(−cost/T) over each item's allowed labels, one-hot on clamped seeds."""
    return softmin(cost, energy.grid, energy.temperature)


def _project(energy: MeanFieldBatch, q: Any) -> Any:
    """A feasible copy of distributions ``(N, H, W, L)`` (:func:`~chainrule2.energies.mean_field.project`)."""
    return project(q, energy.grid.cost_unary, energy.grid, energy.temperature)


def batch_start(initials: Sequence[Any] | None, cost: Any, constraints: Constraints, temperature: float) -> Any:
    """The start ``(N, H, W, L)`` of a batched mean-field solve (:meth:`MeanField.run_batch`, and
    :meth:`DenseMeanField.run_batch <chainrule2.solvers.DenseMeanField.run_batch>`): per item the cold
    :func:`~chainrule2.energies.mean_field.softmin` of ``cost`` (``None``), an ``(H, W)`` labelling
    (one-hot, :func:`~chainrule2.energies.mean_field.project_labels`) or an ``(H, W, L)`` distribution
    (:func:`~chainrule2.energies.mean_field.project`), in ``cost``'s namespace; errors name ``initials[i]``."""
    xp = array_namespace(cost)
    cold = softmin(cost, constraints, temperature)
    n, h, w, num_labels = (int(s) for s in cost.shape)
    if initials is None:
        return cold
    initials = list(initials)
    if len(initials) != n:
        raise ValueError(f"initials: expected {n} items (one per batch item), got {len(initials)}")
    if all(a is None for a in initials):
        return cold
    starts: list[Any] = []  # per item: None (cold), labels (H, W) int64 or a distribution (H, W, L) float64
    for i, a in enumerate(initials):
        if a is None:
            starts.append(None)
        elif tuple(int(s) for s in a.shape) == (h, w) and xp.isdtype(a.dtype, "integral"):
            if not bool(xp.all((a >= 0) & (a < num_labels))):
                raise ValueError(f"initials[{i}]: expected labels in [0, {num_labels})")
            starts.append(xp.astype(a, xp.int64))
        elif tuple(int(s) for s in a.shape) != (h, w, num_labels):
            raise ValueError(
                f"initials[{i}]: expected an (H, W) labelling or an (H, W, L) distribution of {(h, w, num_labels)}, got {tuple(a.shape)}"
            )
        else:
            starts.append(check_batch_distribution(a[None, ...], (1, h, w, num_labels), f"initials[{i}]")[0, ...])
    hot: Any = None
    if any(a is not None and a.ndim == 2 for a in starts):  # the labellings, projected at once
        zero = xp.zeros((h, w), dtype=xp.int64, device=array_device(cost))
        hot = project_labels(
            xp.stack([a if a is not None and a.ndim == 2 else zero for a in starts]), cost, constraints
        )
    rows = [cold[i, ...] if a is None else hot[i, ...] if a.ndim == 2 else a for i, a in enumerate(starts)]
    return project(xp.stack(rows), cost, constraints, temperature)
