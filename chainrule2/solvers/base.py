"""The solver loop shared by every stage-A solver, and the discrete-solver problem builder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array

from chainrule2.base import Batch, Divergence, Energy, Loss, SolverState, Subproblem
from chainrule2.validation import check_choice, check_labelling, check_logits, check_positive

#: What a batch solver does when one item's solve raises: ``"raise"`` it, or ``"return"`` a
#: :class:`SolveFailure` in that item's place (the other items' states are kept).
ERRORS = ("raise", "return")


class SolveFailure(NamedTuple):
    """Returned by a batch solver (``errors="return"``) in place of the state of an item whose solve failed.

    ``index`` is the item's position in ``energies``; ``error`` the exception (for a worker process
    that died, a ``BrokenProcessPool`` saying so).
    """

    index: int  # type: ignore[assignment]  # a NamedTuple field may shadow tuple.index (deliberate; never called)
    error: Exception

    @property
    def message(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


E = TypeVar("E", bound=Energy)

#: ``batch_solver(solver, energies, initials, **options) -> one SolverState (or SolveFailure) per energy``:
#: what :class:`~chainrule2.StageA` calls, e.g. :func:`solve_batch` or a ``ProcessBatchSolver``.
BatchSolver = Callable[..., Sequence[SolverState | SolveFailure]]


def run(solver: Subproblem[E], energy: E, initial: Any = None) -> SolverState:
    """Run ``solver`` on ``energy`` from ``initial`` until it converges or takes ``max_steps()`` steps."""
    state = solver.init(energy, initial)
    for _ in range(solver.max_steps()):
        if state.converged:
            break
        state = solver.step(energy, state)
    return state


def paired(energies: Sequence[E], initials: Sequence[Any] | None) -> list[tuple[E, Any]]:
    """``[(energy, initial), ...]``: one warm start per energy (``None`` -> all cold)."""
    initials = [None] * len(energies) if initials is None else list(initials)
    if len(initials) != len(energies):
        raise ValueError(f"initials: expected {len(energies)} items (one per energy), got {len(initials)}")
    return list(zip(energies, initials, strict=True))


def solve_batch(
    solver: Subproblem[E], energies: Sequence[E], initials: Sequence[Any] | None = None, *, errors: str = "raise"
) -> list[SolverState | SolveFailure]:
    """Solve one energy per batch item (serially); results are independent of the order.

    Parameters
    ----------
    solver : Subproblem
    energies : sequence of Energy
    initials : sequence or None
        One warm start per energy (``None`` entries start cold); ``None`` = all cold.
    errors : {"raise", "return"}
        ``"raise"``: an item's exception propagates. ``"return"``: it is returned as a
        :class:`SolveFailure` in that item's place and the other items are still solved
        (``BaseException`` such as ``KeyboardInterrupt`` always propagates).

    Returns
    -------
    list of SolverState (or SolveFailure)
        One per energy, in order.
    """
    check_choice(errors, "errors", ERRORS)
    out: list[SolverState | SolveFailure] = []
    for index, (energy, initial) in enumerate(paired(energies, initials)):
        if errors == "raise":
            out.append(run(solver, energy, initial))
            continue
        try:
            out.append(run(solver, energy, initial))
        except Exception as err:  # one bad item: the caller decides (StageA's on_failure)
            out.append(SolveFailure(index, err))
    return out


def to_host(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy, torch on any device, or another array-API array) as a host numpy array.

    One device-to-host copy at most; autograd is cut (stage A is a constant for stage B).
    """
    if is_numpy_array(x):
        return np.asarray(x)
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        array_namespace(x)
    except TypeError:
        raise TypeError(
            f"{name}: expected a numpy array, a torch tensor or another array-API array, got {type(x).__name__}"
        ) from None
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError):  # not on the host, or no DLPack export
        return np.asarray(x)


def host_copy(x: Any) -> np.ndarray:
    """A small array (e.g. a batch's energies) as host numpy: torch through ``.cpu()`` (DLPack cannot
    leave a CUDA device), other namespaces through DLPack."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "cpu"):
        return np.asarray(x.detach().cpu())
    return np.from_dlpack(x)


def converged_items(value: Any, start: Any, tolerance: float) -> Any:
    """``(N,)`` bool, any array namespace: the items whose F fell by at most ``tolerance * max(1, |F|)``
    from ``start`` (or not at all): the stopping rule of the batched mean-field solvers."""
    xp = array_namespace(value)
    scale = xp.where(xp.abs(start) > 1.0, xp.abs(start), xp.ones_like(start))
    return ~(value < start - tolerance * scale)


def next_state(state: SolverState, solution: Any, energy: float, converged: bool, memo: Any = None) -> SolverState:
    """The state after one step: appends ``energy`` to the trace."""
    return SolverState(solution, energy, state.trace + (energy,), state.iteration + 1, converged, memo)


def first_state(solution: Any, energy: float, converged: bool = False) -> SolverState:
    return SolverState(solution, energy, (energy,), 0, converged)


class DiscreteSubproblem:
    """Mixin for solvers over integer labellings: the stage-A unary is β·label_costs(logits).

    The loss turns it into one exact energy per item with ``loss.energy(unary_i, batch, i)``.
    """

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> list[Energy]:
        return discrete_energies(type(self).__name__, loss, logits, batch, trust_divergence, trust_weight)


def discrete_energies(
    solver: str, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
) -> list[Energy]:
    """One exact energy per item, ``loss.energy(β·label_costs(logits)[i], batch, i)``; ``solver`` names
    the solver in the error for a loss without a discrete form."""
    check_logits(logits)
    check_positive(trust_weight, "trust_weight", allow_zero=True)
    if not callable(getattr(loss, "energy", None)):
        raise TypeError(
            f"loss: {solver} needs a loss with a discrete form, energy(unary, batch, index); "
            f"{type(loss).__name__} has none"
        )
    unary = trust_weight * np.asarray(trust_divergence.label_costs(logits), dtype=np.float64)
    return [loss.energy(unary[i], batch, i) for i in range(unary.shape[0])]


def check_initial_labels(initial: Any, energy: Energy, name: str = "initial") -> np.ndarray:
    """An int64 copy of a warm-start labelling after checking its shape, dtype and range."""
    return check_labelling(initial, energy.shape, energy.num_labels, name).astype(np.int64, copy=True)
