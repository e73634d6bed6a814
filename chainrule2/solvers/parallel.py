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
import math
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from chainrule2.base import Energy, SolverState, Subproblem
from chainrule2.solvers.base import ERRORS, SolveFailure, paired, run, solve_batch
from chainrule2.validation import check_choice, check_int

logger = logging.getLogger(__name__)


def _solve_one(args: tuple[Any, Any, Any]) -> SolverState:
    solver, energy, initial = args
    return run(solver, energy, initial)


def largest_first(energies: Sequence[Energy]) -> list[int]:
    """Indices of ``energies``, the costliest first (estimated by solution size × labels).

    A pool that takes its items in this order (longest-processing-time-first scheduling) ends
    with the cheap items, so its workers finish close together; in submission order one worker
    may still be on a costly item while the other has nothing left. A small gain where the items'
    costs are alike: +0.05 to +0.08 speed-up for 48 horse images at 96 px on 2 workers
    (``benchmarks/pool_ab.py``, docs/performance.md); it may matter more where a few items are much
    larger (not measured).
    """
    return sorted(range(len(energies)), key=lambda i: -_cost(energies[i]))


def _cost(energy: Energy) -> int:
    """Solution size × labels; 0 for an energy that does not say (the sort is stable: it keeps its place)."""
    try:
        return math.prod(energy.shape) * int(energy.num_labels)
    except Exception:  # a duck-typed energy without them: scheduling must not make it fail
        return 0


#: The capacity asked for the pool's pipes: a 96 px energy (380 kB) fits in one write.
PIPE_BYTES = 1 << 20


def widen_pipes(pool: ProcessPoolExecutor) -> ProcessPoolExecutor:
    """``pool`` with its task and result pipes widened to :data:`PIPE_BYTES` where the OS allows it.

    Through a 64 kB pipe (Linux's default) an item of a few hundred kB crosses in many writes,
    each waiting for the worker to read. A pipe that holds the whole item lets the caller's feeder
    thread write it ahead, while the worker is still solving: +0.08 speed-up on average in six ad-hoc
    A/Bs at 96 px on 2 workers, −0.02 to +0.06 in ``benchmarks/pool_ab.py`` (docs/performance.md). Best
    effort: elsewhere, or above the user's pipe quota, the pipes stay as they are.
    """
    size = PIPE_BYTES
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            size = min(size, int(f.read()))
    except (OSError, ValueError):
        return pool  # not Linux
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return pool
    for name in ("_call_queue", "_result_queue"):
        # either end sets the pipe's capacity, and the workers inherit the pipe
        reader = getattr(getattr(pool, name, None), "_reader", None)
        try:
            fcntl.fcntl(reader.fileno(), fcntl.F_SETPIPE_SZ, size)  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            pass  # a private attribute that moved, or the quota: the default pipe
    return pool


def _submit(pool: Executor, solver: Subproblem, items: list[tuple[Any, Any]]) -> list[Future]:
    """One future per item, in the items' order, submitted costliest first (:func:`largest_first`)."""
    futures: list = [None] * len(items)
    for index in largest_first([e for e, _ in items]):
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

    Energies and states are pickled to the workers (a 513² 21-label energy is ≈ 45 MB), so use it
    for batches whose solve time dominates that copy. The pipes are widened (:func:`widen_pipes`)
    and the items submitted costliest first (:func:`largest_first`), so that the workers wait less
    for their next item and finish together. ``workers=1`` solves in-process, unless
    ``always_spawn``: then one worker process solves, so that the solves run beside the caller's own
    work (stage A overlapping stage B, ``TrainConfig.stage_a_overlap``).

    ``mp_context`` is the workers' start method: ``"fork"``, ``"forkserver"``, ``"spawn"``, or None for
    the platform's default (fork on Linux up to Python 3.13, forkserver from 3.14; spawn on macOS and
    Windows). forkserver and spawn start each worker from a fresh interpreter, which imports the
    caller's main module (about 2 s more per pool where that imports torch; measured here, ad hoc); no
    thread or CUDA state of the caller is copied into the workers.

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
    _pool: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int(self.workers, "workers", minimum=1)
        if self.mp_context is not None:
            import multiprocessing

            methods = tuple(multiprocessing.get_all_start_methods())
            if self.mp_context not in methods:
                raise ValueError(f"mp_context: expected one of {methods} or None, got {self.mp_context!r}")
        if not isinstance(self.always_spawn, bool):
            raise TypeError(f"always_spawn: expected True or False, got {self.always_spawn!r}")

    def _executor(self) -> Executor:
        import multiprocessing

        context = multiprocessing.get_context(self.mp_context) if self.mp_context else None
        return widen_pipes(ProcessPoolExecutor(max_workers=self.workers, mp_context=context))

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
            results: list = [None] * len(items)
            broken: list[int] = []
            try:
                futures = _submit(pool, solver, items)
            except BrokenProcessPool:
                futures, broken = [], list(range(len(items)))
            _collect(futures, results, broken)
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
