"""An adaptive trust region: per item, the trust weight β that keeps stage A within a radius.

Stage A solves ``x*(β) = argmin_x λ·R(x) + β·d_A(x, S)`` (PAPER.md §2). A fixed β does not carry
over between image sizes, class counts or networks (docs/results.md). The rule here fixes the
*radius* of the region instead and finds β per item: with ``a`` the network's arg-max over the
labels stage A may use and ``F`` the item's free pixels (neither a seed nor padding),

    changed(x) = |{p ∈ F : x_p ≠ a_p}| / |F|,
    β*(τ) = the smallest β in [low, high] with changed(x*(β)) ≤ τ,

i.e. the largest region in which stage A relabels at most a fraction τ of the free pixels. τ is
either a number or, by default (``max_changed="seed_error"``), set per item from the only labels
there are, the seeds: with ``e`` the fraction of the item's seed pixels where ``a`` (seeds not
clamped) differs from the seed,

    τ = min(1, max(0.01, κ · e)),   κ = SEED_ERROR_SCALE = 1.5,

stage A may relabel about as many free pixels as the network gets wrong on the seeds, with a
margin (the network was fitted to those seeds, so ``e`` underestimates its error elsewhere).
docs/concepts.md states why this rule and docs/results.md how it was chosen.

β* is found by bisection in log β (:class:`BetaSearch`) on a grid of ``2^solves`` candidates, or,
given a hint (e.g. the item's β of the previous stage A), by a bracket grown around the hint on
the same grid and then bisected. Each solve starts from the caller's warm start
(``warm_start="initial"``, the default: every query is exactly a fixed-β stage A at its β) or from
the previous query's solution (``"previous"``). The constraint holds for the returned solution by
construction (it is one of the solutions evaluated), and the grid β just below it was solved and
failed (or it is the lowest grid β), whatever the hint; if even ``high`` cannot meet it, the search
returns ``high`` and its solution with ``met=False``. ``tolerance > 0`` also ends the search at a
solve whose measure is within ``tolerance · τ`` below τ.

The search is a small state machine (:class:`Bisection`) so that a caller can run the searches of
a whole batch in lockstep (one batch-solver call per round: :class:`~chainrule2.StageA` does);
:func:`search_beta` runs one item's search with a callable.

**Monotone in τ.** The queries depend only on the outcomes of the previous ones (fail, meet, or
meet within the tolerance), the bracket's lower end only rises and its upper end only falls, so for
τ₁ < τ₂ two searches from the same hint make the same queries with the same warm starts until the
first query whose outcome differs: it fails or ends the search for τ₁ and meets τ₂ without ending
it, or fails τ₁ and ends the τ₂ search (the other combinations are impossible, as a measure that
fails τ₂ fails τ₁ and one within the tolerance band of τ₂ is above τ₁'s band). From there the τ₁
search stays at or above that query and the τ₂ search at or below it. Hence β*(τ₁) ≥ β*(τ₂) for any
deterministic solver and any fixed hint, whatever ``changed(x*(β))`` does between the queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from chainrule2.constants import PADDING, UNLABELED
from chainrule2.validation import check_int

__all__ = [
    "DEFAULT_MAX_CHANGED",
    "SEED_ERROR",
    "SEED_ERROR_FLOOR",
    "SEED_ERROR_SCALE",
    "WARM_STARTS",
    "BetaChoice",
    "BetaSearch",
    "Bisection",
    "changed_fraction",
    "check_max_changed",
    "excess_divergence",
    "free_pixels",
    "hard_labels",
    "seed_error",
    "seed_error_bound",
    "search_beta",
]

#: ``max_changed=SEED_ERROR``: per item, τ = SEED_ERROR_SCALE × the network's error rate on the item's own seeds.
SEED_ERROR = "seed_error"
#: κ of the seed-error bound (chosen on the validation splits of docs/results.md, "Adaptive trust region").
SEED_ERROR_SCALE = 1.5
#: The smallest τ the seed-error bound gives (a network that gets every seed right may still move 1 %).
SEED_ERROR_FLOOR = 0.01
#: ``max_changed`` of ``StageA(trust_weight="auto")`` when it is not given.
DEFAULT_MAX_CHANGED = SEED_ERROR

#: Where each query of the search starts: the caller's ``initial`` or the previous query's solution.
WARM_STARTS = ("initial", "previous")


def check_max_changed(value: Any, name: str = "max_changed") -> float | str:
    """τ after checking that it is a real number in (0, 1] (a fraction of the free pixels) or ``"seed_error"``."""
    if isinstance(value, str):
        if value != SEED_ERROR:
            raise ValueError(
                f"{name}: expected a fraction in (0, 1] of the free pixels stage A may relabel or {SEED_ERROR!r}, "
                f"got {value!r}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"{name}: expected a fraction in (0, 1] of the free pixels stage A may relabel, got {type(value).__name__}"
        )
    value = float(value)
    if not (0.0 < value <= 1.0):
        raise ValueError(
            f"{name}: expected a fraction in (0, 1] of the free pixels stage A may relabel (e.g. 0.1), got {value!r}"
        )
    return value


def _check_beta(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return value


class BetaChoice(NamedTuple):
    """The result of one item's search.

    ``beta``: the chosen trust weight; ``state``: what the evaluation at ``beta`` returned (for
    :class:`~chainrule2.StageA`: the solver state and its energy); ``measure``: changed(x*(β)) there;
    ``met``: whether ``measure <= bound`` (False only when even ``high`` could not meet it);
    ``tried``: every ``(beta, measure)`` evaluated, in order (``len(tried)`` solves).
    """

    beta: float
    state: Any
    measure: float
    met: bool
    tried: tuple[tuple[float, float], ...]

    @property
    def solves(self) -> int:
        return len(self.tried)


@dataclass(frozen=True)
class BetaSearch:
    """Bisection in log β over ``[low, high]`` with ``solves`` solves (one more when all of them fail),
    or, given a hint, a bracket grown around it on the same grid.

    The candidates are the grid ``g_m = low · (high/low)^(m/M)``, ``m = 1 … M``, ``M = 2^solves``
    (defaults: 2^-6 to 2^10, 6 solves: a ratio ``r = 2^0.25 ≈ 1.19`` between neighbours). The search
    keeps a bracket of grid indices ``(a, b)``: ``a`` the largest index solved and failing (0 at
    first: ``low`` itself is never solved), ``b`` the smallest solved and meeting the bound (``M`` at
    first, solved last only if nothing else met it). Without a hint each solve is at the bracket's
    midpoint (plain bisection: ``solves`` solves). With a hint ``h`` (e.g. the item's β of the
    previous stage A) the first solve is at the grid point nearest ``h`` (clamped to the grid), and
    the bracket grows from there in steps of 1, 2, 4, … grid points (down while the bound holds, up
    while it fails) until the outcome flips, then is bisected: 2 solves when the hint is the answer,
    about ``2·log2(k)+2`` when it is ``k`` grid points off, at most ``2·solves + 1``.

    **What is returned.** The last solve that met the bound, ``g_b``, and either ``b = 1`` or
    ``g_{b-1}`` was solved and failed (the crossing to a factor ``r``), or, with ``tolerance > 0``,
    ``g_b``'s measure is within ``tolerance · bound`` of the bound (the region is already that close
    to its radius: the search stops there). If nothing met the bound: ``high``, ``met=False``. So on
    a measure that does not rise with β along the grid the answer with ``tolerance=0`` is the
    smallest grid β that meets the bound, *whatever the hint* (the hint only changes how many solves
    it takes); with ``tolerance > 0`` it is one of the grid β whose measure lies in
    ``(bound·(1 − tolerance), bound]``, starting at that smallest one. On a measure that is not
    monotone the answer is one of its crossings, and which one can depend on the hint.

    Parameters
    ----------
    low, high : float
        0 < low < high, finite. The default range holds the β that the validation sweeps chose at
        96 px (16) and the paper's 0.05 at ≈500 px.
    solves : int
        Bisection steps (≥ 1): the grid has ``2^solves`` points.
    warm_start : {"initial", "previous"}
        Where each query's solve starts. ``"initial"`` (default): from the caller's warm start (for
        :class:`~chainrule2.StageA`: ``initial``, e.g. the cached previous labels, or cold), so each
        query is exactly the fixed-β stage A at its β and ``changed(x*(β))`` is a function of β
        alone. ``"previous"``: from the previous query's solution (meant to save sweeps;
        ``changed`` then depends on the search's path). On the four two-label validation sets of
        docs/results.md it gave the same labels as ``"initial"``, and it costs more, as it loses
        the exact one-cut solve of two labels.
    tolerance : float
        In [0, 1): a solve whose measure is in ``(bound·(1 − tolerance), bound]`` ends the search
        (docs/performance.md measures what it saves). 0 (default): only the β resolution ends it.
    """

    low: float = 2.0**-6
    high: float = 2.0**10
    solves: int = 6
    warm_start: str = "initial"
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        low = _check_beta(self.low, "low")
        high = _check_beta(self.high, "high")
        if not low < high:
            raise ValueError(f"high: expected a number > low = {low!r}, got {high!r}")
        check_int(self.solves, "solves", minimum=1)
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm_start: expected one of {WARM_STARTS}, got {self.warm_start!r}")
        tolerance = self.tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating)):
            raise TypeError(f"tolerance: expected a real number in [0, 1), got {type(tolerance).__name__}")
        if not 0.0 <= float(tolerance) < 1.0:
            raise ValueError(f"tolerance: expected a number in [0, 1) (a fraction of the bound), got {tolerance!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "tolerance", float(tolerance))

    @property
    def grid_size(self) -> int:
        """``M = 2^solves``, the number of candidate β."""
        return 2**self.solves

    def grid_beta(self, m: int) -> float:
        """``g_m = low · (high/low)^(m/M)`` (``high`` itself at ``m = M``)."""
        if m == self.grid_size:
            return self.high
        lo, hi = math.log2(self.low), math.log2(self.high)
        return float(2.0 ** (lo + (hi - lo) * m / self.grid_size))

    def grid_index(self, beta: float) -> int:
        """The index ``m`` in ``1 … M`` of the grid β nearest ``beta`` in log β (clamped to the grid)."""
        lo, hi = math.log2(self.low), math.log2(self.high)
        m = round((math.log2(beta) - lo) * self.grid_size / (hi - lo))
        return min(self.grid_size, max(1, m))

    def start(self, bound: float, hint: float | None = None) -> Bisection:
        """A fresh search for one item with the bound ``measure <= bound``, from ``hint`` (a β) if given."""
        return Bisection(self, bound, hint)


class Bisection:
    """One item's search, step by step: ``next_beta`` (``None`` when done), ``tell``, ``result()``.

    >>> search = BetaSearch(low=1.0, high=16.0, solves=2).start(bound=0.5)
    >>> search.next_beta
    4.0
    >>> search.tell(4.0, 0.7, "at 4")          # too many changes: a larger β
    >>> search.next_beta
    8.0
    >>> search.tell(8.0, 0.3, "at 8")
    >>> search.next_beta is None, search.result().beta, search.result().met
    (True, 8.0, True)

    With a hint, the first solve is at the hint and the second one grid point below it:

    >>> search = BetaSearch(low=1.0, high=16.0, solves=2).start(bound=0.5, hint=8.0)
    >>> search.tell(8.0, 0.3, "at 8")          # the hint meets the bound: is the β below too large?
    >>> search.tell(search.next_beta, 0.7, "at 4")
    >>> search.next_beta is None, search.result().beta, search.result().solves
    (True, 8.0, 2)
    """

    def __init__(self, search: BetaSearch, bound: float, hint: float | None = None) -> None:
        if not isinstance(search, BetaSearch):
            raise TypeError(f"search: expected a BetaSearch, got {type(search).__name__}")
        if isinstance(bound, bool) or not isinstance(bound, (int, float, np.integer, np.floating)):
            raise TypeError(f"bound: expected a real number, got {type(bound).__name__}")
        if not math.isfinite(float(bound)):
            raise ValueError(f"bound: expected a finite number, got {bound!r}")
        self.search = search
        self.bound = float(bound)
        # A solve with a measure above ``accept`` (and within the bound) ends the search; none with tolerance 0.
        self._accept = self.bound - search.tolerance * abs(self.bound) if search.tolerance > 0 else math.inf
        self._a, self._b = 0, search.grid_size  # grid indices: failing (or low), meeting (or high, unsolved)
        self._b_solved = False
        self._done = False
        # the bracket grows from the hint in steps of 1, 2, 4, ...: -1 down, +1 up, 0 when bisecting
        self._direction, self._step = 0, 1
        self._next: int | None = search.grid_size // 2
        if hint is not None:
            self._next = search.grid_index(_check_beta(hint, "hint"))
            self._direction = 2  # the hint itself: the direction is set by its outcome
        self._best: tuple[float, float, Any] | None = None  # the solve at ``b``
        self._last: tuple[float, float, Any] | None = None
        self._tried: list[tuple[float, float]] = []

    @property
    def next_beta(self) -> float | None:
        """The β to solve next, or ``None`` when the search is over."""
        return None if self._next is None else self.search.grid_beta(self._next)

    def tell(self, beta: float, measure: float, state: Any) -> None:
        """Record the evaluation of ``next_beta``: its measure and what to return if it is chosen."""
        expected = self.next_beta
        if expected is None or self._next is None:
            raise ValueError("tell: the search is over (next_beta is None)")
        if float(beta) != expected:
            raise ValueError(f"beta: expected the search's next_beta {expected!r}, got {beta!r}")
        measure = float(measure)
        if math.isnan(measure):
            raise ValueError("measure: expected a number, got nan")
        m, met = self._next, measure <= self.bound
        self._tried.append((expected, measure))
        self._last = (expected, measure, state)
        if met:
            self._b, self._b_solved, self._best = m, True, (expected, measure, state)
        else:
            self._a = m
        if self._direction == 2:  # the hint's outcome: grow the bracket away from it
            self._direction = -1 if met else 1
        elif self._direction != 0 and met != (self._direction < 0):  # the outcome flipped: bisect
            self._direction = 0
        elif self._direction != 0:
            self._step *= 2
        self._next = self._choose(met and measure > self._accept)

    def _choose(self, close_enough: bool) -> int | None:
        a, b, top = self._a, self._b, self.search.grid_size
        if close_enough or a >= top:  # within tolerance of the bound, or ``high`` failed
            return None
        if self._direction < 0 and b - self._step > a:
            return b - self._step
        if self._direction > 0 and a + self._step < b:
            return a + self._step
        self._direction = 0
        if b - a > 1:
            return (a + b) // 2
        return None if self._b_solved else top  # nothing met the bound: solve ``high``

    @property
    def warm_start(self) -> Any:
        """The state of the most recent evaluation (``None`` before the first)."""
        return None if self._last is None else self._last[2]

    def result(self) -> BetaChoice:
        if self.next_beta is not None:
            raise ValueError(f"result: the search is not over (next_beta is {self.next_beta!r})")
        if self._best is not None:
            beta, measure, state = self._best
            return BetaChoice(beta, state, measure, True, tuple(self._tried))
        if self._last is None:
            raise ValueError("result: no beta was tried")
        beta, measure, state = self._last  # ``high``, not meeting the bound
        return BetaChoice(beta, state, measure, False, tuple(self._tried))


def search_beta(
    evaluate: Callable[[float, Any], tuple[Any, float]],
    bound: float,
    search: BetaSearch | None = None,
    initial: Any = None,
    warm: Callable[[Any], Any] | None = None,
    hint: float | None = None,
) -> BetaChoice:
    """One item's search: ``evaluate(beta, warm_start) -> (state, measure)`` at each query.

    ``warm_start`` is ``initial`` for every query (``search.warm_start="initial"``) or, with
    ``"previous"``, for the first query and then ``warm(state)`` of the previous query's state
    (default: the state itself). ``hint``: a β to start from (:class:`BetaSearch`). Returns the
    :class:`BetaChoice`.

    >>> def evaluate(beta, warm):                 # a measure that falls with β: changed = 1/β
    ...     return f"solution at {beta:g}", 1.0 / beta
    >>> choice = search_beta(evaluate, bound=0.1, search=BetaSearch(low=1.0, high=1024.0, solves=5))
    >>> choice.beta, choice.met, choice.solves
    (10.834044375495141, True, 5)
    """
    search = BetaSearch() if search is None else search
    if not callable(evaluate):
        raise TypeError(f"evaluate: expected a callable (beta, warm_start) -> (state, measure), got {evaluate!r}")
    state_machine = search.start(bound, hint)
    start = initial
    while (beta := state_machine.next_beta) is not None:
        state, measure = evaluate(beta, start)
        state_machine.tell(beta, measure, state)
        if search.warm_start == "previous":
            start = state if warm is None else warm(state)
    return state_machine.result()


# --- the measure ------------------------------------------------------------------------------------


def hard_labels(solution: Any) -> np.ndarray:
    """Integer labels of a solver's solution: itself, or the arg-max of a soft solution ``(..., L)``."""
    a = np.asarray(solution)
    if np.issubdtype(a.dtype, np.integer):
        return a
    return np.argmax(a, axis=-1)


def free_pixels(seeds: Any) -> np.ndarray:
    """``(...)`` bool: the pixels stage A chooses (seed 255): neither a seed nor padding (254)."""
    return np.asarray(seeds) == UNLABELED


def changed_fraction(labels: Any, reference: Any, free: Any) -> float:
    """``|{p ∈ free : labels_p ≠ reference_p}| / |free|`` (0 when no pixel is free)."""
    labels, reference, free = np.asarray(labels), np.asarray(reference), np.asarray(free, dtype=bool)
    if labels.shape != reference.shape or labels.shape != free.shape:
        raise ValueError(
            f"labels: expected the shape of reference and free {reference.shape}, got {labels.shape} and {free.shape}"
        )
    count = int(free.sum())
    if count == 0:
        return 0.0
    return float(np.count_nonzero((labels != reference) & free)) / count


def excess_divergence(labels: Any, costs: Any, reference: Any, free: Any) -> float:
    """``mean_{p ∈ free} costs_p(labels_p) − costs_p(reference_p)`` (0 when no pixel is free).

    With ``costs = d_A.label_costs(logits)`` of one item ``(..., L)`` this is d_A at the solution
    minus d_A at the arg-max, per free pixel (in nats for cross-entropy): the other radius one could
    bound (docs/concepts.md compares the two).
    """
    labels, reference, free = np.asarray(labels), np.asarray(reference), np.asarray(free, dtype=bool)
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape[:-1] != labels.shape or labels.shape != reference.shape or labels.shape != free.shape:
        raise ValueError(
            f"costs: expected (..., L) over the labels' grid {labels.shape}, got {costs.shape} "
            f"(reference {reference.shape}, free {free.shape})"
        )
    count = int(free.sum())
    if count == 0:
        return 0.0
    at = np.take_along_axis(costs, labels[..., None].astype(np.intp), axis=-1)[..., 0]
    ref = np.take_along_axis(costs, reference[..., None].astype(np.intp), axis=-1)[..., 0]
    return float(np.sum((at - ref)[free])) / count


def seed_error(labels: Any, seeds: Any) -> float:
    """The fraction of seed pixels (a class id in ``seeds``) where ``labels`` differs from the seed (0 without seeds)."""
    labels, seeds = np.asarray(labels), np.asarray(seeds)
    if labels.shape != seeds.shape:
        raise ValueError(f"labels: expected the seeds' shape {seeds.shape}, got {labels.shape}")
    seeded = (seeds >= 0) & (seeds != UNLABELED) & (seeds != PADDING)
    count = int(seeded.sum())
    if count == 0:
        return 0.0
    return float(np.count_nonzero(labels[seeded] != seeds[seeded])) / count


def seed_error_bound(
    network_labels: Any, seeds: Any, scale: float = SEED_ERROR_SCALE, floor: float = SEED_ERROR_FLOOR
) -> float:
    """τ of ``max_changed="seed_error"``: ``min(1, max(floor, scale · seed_error(network_labels, seeds)))``.

    ``network_labels``: the network's arg-max over the labels stage A may use, seeds *not* clamped.

    >>> seeds = np.array([0, 0, 0, 0, 1, 1, 1, 1, 255, 255])
    >>> seed_error_bound(np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 1]), seeds)   # 1 of 8 seeds wrong: 1.5/8
    0.1875
    """
    return min(1.0, max(float(floor), float(scale) * seed_error(network_labels, seeds)))
