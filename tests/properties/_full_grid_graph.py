"""The reference α-expansion graph over every pixel of the grid: what the free-pixel graph of
:func:`chainrule2.solvers._expansion_graph.expansion_graph` is tested against (test only).

Not collected by pytest (no ``test_`` prefix); imported by ``test_grid_solvers.py`` from this folder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chainrule2.energies.grid import GridPotts, pair_slices
from chainrule2.solvers._maxflow import check_capacities, grid_structure, import_maxflow


def expansion_graph_full(
    energy: GridPotts, labels: np.ndarray, alpha: int, maxflow: Any = None
) -> tuple[Any, Any, float]:
    """Reference construction: the α-expansion graph over every pixel of the grid (one node per pixel).

    Slower than ``expansion_graph`` (it has nodes for fixed pixels and zero-capacity edges);
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
            ids, weights=check_capacities(cap, "edge capacity"), structure=grid_structure(offset), symmetric=False
        )
    clamped = energy.clamped
    if clamped.any():
        big = 1.0 + 2.0 * (np.abs(t).sum() + 2.0 * costs.sum())
        t[clamped & not_alpha] = big
    source = check_capacities(np.maximum(t, 0.0), "source capacity")
    sink = check_capacities(np.maximum(-t, 0.0), "sink capacity")
    graph.add_grid_tedges(ids, source, sink)
    return graph, ids, float(sink.sum())
