"""Alpha-expansion (Boykov, Veksler & Zabih 2001) on PyMaxflow for :class:`~chainrule2.energies.grid.GridPotts`.

This module is the solver loop: sweeps over the labels, accepting a move only if it lowers the
energy, and the convergence proofs. The graphs it cuts are built in
:mod:`chainrule2.solvers._expansion_graph`, PyMaxflow is wrapped in :mod:`chainrule2.solvers._maxflow`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from chainrule2.base import SolverState
from chainrule2.energies.grid import GridPotts
from chainrule2.solvers._expansion_graph import PairLayout, binary_cut, move, pair_layout
from chainrule2.solvers._maxflow import import_maxflow, kept_graph
from chainrule2.solvers.base import DiscreteSubproblem, check_initial_labels, first_state, next_state
from chainrule2.validation import check_choice, check_int

logger = logging.getLogger(__name__)


def check_grid_energy(energy: object, solver: str) -> GridPotts:
    if not isinstance(energy, GridPotts):
        raise TypeError(f"energy: {solver} solves a GridPotts energy, got {type(energy).__name__}")
    return energy


class ExpansionMove(NamedTuple):
    """One α-expansion move of a sweep, as :attr:`AlphaExpansion.on_move` receives it.

    ``sweep``: the state's iteration when the sweep began (0 = the first sweep); ``nodes``: the
    free pixels (neither α nor a clamped seed), one graph node each; ``changed``: the pixels the
    optimal move switches to α; ``delta``: the energy change the flow predicts; ``accepted``:
    whether the move was kept; ``build_seconds``: building the graph; ``flow_seconds``: the
    max-flow and reading its cut.
    """

    sweep: int
    alpha: int
    nodes: int
    changed: int
    delta: float
    accepted: bool
    build_seconds: float
    flow_seconds: float


@dataclass(frozen=True)
class AlphaExpansion(DiscreteSubproblem):
    """Alpha-expansion graph cuts for :class:`~chainrule2.energies.grid.GridPotts` (PyMaxflow, float capacities).

    One :meth:`step` is one sweep: one expansion move (one max-flow over the pixels that may
    change, built with vectorised numpy) per allowed label. A move is kept only if it lowers the
    exact float64 energy, so the energy never increases; the solver reports convergence when a
    sweep does not lower it, or earlier when it can prove that the next sweep would not.
    Result within a factor 2 of the optimum for Potts; exact for two labels from a cold start.

    Parameters
    ----------
    max_sweeps : int
        Upper bound on sweeps (the paper: 5).
    label_order : {"fixed", "random"} or tuple of int
        Sweep the allowed labels in increasing id order, in a fresh random order per sweep drawn
        from ``seed``, or in the given order (labels not allowed by the energy are skipped;
        allowed labels missing from the tuple are never expanded).
    seed : int or None
        Seed of the label-order generator (``numpy.random.default_rng(seed + sweep)``); only used with "random".
    tolerance : float
        A sweep that lowers the energy by at most ``tolerance * max(1, |E|)`` counts as converged.
    exact_binary : bool or "cold"
        With exactly two (allowed) labels, solve the problem exactly with one max-flow
        (:func:`~chainrule2.solvers._expansion_graph.binary_cut`) instead of expansion sweeps: the global optimum, in one step.
        True: always; False: never; "cold" (default): when the solve starts from the unary's
        argmin (no warm start). One cut on the whole grid does not benefit from a warm start,
        while expansion moves from a nearby labelling (stage A's previous solution) are cheap:
        from a warm start, two labels are solved by expansion sweeps (a local optimum, as GCO).
    on_move : callable or None
        Called after every expansion move with its :class:`ExpansionMove` (what
        ``benchmarks/stage_a.py --moves`` logs); ``None`` (default) records nothing. Not called for
        the exact two-label cut, nor for moves skipped as known to fail. It observes only: it is
        not part of the solver's value (equality, hash and repr ignore it), and a
        :class:`~chainrule2.solvers.ProcessBatchSolver` runs it in the worker process (it must pickle).

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.grid import GridPotts, contrast_weights
    >>> from chainrule2.solvers import run
    >>> unary = np.zeros((4, 4, 2)); unary[:, :2, 1] = 1; unary[:, 2:, 0] = 1
    >>> e = GridPotts(unary, contrast_weights(np.zeros((4, 4))), potts_weight=0.25)
    >>> run(AlphaExpansion(), e).solution
    array([[0, 0, 1, 1],
           [0, 0, 1, 1],
           [0, 0, 1, 1],
           [0, 0, 1, 1]])
    """

    max_sweeps: int = 5
    label_order: str | tuple[int, ...] = "fixed"
    seed: int | None = None
    tolerance: float = 0.0
    exact_binary: bool | str = "cold"
    on_move: Callable[[ExpansionMove], object] | None = field(default=None, compare=False, repr=False)

    monotone: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int(self.max_sweeps, "max_sweeps", minimum=1)
        if isinstance(self.label_order, (tuple, list)):
            if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in self.label_order):
                raise TypeError(f"label_order: expected a tuple of int labels, got {self.label_order!r}")
            object.__setattr__(self, "label_order", tuple(int(a) for a in self.label_order))
        else:
            check_choice(self.label_order, "label_order", ("fixed", "random"))
        if self.seed is not None:
            check_int(self.seed, "seed", minimum=0)
        if not (isinstance(self.exact_binary, bool) or self.exact_binary == "cold"):
            raise ValueError(f"exact_binary: expected True, False or 'cold', got {self.exact_binary!r}")
        if not (isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 1):
            raise ValueError(f"tolerance: expected a number in [0, 1), got {self.tolerance!r}")
        if self.on_move is not None and not callable(self.on_move):
            raise TypeError(f"on_move: expected a callable or None, got {type(self.on_move).__name__}")

    def max_steps(self) -> int:
        return self.max_sweeps

    def init(self, energy: GridPotts, initial: Any = None) -> SolverState:
        """Start from ``initial`` (projected onto the seeds and allowed labels) or the unary's argmin."""
        energy = check_grid_energy(energy, type(self).__name__)
        import_maxflow()
        if initial is None:
            labels = energy.unary_argmin()
        else:
            labels = energy.project(check_initial_labels(initial, energy))
        return first_state(labels, energy.value(labels))

    def _order(self, energy: GridPotts, sweep: int) -> list[int]:
        labels = list(energy.labels)
        if isinstance(self.label_order, tuple):
            allowed = set(labels)
            return [a for a in self.label_order if a in allowed]
        if self.label_order == "random":
            rng = np.random.default_rng(None if self.seed is None else self.seed + sweep)
            labels = [labels[i] for i in rng.permutation(len(labels))]
        return labels

    def _exact_binary_now(self, energy: GridPotts, state: SolverState) -> bool:
        if self.exact_binary == "cold":  # the first step from the unary argmin: a cold start
            return state.iteration == 0 and bool(np.array_equal(state.solution, energy.unary_argmin()))
        return bool(self.exact_binary)

    def step(self, energy: GridPotts, state: SolverState) -> SolverState:
        energy = check_grid_energy(energy, type(self).__name__)
        maxflow = import_maxflow()
        labels, current = state.solution, state.energy
        if len(energy.labels) < 2:
            return next_state(state, labels, current, converged=True)
        if len(energy.labels) == 2 and self._exact_binary_now(energy, state):
            proposal = binary_cut(energy, *energy.labels, maxflow)
            value = energy.value(proposal)
            if value < current:
                labels, current = proposal, value
            return next_state(state, labels, current, converged=True)
        start, start_labels = current, labels
        layout = pair_layout(energy)  # once per sweep
        size = energy.shape[0] * energy.shape[1]
        graph = kept_graph(maxflow, size, len(layout.pairs) * size)  # reset for every move
        # Each move is judged by the energy change the flow predicts (flow − cost of keeping every
        # label); only changes inside its float-error band are re-evaluated exactly. The exact
        # energy is computed once per sweep, and a sweep that would raise it is undone.
        #
        # ``failing``: labels whose move is known to fail on the current labelling. A move that
        # failed fails again until the labelling changes, and the label just expanded cannot gain
        # from expanding again (an α-expansion of an α-expansion of x is one of x). Skipping them
        # saves max-flows without changing any result; it carries over to the next sweep in
        # ``memo``, and a sweep that ends with every label failing has converged.
        failing = set(state.memo or ())
        for alpha in self._order(energy, state.iteration):
            if alpha in failing:
                continue
            if self.on_move is None:
                accepted, labels, current = _try_move(energy, labels, current, alpha, maxflow, layout, graph)
            else:
                accepted, labels, current = _observed_move(
                    self.on_move, energy, labels, current, alpha, maxflow, layout, graph, state.iteration
                )
            failing = {alpha} if accepted else failing | {alpha}
        current = energy.value(labels)
        if current > start:  # float error beyond the band: never report a higher energy
            logger.debug("sweep rejected: the energy would rise %r -> %r", start, current)
            labels, current, failing = start_labels, start, set()
        converged = failing >= set(energy.labels) or not (current < start - self.tolerance * max(1.0, abs(start)))
        return next_state(state, labels, current, converged, memo=frozenset(failing))


def _observed_move(
    on_move: Callable[[ExpansionMove], object],
    energy: GridPotts,
    labels: np.ndarray,
    current: float,
    alpha: int,
    maxflow: Any,
    layout: PairLayout,
    graph: Any,
    sweep: int,
) -> tuple[bool, np.ndarray, float]:
    """:func:`_try_move`, reported to ``on_move`` (:attr:`AlphaExpansion.on_move`)."""
    nodes = int(np.count_nonzero((labels != alpha) & ~energy.clamped))
    record: list[Any] = []
    accepted, new, estimate = _try_move(energy, labels, current, alpha, maxflow, layout, graph, record)
    changed, delta, build_seconds, flow_seconds = record
    on_move(ExpansionMove(sweep, alpha, nodes, changed, delta, accepted, build_seconds, flow_seconds))
    return accepted, new, estimate


def _try_move(
    energy: GridPotts,
    labels: np.ndarray,
    current: float,
    alpha: int,
    maxflow: Any,
    layout: PairLayout,
    graph: Any,
    record: list[Any] | None = None,
) -> tuple[bool, np.ndarray, float]:
    """One α-expansion, accepted only if it lowers the energy: (accepted, labels, energy estimate).

    ``record``: if a list, the move's changed pixels, predicted change, build and max-flow seconds
    are appended to it (for :attr:`AlphaExpansion.on_move`).
    """
    timings: list[float] | None = None if record is None else []
    proposal, changed, delta = move(energy, labels, alpha, maxflow, layout, graph, timings)
    if record is not None and timings is not None:  # both or neither
        record.extend((changed, delta, *timings))
    if not changed:
        return False, labels, current
    band = 1e-9 * max(1.0, abs(current))
    if delta < -band:
        return True, proposal, current + delta
    if delta <= band:
        exact_now, exact_new = energy.value(labels), energy.value(proposal)
        if exact_new < exact_now:
            return True, proposal, exact_new
        return False, labels, exact_now
    return False, labels, current
