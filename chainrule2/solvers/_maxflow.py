"""PyMaxflow plumbing of the graph-cut solvers: the lazy import, the graph kept per thread, the
typed edge loop (with its fallback), and the guard against capacities PyMaxflow gets wrong silently.

Nothing here knows about energies or moves (:mod:`chainrule2.solvers._expansion_graph` builds the
graphs, :mod:`chainrule2.solvers.alpha_expansion` runs the solver loop); this is the one module
that touches PyMaxflow's API beyond ``GraphFloat``'s public methods.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


def import_maxflow() -> Any:
    """Import PyMaxflow lazily, with an error that says how to install it."""
    try:
        import maxflow
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "AlphaExpansion needs PyMaxflow: pip install PyMaxflow (or pip install 'chainrule2[graphcuts]')"
        ) from error
    return maxflow


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


def grid_structure(offset: tuple[int, int]) -> np.ndarray:
    """The 3×3 ``structure`` of ``GraphFloat.add_grid_edges`` that links each pixel to its neighbour at ``offset``."""
    s = np.zeros((3, 3), dtype=np.float64)
    s[1 + offset[0], 1 + offset[1]] = 1.0
    return s
