"""Alpha-expansion (Boykov, Veksler & Zabih 2001) on PyMaxflow for :class:`~chainrule2.energies.grid.GridPotts`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from chainrule2._validation import check_choice, check_int
from chainrule2.base import SolverState
from chainrule2.energies.grid import GridPotts, pair_slices
from chainrule2.solvers.base import DiscreteSubproblem, check_initial_labels, first_state, next_state

logger = logging.getLogger(__name__)


def import_maxflow() -> Any:
    """Import PyMaxflow lazily, with an error that says how to install it."""
    try:
        import maxflow
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "AlphaExpansion needs PyMaxflow: pip install PyMaxflow (or pip install 'chainrule2[graphcuts]')"
        ) from error
    return maxflow


def check_grid_energy(energy: Any, solver: str) -> GridPotts:
    if not isinstance(energy, GridPotts):
        raise TypeError(f"energy: {solver} solves a GridPotts energy, got {type(energy).__name__}")
    return energy


def check_capacities(capacity: np.ndarray, name: str) -> np.ndarray:
    """Guard against PyMaxflow's silent failure: a negative or non-finite capacity gives a wrong flow without error."""
    if not np.all(np.isfinite(capacity)) or (capacity.size and capacity.min() < 0):
        raise FloatingPointError(f"{name}: max-flow capacities must be finite and >= 0 (got min {capacity.min()!r})")
    return capacity


_kept = threading.local()  # per thread: one GraphFloat kept for reuse, and the node count it was made for


def kept_graph(maxflow: Any, nodes: int, edges: int) -> Any:
    """A ``GraphFloat`` for up to about ``nodes`` nodes, kept per thread and reused (after ``reset()``)
    by every move, sweep and solve of that thread.

    A fresh graph costs ≈ 20 ms at 513² in first-touch page faults alone, per sweep and per
    solve. The kept graph holds one grid's worth of memory (≈ 300 bytes per pixel with N8)
    until a grid more than 4× larger or smaller replaces it, or the thread ends. Callers
    ``reset()`` it before use.
    """
    graph, room = getattr(_kept, "graph", None), getattr(_kept, "nodes", 0)
    if graph is None or not room >= nodes >= room // 4:
        graph, room = maxflow.GraphFloat(nodes, edges), nodes
        _kept.graph, _kept.nodes = graph, room
    return graph


def add_edges(graph: Any, i: np.ndarray, j: np.ndarray, capacity: np.ndarray, rev_capacity: np.ndarray) -> None:
    """``graph.add_edges`` without its copies: PyMaxflow's ``add_edges`` converts every argument
    with ``astype(...).flatten()`` (two copies each) before its typed loop ``_add_edges``, which
    takes contiguous uint32 node ids and float64 capacities as they are. For the 1M edges of a
    513² N8 move that is 4 ms instead of 12.6 ms. Node ids must be valid: that loop checks no bounds."""
    fast = getattr(graph, "_add_edges", None)
    if fast is not None:
        try:
            fast(
                np.ascontiguousarray(i, dtype=np.uint32),
                np.ascontiguousarray(j, dtype=np.uint32),
                np.ascontiguousarray(capacity, dtype=np.float64),
                np.ascontiguousarray(rev_capacity, dtype=np.float64),
            )
            return
        except TypeError:  # another PyMaxflow version's private signature (checked before adding any edge)
            pass
    graph.add_edges(i, j, capacity, rev_capacity)


def _structure(offset: tuple[int, int]) -> np.ndarray:
    s = np.zeros((3, 3), dtype=np.float64)
    s[1 + offset[0], 1 + offset[1]] = 1.0
    return s


def expansion_move(energy: GridPotts, labels: np.ndarray, alpha: int, maxflow: Any = None) -> np.ndarray:
    """The optimal α-expansion of ``labels`` (see :func:`expansion_graph`); ``labels`` is not modified."""
    if maxflow is None:
        maxflow = import_maxflow()
    return _move(energy, labels, alpha, maxflow)[0]


@dataclass(frozen=True)
class _Layout:
    """The pairs of a grid energy, arranged once per sweep for the expansion graphs.

    ``pairs``: per offset, the slices ``(p, q)`` of the two ends of its in-grid pairs, ``q`` the end
    that comes later in row-major order, and their costs (views, no copies). ``costs``: ``(H, W, K)``,
    the cost of pair ``k`` stored at its later pixel ``q``.
    """

    pairs: list[tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray]]
    costs: np.ndarray


def _layout(energy: GridPotts) -> _Layout:
    edge_costs = energy.edge_costs
    costs = np.zeros(energy.shape + (len(energy.offsets),))
    pairs = []
    for k, (dy, dx) in enumerate(energy.offsets):
        src, dst = pair_slices((dy, dx), energy.shape)
        c = edge_costs[k][src]
        p, q = (src, dst) if dy > 0 or (dy == 0 and dx > 0) else (dst, src)
        costs[q + (k,)] = c
        pairs.append((p, q, c))
    return _Layout(pairs, costs)


def _move(
    energy: GridPotts, labels: np.ndarray, alpha: int, maxflow: Any, layout: _Layout | None = None, graph: Any = None
) -> tuple[np.ndarray, int, float]:
    """(new labels, number of changed pixels, energy change predicted by the flow).

    ``graph``: a ``GraphFloat`` to ``reset()`` and reuse (its memory is kept: allocating and
    first-touching a fresh graph per move costs about as much as filling it).
    """
    graph, free, keep_cost = expansion_graph(
        energy, labels, alpha, maxflow, return_keep_cost=True, layout=layout, graph=graph
    )
    new = labels.copy()
    if graph is None:  # nothing can move
        return new, 0, 0.0
    flow = graph.maxflow()
    switch = np.zeros(labels.shape, dtype=bool)
    switch[free] = graph.get_grid_segments(np.arange(int(free.sum()), dtype=np.int32))  # True = sink = take α
    new[switch] = alpha
    # the cut of "keep everything" is keep_cost; the min cut is the flow: ΔE = flow − keep_cost
    return new, int(switch.sum()), float(flow) - keep_cost


def expansion_graph(
    energy: GridPotts,
    labels: np.ndarray,
    alpha: int,
    maxflow: Any = None,
    return_keep_cost: bool = False,
    layout: _Layout | None = None,
    graph: Any = None,
) -> tuple[Any, ...]:
    """The max-flow graph of the α-expansion move of ``labels``, over the free pixels only.

    Returns a PyMaxflow ``GraphFloat`` (None when no pixel is free) and the ``(H, W)`` bool mask of
    its nodes: node ``i`` is the ``i``-th True pixel of the mask in row-major order. Pixels already
    labelled α and clamped seed pixels are fixed, so they get no node; their pairs with free
    pixels become t-links (as in GCO). Binary variable y_p = 1 means "switch to α" (sink side,
    ``get_grid_segments`` True). For a pair of free pixels p, q with cost c:

    * same label: E00 = E11 = 0, E01 = E10 = c: the edge p↔q with capacity c both ways;
    * different labels: E00 = E01 = E10 = c, E11 = 0 = c·(1 − y_q) + c·(1 − y_p)·y_q: a sink
      t-link c on q and the edge p→q with capacity c.

    A free p next to a fixed q (label b) costs c·[a_p ≠ b] if it keeps its label and c·[α ≠ b] if
    it switches. All capacities are sums of non-negative costs (no subtraction inside an edge),
    so they are exactly non-negative; the graph has one node per free pixel and one edge per pair
    of free pixels. In each pair, q is the pixel that comes later in row-major order, and the
    edges are added grouped by q in decreasing order (GCO's order): Boykov–Kolmogorov max-flow
    was 10–15 % faster on that layout than on edges added offset by offset (docs/performance.md).
    """
    if maxflow is None:
        maxflow = import_maxflow()
    if layout is None:
        layout = _layout(energy)
    u = energy.cost_unary
    clamped = energy.clamped
    has_clamps = bool(clamped.any())
    is_alpha = labels == alpha
    free = ~is_alpha
    if has_clamps:
        free &= ~clamped
    n = int(np.count_nonzero(free))
    if n == 0:
        return (None, free, 0.0) if return_keep_cost else (None, free)
    # t = (cost of switching) − (cost of keeping), built up in place over the whole grid
    t = u[:, :, alpha] - np.take_along_axis(u, labels[:, :, None], axis=2)[:, :, 0]
    node = np.full(labels.shape, -1, dtype=np.int32)
    node[free] = np.arange(n, dtype=np.int32)
    # per pair, stored at its later pixel q: the node of p when both ends are free, and whether they differ
    partner = np.full(layout.costs.shape, -1, dtype=np.int32)
    differs = np.empty(layout.costs.shape, dtype=bool)
    for k, (p, q, c) in enumerate(layout.pairs):
        fp, fq = free[p], free[q]
        differ = labels[p] != labels[q]
        # keeping a label different from the neighbour's costs c: on q when both are free
        np.subtract(t[p], c, out=t[p], where=fp & differ & ~fq)
        np.subtract(t[q], c, out=t[q], where=fq & differ)
        if has_clamps:  # switching next to a fixed non-α neighbour costs c
            np.add(t[p], c, out=t[p], where=fp & ~fq & ~is_alpha[q])
            np.add(t[q], c, out=t[q], where=fq & ~fp & ~is_alpha[p])
        np.copyto(partner[q + (k,)], node[p], where=fp & fq)
        differs[q + (k,)] = differ
    # edges grouped by their later pixel, last pixel first (GCO's order: faster max-flows)
    edge = partner.ravel() >= 0
    cost = layout.costs.ravel()[edge][::-1]
    if graph is None:
        graph = maxflow.GraphFloat(n, len(layout.pairs) * n)
    else:
        graph.reset()
    graph.add_nodes(n)
    add_edges(
        graph,
        np.repeat(node.ravel(), len(layout.pairs))[edge][::-1],
        partner.ravel()[edge][::-1],
        np.where(differs.ravel()[edge][::-1], 0.0, cost),  # q → p
        cost,  # p → q
    )
    tf = t[free]
    sink = check_capacities(np.maximum(-tf, 0.0), "sink capacity")
    graph.add_grid_tedges(np.arange(n, dtype=np.int32), check_capacities(np.maximum(tf, 0.0), "source capacity"), sink)
    if return_keep_cost:
        return graph, free, float(sink.sum())
    return graph, free


def expansion_graph_full(
    energy: GridPotts, labels: np.ndarray, alpha: int, maxflow: Any = None
) -> tuple[Any, Any, float]:
    """Reference construction: the α-expansion graph over every pixel of the grid (one node per pixel).

    Slower than :func:`expansion_graph` (it has nodes for fixed pixels and zero-capacity edges);
    kept to test the free-pixel graph against. E(y_p, y_q) with E00 = c[a_p≠a_q], E01 = c[a_p≠α],
    E10 = c[α≠a_q], E11 = 0 is written as E00 + (E10 − E00)·y_p − E10·y_q + K·(1 − y_p)·y_q with
    K = c([a_p≠α] + [a_q≠α] − [a_p≠a_q]) >= 0. Returns (graph, grid node ids, keep cost).
    """
    if maxflow is None:
        maxflow = import_maxflow()
    h, w = energy.shape
    u = energy.cost_unary
    costs = energy.edge_costs
    cur = np.take_along_axis(u, labels[:, :, None], axis=2)[:, :, 0]
    t = u[:, :, alpha] - cur
    not_alpha = labels != alpha
    graph = maxflow.GraphFloat(h * w, len(energy.offsets) * h * w)
    ids = graph.add_grid_nodes((h, w))
    for k, offset in enumerate(energy.offsets):
        src, dst = pair_slices(offset, (h, w))
        c = costs[k][src]
        a_p, a_q = labels[src], labels[dst]
        na_p, na_q = not_alpha[src], not_alpha[dst]
        ne = a_p != a_q
        e10 = c * na_q
        e00 = c * ne
        t[src] += e10 - e00
        t[dst] -= e10
        cap = np.zeros((h, w), dtype=np.float64)
        cap[src] = c * (na_p.astype(np.int8) + na_q.astype(np.int8) - ne.astype(np.int8))
        graph.add_grid_edges(
            ids, weights=check_capacities(cap, "edge capacity"), structure=_structure(offset), symmetric=False
        )
    clamped = energy.clamped
    if clamped.any():
        big = 1.0 + 2.0 * (np.abs(t).sum() + 2.0 * costs.sum())
        t[clamped & not_alpha] = big
    source = check_capacities(np.maximum(t, 0.0), "source capacity")
    sink = check_capacities(np.maximum(-t, 0.0), "sink capacity")
    graph.add_grid_tedges(ids, source, sink)
    return graph, ids, float(sink.sum())


def binary_cut(energy: GridPotts, first: int, second: int, maxflow: Any = None) -> np.ndarray:
    """The exact minimiser over labellings with values in {first, second}: one max-flow.

    With two labels the Potts energy is submodular, so one s-t min cut gives the global optimum
    (y = 1, the sink side, means ``second``); alpha-expansion would need ≥ 2 sweeps to get there.
    """
    if maxflow is None:
        maxflow = import_maxflow()
    h, w = energy.shape
    u = energy.cost_unary
    t = u[:, :, second] - u[:, :, first]
    costs = energy.edge_costs
    graph = kept_graph(maxflow, h * w, len(energy.offsets) * h * w)
    graph.reset()
    ids = graph.add_grid_nodes((h, w))
    for k, offset in enumerate(energy.offsets):
        graph.add_grid_edges(
            ids, weights=check_capacities(costs[k], "edge capacity"), structure=_structure(offset), symmetric=True
        )
    clamped = energy.clamped
    if clamped.any():
        big = 1.0 + 2.0 * (np.abs(t).sum() + 2.0 * costs.sum())
        t[clamped & (energy.seeds == first)] = big
        t[clamped & (energy.seeds == second)] = -big
    graph.add_grid_tedges(
        ids,
        check_capacities(np.maximum(t, 0.0), "source capacity"),
        check_capacities(np.maximum(-t, 0.0), "sink capacity"),
    )
    graph.maxflow()
    return np.where(graph.get_grid_segments(ids), second, first).astype(np.int64)


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
        (:func:`binary_cut`) instead of expansion sweeps: the global optimum, in one step.
        True: always; False: never; "cold" (default): when the solve starts from the unary's
        argmin (no warm start). One cut on the whole grid does not benefit from a warm start,
        while expansion moves from a nearby labelling (stage A's previous solution) are cheap:
        from a warm start, two labels are solved by expansion sweeps (a local optimum, as GCO).

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
        layout = _layout(energy)  # once per sweep
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
            accepted, labels, current = _try_move(energy, labels, current, alpha, maxflow, layout, graph)
            failing = {alpha} if accepted else failing | {alpha}
        current = energy.value(labels)
        if current > start:  # float error beyond the band: never report a higher energy
            logger.debug("sweep rejected: the energy would rise %r -> %r", start, current)
            labels, current, failing = start_labels, start, set()
        converged = failing >= set(energy.labels) or not (current < start - self.tolerance * max(1.0, abs(start)))
        return next_state(state, labels, current, converged, memo=frozenset(failing))


def _try_move(
    energy: GridPotts, labels: np.ndarray, current: float, alpha: int, maxflow: Any, layout: _Layout, graph: Any
) -> tuple[bool, np.ndarray, float]:
    """One α-expansion, accepted only if it lowers the energy: (accepted, labels, energy estimate)."""
    proposal, changed, delta = _move(energy, labels, alpha, maxflow, layout, graph)
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
