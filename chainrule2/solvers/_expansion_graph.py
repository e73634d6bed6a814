"""The graphs of the graph-cut solvers for :class:`~chainrule2.energies.grid.GridPotts`: the
α-expansion move over the free pixels (:func:`expansion_graph`, :func:`move`) and the exact
two-label cut (:func:`binary_cut`).

Each function builds one max-flow problem from an energy and a labelling and reads the labelling
back from its cut; accepting or rejecting a move is the solver loop's job
(:mod:`chainrule2.solvers.alpha_expansion`), and PyMaxflow's API is wrapped by
:mod:`chainrule2.solvers._maxflow`. The reference full-grid construction these graphs are tested
against lives with the tests (``tests/unit/_full_grid_graph.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from chainrule2.energies.grid import GridPotts, pair_slices
from chainrule2.solvers._maxflow import add_edges, check_capacities, grid_structure, import_maxflow, kept_graph


@dataclass(frozen=True)
class PairLayout:
    """The pairs of a grid energy, arranged once per sweep for the expansion graphs.

    ``pairs``: per offset, the slices ``(p, q)`` of the two ends of its in-grid pairs, ``q`` the end
    that comes later in row-major order, and their costs (views, no copies). ``costs``: ``(H, W, K)``,
    the cost of pair ``k`` stored at its later pixel ``q``.
    """

    pairs: list[tuple[tuple[slice, slice], tuple[slice, slice], np.ndarray]]
    costs: np.ndarray


def pair_layout(energy: GridPotts) -> PairLayout:
    """The :class:`PairLayout` of ``energy``'s pairs (the same for every move of a sweep)."""
    edge_costs = energy.edge_costs
    costs = np.zeros(energy.shape + (len(energy.offsets),))
    pairs = []
    for k, (dy, dx) in enumerate(energy.offsets):
        src, dst = pair_slices((dy, dx), energy.shape)
        c = edge_costs[k][src]
        p, q = (src, dst) if dy > 0 or (dy == 0 and dx > 0) else (dst, src)
        costs[q + (k,)] = c
        pairs.append((p, q, c))
    return PairLayout(pairs, costs)


def expansion_move(energy: GridPotts, labels: np.ndarray, alpha: int, maxflow: Any = None) -> np.ndarray:
    """The optimal α-expansion of ``labels`` (see :func:`expansion_graph`); ``labels`` is not modified."""
    if maxflow is None:
        maxflow = import_maxflow()
    return move(energy, labels, alpha, maxflow)[0]


def move(
    energy: GridPotts,
    labels: np.ndarray,
    alpha: int,
    maxflow: Any,
    layout: PairLayout | None = None,
    graph: Any = None,
    timings: list[float] | None = None,
) -> tuple[np.ndarray, int, float]:
    """(new labels, number of changed pixels, energy change predicted by the flow).

    ``graph``: a ``GraphFloat`` to ``reset()`` and reuse (its memory is kept: allocating and
    first-touching a fresh graph per move costs about as much as filling it). ``timings``: if a
    list, the seconds spent building the graph and in the max-flow (reading the cut included)
    are appended to it.
    """
    t0 = time.perf_counter()
    graph, free, keep_cost = expansion_graph(
        energy, labels, alpha, maxflow, return_keep_cost=True, layout=layout, graph=graph
    )
    t1 = time.perf_counter()
    new = labels.copy()
    if graph is None:  # nothing can move
        if timings is not None:
            timings.extend((t1 - t0, 0.0))
        return new, 0, 0.0
    flow = graph.maxflow()
    switch = np.zeros(labels.shape, dtype=bool)
    switch[free] = graph.get_grid_segments(np.arange(int(free.sum()), dtype=np.int32))  # True = sink = take α
    new[switch] = alpha
    if timings is not None:
        timings.extend((t1 - t0, time.perf_counter() - t1))
    # the cut of "keep everything" is keep_cost; the min cut is the flow: ΔE = flow − keep_cost
    return new, int(switch.sum()), float(flow) - keep_cost


def expansion_graph(
    energy: GridPotts,
    labels: np.ndarray,
    alpha: int,
    maxflow: Any = None,
    return_keep_cost: bool = False,
    layout: PairLayout | None = None,
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
        layout = pair_layout(energy)
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


def binary_grid(graph: Any, energy: GridPotts) -> np.ndarray:
    """Add one node per pixel of ``energy`` and its Potts edges to ``graph`` (reset): the node ids ``(H, W)``."""
    ids = graph.add_grid_nodes(energy.shape)
    for k, offset in enumerate(energy.offsets):
        graph.add_grid_edges(
            ids, weights=check_capacities(energy.edge_costs[k], "edge capacity"), structure=grid_structure(offset),
            symmetric=True,
        )  # fmt: skip
    return ids


def clamp_capacity(energy: GridPotts, t: np.ndarray) -> float:
    """A t-link for a clamped seed that no cut can afford to break: above all the unary and edge costs."""
    return 1.0 + 2.0 * (np.abs(t).sum() + 2.0 * energy.edge_costs.sum())


def binary_tlinks(energy: GridPotts, first: int, second: int, clamp: float | None = None) -> np.ndarray:
    """``t = u(second) − u(first)`` per pixel, a seed clamped to ``first`` (``second``) pinned at
    ``+clamp`` (``−clamp``); ``clamp`` defaults to :func:`clamp_capacity` of this ``t``."""
    u = energy.cost_unary
    t = u[:, :, second] - u[:, :, first]
    clamped = energy.clamped
    if clamped.any():
        big = clamp_capacity(energy, t) if clamp is None else clamp
        t[clamped & (energy.seeds == first)] = big
        t[clamped & (energy.seeds == second)] = -big
    return t


def binary_cut(energy: GridPotts, first: int, second: int, maxflow: Any = None) -> np.ndarray:
    """The exact minimiser over labellings with values in {first, second}: one max-flow.

    With two labels the Potts energy is submodular, so one s-t min cut gives the global optimum
    (y = 1, the sink side, means ``second``); alpha-expansion would need ≥ 2 sweeps to get there.
    """
    if maxflow is None:
        maxflow = import_maxflow()
    h, w = energy.shape
    graph = kept_graph(maxflow, h * w, len(energy.offsets) * h * w)
    graph.reset()
    ids = binary_grid(graph, energy)
    t = binary_tlinks(energy, first, second)
    graph.add_grid_tedges(
        ids,
        check_capacities(np.maximum(t, 0.0), "source capacity"),
        check_capacities(np.maximum(-t, 0.0), "sink capacity"),
    )
    graph.maxflow()
    return np.where(graph.get_grid_segments(ids), second, first).astype(np.int64)
