"""Batch solvers: solve the N independent stage-A problems of a batch in parallel.

Use as ``TrustRegion(batch_solver=ProcessBatchSolver(workers=2))``. Each is a callable
``(solver, energies, initials) -> list[SolverState]`` whose results are identical to the serial
:func:`chainrule2.solvers.solve_batch` (same solver, same inputs, deterministic solvers).

Processes, not threads, for PyMaxflow: its ``maxflow()`` holds the GIL, so threads give no
speed-up (measured in ``docs/performance.md``). :class:`ThreadBatchSolver` is kept for solvers
that release the GIL and for comparison.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from chainrule2.base import Energy, SolverState, Subproblem
from chainrule2.solvers._shared_transfer import SharedBatch, SharedTransferError, available, solve_shared
from chainrule2.solvers.base import ERRORS, SolveFailure, paired, run, solve_batch
from chainrule2.validation import check_choice, check_int

logger = logging.getLogger(__name__)

#: How :class:`ProcessBatchSolver` hands the items to its workers.
TRANSFERS = ("shared", "pickle")


def _solve_one(args: tuple[Any, Any, Any]) -> SolverState:
    solver, energy, initial = args
    return run(solver, energy, initial)


def largest_first(energies: Sequence[Energy]) -> list[int]:
    """Indices of ``energies``, the costliest first (estimated by solution size × labels).

    A pool that takes its items in this order (longest-processing-time-first scheduling) ends
    with the cheap items, so its workers finish close together; in submission order one worker
    may still be on a costly item while the other has nothing left (measured at 96 px, 2 workers:
    speed-up 1.62-1.72 in submission order, 1.77-1.78 largest first; docs/performance.md).
    """
    return sorted(range(len(energies)), key=lambda i: -math.prod(energies[i].shape) * energies[i].num_labels)


def _submit(
    pool: Executor, solver: Subproblem, items: list[tuple[Any, Any]], shared: SharedBatch | None = None
) -> list[Future]:
    """One future per item, in the items' order, submitted costliest first (:func:`largest_first`);
    through ``shared`` (the items' :class:`SharedBatch`) if given, else pickled through the pool's pipes."""
    futures: list = [None] * len(items)
    for index in largest_first([e for e, _ in items]):
        if shared is not None and index in shared.failures:  # could not be pickled: fails alone
            futures[index] = Future()
            futures[index].set_exception(shared.failures[index])
        elif shared is not None:
            futures[index] = pool.submit(solve_shared, shared.source, *shared.payloads[index])
        else:
            energy, initial = items[index]
            futures[index] = pool.submit(_solve_one, (solver, energy, initial))
    return futures


def _finish(results: list[SolverState | SolveFailure], errors: str) -> list[SolverState | SolveFailure]:
    """``results`` as they are (``errors="return"``) or the first failure raised (``"raise"``)."""
    if errors == "raise":
        for result in results:
            if isinstance(result, SolveFailure):
                raise result.error
    return results


def _collect(futures: list[Future], results: list, broken: list[int]) -> None:
    """Each future's state into ``results``; its exception as a :class:`SolveFailure`; a dead pool into ``broken``."""
    for index, future in enumerate(futures):
        _collect_one(future, results, broken, index)


def _collect_one(future: Future, results: list, broken: list[int], index: int) -> None:
    """Item ``index``'s future into ``results`` (or ``broken``), as :func:`_collect`."""
    try:
        results[index] = future.result()
    except BrokenProcessPool:
        broken.append(index)
    except Exception as err:  # the item's own error, raised in the worker
        results[index] = SolveFailure(index, err)


@dataclass(frozen=True)
class ProcessBatchSolver:
    """Solve a batch's energies in ``workers`` processes (results identical to a serial solve, in order).

    A pool is created per call unless the solver is used as a context manager, which keeps one
    pool open (cheaper when called every stage A):

    >>> from chainrule2.solvers import AlphaExpansion
    >>> with ProcessBatchSolver(workers=2) as batch_solver:   # doctest: +SKIP
    ...     states = batch_solver(AlphaExpansion(), energies, None)

    ``transfer="shared"`` (default) hands the energies' arrays to the workers in one shared-memory
    file per call (Linux; :mod:`chainrule2.solvers._shared_transfer`): copied once, never through a
    pipe, mapped read-only by the workers. ``"pickle"``, or where shared memory is not available,
    pickles each item through the pool's pipes (a 513² 21-label energy is ≈ 45 MB). The states come
    back pickled either way. Items are submitted costliest first (:func:`largest_first`), so the
    workers finish together. ``workers=1`` solves in-process, unless
    ``always_spawn``: then one worker process solves, so that the solves run beside the caller's own
    work (stage A overlapping stage B, ``TrainConfig.stage_a_overlap``).

    **A worker that dies** (a crash in the solver, the out-of-memory killer, ``os._exit``) costs only
    the item it was solving: the pool is rebuilt, the items it was running are solved again one at a
    time, and the item that kills a worker alone is that item's failure (a ``BrokenProcessPool``
    naming it). A held pool is rebuilt so, never left broken for later calls. With ``workers >= 2``
    (or ``always_spawn``) every item is solved in a worker, even a batch of one, so that such a crash
    never reaches the caller's process.
    """

    workers: int = 2
    mp_context: str | None = None
    always_spawn: bool = False
    transfer: str = "shared"
    _pool: list = field(default_factory=list, init=False, repr=False, compare=False)
    # set once a worker could not map a shared file: this solver pickles from then on
    _shared_failed: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int(self.workers, "workers", minimum=1)
        if not isinstance(self.always_spawn, bool):
            raise TypeError(f"always_spawn: expected True or False, got {self.always_spawn!r}")
        check_choice(self.transfer, "transfer", TRANSFERS)

    def _shared(self, solver: Subproblem, items: list[tuple[Any, Any]]) -> SharedBatch | None:
        """The items in shared memory, or ``None`` where they go through pipes."""
        if self.transfer != "shared" or self._shared_failed or not available():
            return None
        try:
            return SharedBatch([(solver, e, i) for e, i in items])
        except OSError as err:  # e.g. memfd_create refused by a sandbox
            logger.warning("stage-A pool: shared memory unavailable (%s); pickling the items instead", err)
            self._shared_failed.append(True)
            return None

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

    def _rebuilt(self, pool: Executor, held: bool) -> Executor:
        """A fresh pool in place of ``pool`` (whose workers died); the held one is replaced too."""
        pool.shutdown(wait=False, cancel_futures=True)
        fresh = self._executor()
        if held:
            self._pool[0] = fresh
        return fresh

    def _first_pass(self, pool: Executor, solver: Subproblem, items: list[tuple[Any, Any]]) -> tuple[list, list[int]]:
        """Every item solved once: (results, indices of the items whose worker died)."""
        results: list = [None] * len(items)
        broken: list[int] = []
        with contextlib.ExitStack() as stack:
            shared = self._shared(solver, items)
            if shared is not None:
                stack.enter_context(shared)
            try:
                futures = _submit(pool, solver, items, shared)
            except BrokenProcessPool:
                futures, broken = [], list(range(len(items)))
            _collect(futures, results, broken)
        unmapped = [k for k, r in enumerate(results) if isinstance(r, SolveFailure) and isinstance(r.error, SharedTransferError)]  # fmt: skip
        if unmapped:  # a worker cannot open the caller's file (e.g. /proc restricted): pipes from now on
            logger.warning("stage-A pool: %s; pickling the items instead", results[unmapped[0]].error)
            self._shared_failed.append(True)
            for k, future in zip(unmapped, _submit(pool, solver, [items[k] for k in unmapped]), strict=True):
                _collect_one(future, results, broken, k)
        return results, broken

    def __call__(
        self,
        solver: Subproblem,
        energies: Sequence[Energy],
        initials: Sequence[Any] | None = None,
        *,
        errors: str = "raise",
    ) -> list[SolverState | SolveFailure]:
        """One state per energy, in order; ``errors`` as in :func:`~chainrule2.solvers.solve_batch`."""
        check_choice(errors, "errors", ERRORS)
        items = paired(energies, initials)
        if (self.workers == 1 and not self.always_spawn) or not items:
            return solve_batch(solver, [e for e, _ in items], [i for _, i in items], errors=errors)
        held = bool(self._pool)
        pool = self._pool[0] if held else self._executor()
        try:
            if getattr(pool, "_broken", False):  # broken by an earlier call that was interrupted
                pool = self._rebuilt(pool, held)
            results, broken = self._first_pass(pool, solver, items)
            if broken:  # a worker died: which item killed it? Solve the unfinished ones alone, each once
                logger.warning("a stage-A worker process died; rebuilding the pool and retrying %d items", len(broken))
                pool = self._rebuilt(pool, held)
                for index in broken:
                    energy, initial = items[index]
                    try:
                        results[index] = pool.submit(_solve_one, (solver, energy, initial)).result()
                    except BrokenProcessPool:
                        results[index] = SolveFailure(
                            index,
                            BrokenProcessPool(
                                f"energies[{index}]: the worker process solving this item died (crashed, killed or "
                                "exited); the pool was rebuilt"
                            ),
                        )
                        pool = self._rebuilt(pool, held)
                    except Exception as err:
                        results[index] = SolveFailure(index, err)
        finally:
            if not held:
                pool.shutdown()
        return _finish(results, errors)


@dataclass(frozen=True)
class ThreadBatchSolver:
    """Solve a batch's energies in ``workers`` threads (useful only for solvers that release the GIL)."""

    workers: int = 2

    def __post_init__(self) -> None:
        check_int(self.workers, "workers", minimum=1)

    def _first_pass(self, pool: Executor, solver: Subproblem, items: list[tuple[Any, Any]]) -> tuple[list, list[int]]:
        """Every item solved once: (results, indices of the items whose worker died)."""
        results: list = [None] * len(items)
        broken: list[int] = []
        with contextlib.ExitStack() as stack:
            shared = self._shared(solver, items)
            if shared is not None:
                stack.enter_context(shared)
            try:
                futures = _submit(pool, solver, items, shared)
            except BrokenProcessPool:
                futures, broken = [], list(range(len(items)))
            _collect(futures, results, broken)
        unmapped = [k for k, r in enumerate(results) if isinstance(r, SolveFailure) and isinstance(r.error, SharedTransferError)]  # fmt: skip
        if unmapped:  # a worker cannot open the caller's file (e.g. /proc restricted): pipes from now on
            logger.warning("stage-A pool: %s; pickling the items instead", results[unmapped[0]].error)
            self._shared_failed.append(True)
            for k, future in zip(unmapped, _submit(pool, solver, [items[k] for k in unmapped]), strict=True):
                _collect_one(future, results, broken, k)
        return results, broken

    def __call__(
        self,
        solver: Subproblem,
        energies: Sequence[Energy],
        initials: Sequence[Any] | None = None,
        *,
        errors: str = "raise",
    ) -> list[SolverState | SolveFailure]:
        """One state per energy, in order; ``errors`` as in :func:`~chainrule2.solvers.solve_batch`."""
        check_choice(errors, "errors", ERRORS)
        items = paired(energies, initials)
        results: list = [None] * len(items)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            _collect(_submit(pool, solver, items), results, [])
        return _finish(results, errors)
