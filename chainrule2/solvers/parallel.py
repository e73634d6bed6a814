"""Batch solvers: solve the N independent stage-A problems of a batch in parallel.

Use as ``TrustRegion(batch_solver=ProcessBatchSolver(workers=2))``. Each is a callable
``(solver, energies, initials) -> list[SolverState]`` whose results are identical to the serial
:func:`chainrule2.solvers.solve_batch` (same solver, same inputs, deterministic solvers).

Processes, not threads, for PyMaxflow: its ``maxflow()`` holds the GIL, so threads give no
speed-up (measured in ``docs/performance.md``). :class:`ThreadBatchSolver` is kept for solvers
that release the GIL and for comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chainrule2._validation import check_int
from chainrule2.base import Energy, SolverState, Subproblem
from chainrule2.solvers.base import run

logger = logging.getLogger(__name__)


def _solve_one(args: tuple[Any, Any, Any]) -> SolverState:
    solver, energy, initial = args
    return run(solver, energy, initial)


def _items(energies: Sequence[Energy], initials: Sequence[Any] | None) -> list[tuple[Any, Any]]:
    initials = [None] * len(energies) if initials is None else list(initials)
    if len(initials) != len(energies):
        raise ValueError(f"initials: expected {len(energies)} items (one per energy), got {len(initials)}")
    return list(zip(energies, initials, strict=True))


@dataclass(frozen=True)
class ProcessBatchSolver:
    """Solve a batch's energies in ``workers`` processes (results identical to a serial solve, in order).

    A pool is created per call unless the solver is used as a context manager, which keeps one
    pool open (cheaper when called every stage A):

    >>> from chainrule2.solvers import AlphaExpansion
    >>> with ProcessBatchSolver(workers=2) as batch_solver:   # doctest: +SKIP
    ...     states = batch_solver(AlphaExpansion(), energies, None)

    Energies and states are pickled to the workers (a 513² 21-label energy is ≈ 45 MB), so use it
    for batches whose solve time dominates that copy. ``workers=1`` solves in-process.
    """

    workers: int = 2
    mp_context: str | None = None
    _pool: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int(self.workers, "workers", minimum=1)

    def _executor(self) -> Executor:
        import multiprocessing

        context = multiprocessing.get_context(self.mp_context) if self.mp_context else None
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=context)

    def __enter__(self) -> ProcessBatchSolver:
        if not self._pool:
            self._pool.append(self._executor())
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._pool:
            self._pool.pop().shutdown()

    def __call__(
        self, solver: Subproblem, energies: Sequence[Energy], initials: Sequence[Any] | None = None
    ) -> list[SolverState]:
        items = _items(energies, initials)
        if self.workers == 1 or len(items) <= 1:
            return [run(solver, energy, initial) for energy, initial in items]
        tasks = [(solver, energy, initial) for energy, initial in items]
        if self._pool:
            return list(self._pool[0].map(_solve_one, tasks))
        with self._executor() as pool:
            return list(pool.map(_solve_one, tasks))


@dataclass(frozen=True)
class ThreadBatchSolver:
    """Solve a batch's energies in ``workers`` threads (useful only for solvers that release the GIL)."""

    workers: int = 2

    def __post_init__(self) -> None:
        check_int(self.workers, "workers", minimum=1)

    def __call__(
        self, solver: Subproblem, energies: Sequence[Energy], initials: Sequence[Any] | None = None
    ) -> list[SolverState]:
        items = _items(energies, initials)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(_solve_one, [(solver, e, i) for e, i in items]))
