"""The mean-field free energy of a Potts grid CRF: the objective of the soft stage-A solver.

:class:`MeanFieldEnergy` is one item on the host (numpy); :class:`MeanFieldBatch` is N items as
arrays of any array-API namespace and device (numpy, torch on CPU or CUDA, array_api_strict).
Both evaluate F with the same array-API functions (:func:`free_energy`, :func:`neighbour_field`),
which take a leading batch axis.

The constraints of a factorised distribution Q ``(N, H, W, L)`` — clamped seeds one-hot, no mass
on a disallowed label, padding free — are shared with the dense free energy of Dense-TR
(:class:`~chainrule2.energies.dense.DenseMeanFieldBatch`): :func:`feasible`, :func:`softmin`,
:func:`project` and :func:`project_labels` read them from any :class:`Constraints` (a
:class:`~chainrule2.energies.grid.GridPottsBatch`, a ``DenseMeanFieldBatch``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as _array_device

from chainrule2.energies.grid import GridPotts, GridPottsBatch, pair_slices
from chainrule2.validation import check_positive

#: How far the labels' probabilities of one pixel may sum from 1 in a distribution :meth:`value` accepts.
SUM_TOLERANCE = 1e-6


class Constraints(Protocol):
    """What the constraints of N factorised distributions ``(N, H, W, L)`` are read from (arrays of one
    namespace and device): a :class:`~chainrule2.energies.grid.GridPottsBatch`, a
    :class:`~chainrule2.energies.dense.DenseMeanFieldBatch`."""

    @property
    def allowed(self) -> Any:
        """``(N, L)`` bool: the labels each item may put mass on."""

    @property
    def clamped(self) -> Any:
        """``(N, H, W)`` bool: pixels one-hot on their seed."""

    @property
    def seed_labels(self) -> Any:
        """``(N, H, W)`` int64: the seed where ``clamped`` (0 elsewhere)."""

    @property
    def padding(self) -> Any:
        """``(N, H, W)`` bool: pixels that contribute nothing (seed 254)."""


@dataclass(frozen=True, eq=False)
class MeanFieldEnergy:
    """F(Q) = Σ_p ⟨U_p, Q_p⟩ + Σ_pq c_pq·(1 − ⟨Q_p, Q_q⟩) + T·Σ_p ⟨Q_p, log Q_p⟩ over factorised distributions Q.

    The variational (Gibbs) free energy of the CRF ``grid`` at temperature T for a fully factorised
    ``Q`` of shape ``(H, W, L)``: its first two terms are the expected :class:`GridPotts` energy,
    the third −T times the entropy. F(Q) ≥ −T·log Σ_x exp(−E(x)/T) for every Q, and F of a
    one-hot Q is the grid energy of its labelling. Constraints are those of the grid: a clamped
    seed pixel must be one-hot on its seed and no pixel may put mass on a label outside
    ``allowed_labels`` (:meth:`value` is ``inf`` otherwise); padding pixels (seed 254) contribute
    nothing, whatever their Q.

    Parameters
    ----------
    grid : GridPotts
        The discrete stage-A problem.
    temperature : float
        T > 0. T = 1 is the usual mean-field approximation of the Gibbs distribution exp(−E);
        smaller T sharpens Q toward a labelling.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.grid import GridPotts, contrast_weights
    >>> grid = GridPotts(np.array([[[0.0, 1.0], [1.0, 0.0]]]), contrast_weights(np.zeros((1, 2))), potts_weight=0.5)
    >>> energy = MeanFieldEnergy(grid)
    >>> energy.value(np.array([[[1.0, 0.0], [0.0, 1.0]]])) == grid.value(np.array([[0, 1]]))
    True
    """

    grid: GridPotts
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.grid, GridPotts):
            raise TypeError(f"grid: expected a GridPotts, got {type(self.grid).__name__}")
        object.__setattr__(self, "temperature", check_positive(self.temperature, "temperature"))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.grid.shape + (self.grid.num_labels,)

    @property
    def num_labels(self) -> int:
        return self.grid.num_labels

    @property
    def allowed_mask(self) -> np.ndarray:
        """``(L,)`` bool: the labels a pixel may put mass on."""
        mask = np.zeros(self.num_labels, dtype=bool)
        mask[list(self.grid.labels)] = True
        return mask

    def check_distribution(self, q: Any, name: str = "solution") -> np.ndarray:
        """``q`` as float64 after checking it is a distribution over the labels at every pixel."""
        return check_distribution(q, self.shape, name)

    def feasible(self, q: np.ndarray) -> bool:
        """Whether ``q`` is exactly one-hot on every clamped seed and has no mass on a disallowed label."""
        grid = self.grid
        real = ~grid.padding
        if np.any(q[real][:, ~self.allowed_mask] != 0):
            return False
        clamped = grid.clamped
        if grid.seeds is not None and clamped.any():
            ys, xs = np.nonzero(clamped)
            if np.any(q[ys, xs] != np.eye(self.num_labels)[grid.seeds[ys, xs]]):
                return False
        return True

    def as_batch(self) -> MeanFieldBatch:
        """This problem as a host batch of one item (what the solver's batched update reads)."""
        return MeanFieldBatch(GridPottsBatch.from_grids([self.grid]), self.temperature)

    def expected_pairwise(self, q: np.ndarray) -> float:
        """Σ_pq c_pq·(1 − ⟨Q_p, Q_q⟩): the expected Potts term."""
        return float(expected_pairwise(q[None], self.grid.edge_costs[None], self.grid.offsets)[0])

    def value(self, solution: Any) -> float:
        """F(Q) in float64; ``inf`` if ``Q`` breaks a clamped seed or the label restriction."""
        q = self.check_distribution(solution)
        if not self.feasible(q):
            return math.inf
        grid = self.grid
        return float(
            free_energy(q[None], grid.cost_unary[None], grid.edge_costs[None], grid.offsets, grid.padding[None],
                        self.temperature)[0]
        )  # fmt: skip

    def neighbour_field(self, q: np.ndarray) -> np.ndarray:
        """``(H, W, L)``: Σ_{q ~ p} c_pq·Q_q(l), the Potts saving of label l at every pixel p."""
        return np.asarray(neighbour_field(q[None], self.grid.edge_costs[None], self.grid.offsets)[0])


@dataclass(frozen=True, eq=False)
class MeanFieldBatch:
    """F(Q) of :class:`MeanFieldEnergy` for N problems at once, in their arrays' namespace and device.

    Parameters
    ----------
    grid : GridPottsBatch
        The N discrete stage-A problems (e.g. from :meth:`ScribblePotts.batch_energy
        <chainrule2.losses.ScribblePotts.batch_energy>` on the model's device).
    temperature : float
        T > 0, the same for every item.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies.grid import GridPotts, GridPottsBatch, contrast_weights
    >>> grid = GridPotts(np.array([[[0.0, 1.0], [1.0, 0.0]]]), contrast_weights(np.zeros((1, 2))), potts_weight=0.5)
    >>> batch = MeanFieldBatch(GridPottsBatch.from_grids([grid, grid]))
    >>> batch.value(np.array([[[[1.0, 0.0], [0.0, 1.0]]]] * 2)).tolist()
    [0.5, 0.5]
    """

    grid: GridPottsBatch
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.grid, GridPottsBatch):
            raise TypeError(f"grid: expected a GridPottsBatch, got {type(self.grid).__name__}")
        object.__setattr__(self, "temperature", check_positive(self.temperature, "temperature"))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, H, W, L)``: the shape of a batch of solutions."""
        return self.grid.shape + (self.grid.num_labels,)

    @property
    def num_labels(self) -> int:
        return self.grid.num_labels

    def feasible(self, q: Any) -> Any:
        """``(N,)`` bool: whether each item's ``q`` is one-hot on its clamped seeds with no mass on a disallowed label."""
        return feasible(q, self.grid)

    def value(self, solution: Any) -> Any:
        """``(N,)`` float64: F of each item's ``Q`` (``inf`` where it breaks a constraint), in ``solution``'s namespace."""
        q = check_batch_distribution(solution, self.shape)
        xp = array_namespace(q)
        f = self.free_energy(q)
        return xp.where(self.feasible(q), f, xp.full_like(f, math.inf))

    def free_energy(self, q: Any) -> Any:
        """``(N,)``: F of a feasible ``Q`` (float64), without the checks of :meth:`value` (the solver's inner loop)."""
        g = self.grid
        return free_energy(q, g.cost_unary, g.edge_costs, g.offsets, g.padding, self.temperature)


def expected_pairwise(q: Any, costs: Any, offsets: tuple[tuple[int, int], ...]) -> Any:
    """``(N,)``: Σ_pq c_pq·(1 − ⟨Q_p, Q_q⟩) of ``q`` ``(N, H, W, L)`` with edge costs ``(N, K, H, W)`` (any namespace)."""
    xp = array_namespace(q)
    shape = (int(q.shape[1]), int(q.shape[2]))
    total = None
    for k, offset in enumerate(offsets):
        src, dst = pair_slices(offset, shape)
        agree = xp.sum(q[(slice(None),) + src + (...,)] * q[(slice(None),) + dst + (...,)], axis=-1)
        term = xp.sum(costs[(slice(None), k) + src] * (1.0 - agree), axis=(1, 2))
        total = term if total is None else total + term
    return xp.zeros(q.shape[:1], dtype=q.dtype, device=_array_device(q)) if total is None else total


def free_energy(
    q: Any, cost_unary: Any, costs: Any, offsets: tuple[tuple[int, int], ...], padding: Any, temperature: float
) -> Any:
    """``(N,)``: F(Q) = ⟨U, Q⟩ + expected Potts + T·Σ Q log Q over the non-padding pixels of each item (no checks)."""
    return unary_and_entropy(q, cost_unary, padding, temperature) + expected_pairwise(q, costs, offsets)


def unary_and_entropy(q: Any, cost_unary: Any, padding: Any, temperature: float) -> Any:
    """``(N,)``: ⟨U, Q⟩ + T·Σ Q log Q over the non-padding pixels of each item, the terms of F besides
    the pairs (shared by the grid and the dense free energies; no checks)."""
    xp = array_namespace(q)
    real = ~padding[..., None]
    unary = xp.sum(xp.where(real, q * cost_unary, xp.zeros_like(q)), axis=(1, 2, 3))
    negative_entropy = xp.sum(xp.where(real, _xlogx(q), xp.zeros_like(q)), axis=(1, 2, 3))
    return unary + temperature * negative_entropy


def neighbour_field(q: Any, costs: Any, offsets: tuple[tuple[int, int], ...]) -> Any:
    """``(N, H, W, L)``: Σ_{q ~ p} c_pq·Q_q(l), the Potts saving of label l at every pixel p (any namespace)."""
    xp = array_namespace(q)
    shape = (int(q.shape[1]), int(q.shape[2]))
    field = xp.zeros_like(q)
    for k, offset in enumerate(offsets):
        src, dst = pair_slices(offset, shape)
        at_src, at_dst = (slice(None),) + src + (...,), (slice(None),) + dst + (...,)
        c = costs[(slice(None), k) + src][..., None]
        field[at_src] = field[at_src] + c * q[at_dst]
        field[at_dst] = field[at_dst] + c * q[at_src]
    return field


def check_batch_distribution(solution: Any, shape: tuple[int, ...], name: str = "solution") -> Any:
    """``solution`` as float64 in its own namespace after checking it is an array of ``shape``
    ``(N, H, W, L)`` of probabilities summing to 1 at every pixel (to :data:`SUM_TOLERANCE`)."""
    try:
        xp = array_namespace(solution)
    except TypeError:
        raise TypeError(f"{name}: expected an array of shape {shape}, got {type(solution).__name__}") from None
    if tuple(int(s) for s in solution.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape} (N, H, W, L), got {tuple(solution.shape)}")
    if not xp.isdtype(solution.dtype, "real floating"):
        raise TypeError(f"{name}: expected probabilities of a floating dtype, got {solution.dtype}")
    q = xp.astype(solution, xp.float64)
    worst = xp.max(xp.abs(xp.sum(q, axis=-1) - 1.0))
    if not bool(xp.all(xp.isfinite(q)) & xp.all(q >= 0) & (worst <= SUM_TOLERANCE)):
        raise ValueError(f"{name}: expected finite probabilities >= 0 summing to 1 at every pixel")
    return q


def feasible(q: Any, constraints: Constraints) -> Any:
    """``(N,)`` bool: whether each item's ``q`` ``(N, H, W, L)`` is exactly one-hot on its clamped seeds
    and has no mass on a disallowed label outside the padding (any namespace)."""
    xp = array_namespace(q)
    c = constraints
    n = int(q.shape[0])
    real = ~c.padding[..., None]
    forbidden = xp.any(xp.reshape((q != 0) & real & ~c.allowed[:, None, None, :], (n, -1)), axis=1)
    broken = xp.any(xp.reshape((q != seed_one_hot(c, q)) & c.clamped[..., None], (n, -1)), axis=1)
    return ~(forbidden | broken)


def seed_one_hot(constraints: Constraints, like: Any) -> Any:
    """``(N, H, W, L)`` in ``like``'s dtype and device: the one-hot of ``seed_labels`` (label 0 where not clamped)."""
    xp = array_namespace(like)
    labels = constraints.seed_labels
    classes = xp.arange(int(like.shape[-1]), dtype=labels.dtype, device=_array_device(like))
    return xp.astype(labels[..., None] == classes, like.dtype)


def clamp(q: Any, constraints: Constraints) -> Any:
    """``q`` ``(N, H, W, L)`` with its clamped pixels set one-hot on their seed."""
    xp = array_namespace(q)
    return xp.where(constraints.clamped[..., None], seed_one_hot(constraints, q), q)


def softmin(cost: Any, constraints: Constraints, temperature: float) -> Any:
    """``(N, H, W, L)``: softmax(−cost/T) over each item's allowed labels, one-hot on the clamped seeds:
    argmin_Q ⟨cost, Q⟩ + T·Σ Q log Q under the constraints."""
    xp = array_namespace(cost)
    allowed = constraints.allowed[:, None, None, :]
    z = xp.where(allowed, -cost / temperature, xp.full_like(cost, -math.inf))
    z = z - xp.max(z, axis=-1, keepdims=True)
    q = xp.exp(z)
    return clamp(q / xp.sum(q, axis=-1, keepdims=True), constraints)


def project(q: Any, cost: Any, constraints: Constraints, temperature: float) -> Any:
    """A feasible float64 copy of distributions ``q`` ``(N, H, W, L)``: at a pixel with mass on a
    disallowed label that mass is removed and the pixel renormalised (:func:`softmin` of ``cost`` where
    nothing is left), seeds set one-hot; a feasible Q is kept."""
    xp = array_namespace(q)
    q = xp.astype(q, xp.float64, copy=True)
    disallowed = ~constraints.allowed[:, None, None, :]
    cut = xp.any((q > 0) & disallowed, axis=-1, keepdims=True)
    kept = xp.where(disallowed, xp.zeros_like(q), q)
    total = xp.sum(kept, axis=-1, keepdims=True)
    renormalised = xp.where(
        total > 0, kept / xp.where(total > 0, total, xp.ones_like(total)), softmin(cost, constraints, temperature)
    )
    return clamp(xp.where(cut, renormalised, q), constraints)


def project_labels(labels: Any, cost: Any, constraints: Constraints) -> Any:
    """One-hot float64 distributions ``(N, H, W, L)`` of labellings ``labels`` ``(N, H, W)`` (in [0, L)):
    a disallowed label replaced by the cheapest allowed label of ``cost``, seeds set (as
    :meth:`GridPotts.project <chainrule2.energies.grid.GridPotts.project>`)."""
    xp = array_namespace(cost)
    allowed = constraints.allowed[:, None, None, :]
    classes = xp.arange(int(cost.shape[-1]), dtype=xp.int64, device=_array_device(cost))
    labels = xp.astype(labels, xp.int64)
    cheapest = xp.argmin(xp.where(allowed, cost, xp.full_like(cost, math.inf)), axis=-1)
    labels = xp.where(xp.any((labels[..., None] == classes) & allowed, axis=-1), labels, xp.astype(cheapest, xp.int64))
    return clamp(xp.astype(labels[..., None] == classes, xp.float64), constraints)


def check_distribution(q: Any, shape: tuple[int, ...], name: str = "solution") -> np.ndarray:
    """``q`` as float64 after checking it is a numpy distribution of ``shape`` ``(H, W, L)`` over the last axis."""
    if not isinstance(q, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of shape {shape}, got {type(q).__name__}")
    if q.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (H, W, L), got {q.shape}")
    if not np.issubdtype(q.dtype, np.floating):
        raise TypeError(f"{name}: expected probabilities of a floating dtype, got {q.dtype}")
    q = np.asarray(q, dtype=np.float64)
    if not np.all(np.isfinite(q)) or q.min() < 0:
        raise ValueError(f"{name}: expected finite probabilities >= 0")
    worst = float(np.max(np.abs(q.sum(axis=-1) - 1.0)))
    if worst > SUM_TOLERANCE:
        raise ValueError(f"{name}: expected probabilities summing to 1 at every pixel, off by up to {worst:.3g}")
    return q


def _xlogx(x: Any) -> Any:
    """x·log x with 0·log 0 = 0 (any array namespace)."""
    xp = array_namespace(x)
    return x * xp.log(xp.where(x > 0, x, xp.ones_like(x)))
