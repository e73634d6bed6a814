"""Monotone mean-field inference for the dense CRF of Dense-TR (:class:`~chainrule2.energies.DenseMeanFieldEnergy`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from chainrule2.base import Batch, Divergence, Loss, SolverState
from chainrule2.energies.dense import DenseMeanFieldEnergy
from chainrule2.losses.dense import DenseCRFLoss
from chainrule2.losses.scribble import ScribblePotts
from chainrule2.solvers.base import first_state, next_state
from chainrule2.validation import check_int, check_labelling, check_logits, check_positive

__all__ = ["DenseMeanField"]


class _Memo(NamedTuple):
    """What a step needs of the current Q beyond Q itself (so one filtering pass per step)."""

    kernel: np.ndarray | None  # W of the small grid, or None to filter in blocks
    degree: np.ndarray  # W·1, (M,)
    small: np.ndarray  # D·Q, (L, M)
    filtered: np.ndarray  # W·D·Q, (L, M)


def _check_energy(energy: object, solver: str) -> DenseMeanFieldEnergy:
    if not isinstance(energy, DenseMeanFieldEnergy):
        raise TypeError(f"energy: {solver} solves a DenseMeanFieldEnergy, got {type(energy).__name__}")
    return energy


@dataclass(frozen=True)
class DenseMeanField:
    """Krähenbühl–Koltun parallel mean-field with a backtracking line search: monotone, soft ``(H, W, L)``.

    Minimises the free energy F(Q) of :class:`~chainrule2.energies.DenseMeanFieldEnergy`. One
    :meth:`step` computes the parallel ("all pixels at once") update

        Q' = argmin_Q ⟨U + ∇P(Q₀), Q⟩ + T·Σ Q log Q = softmax(−(U + c·Dᵀ(W1 − 2W·DQ₀))/T),

    the minimiser of F with its pairwise term P linearised at the current Q₀ (the label-constant
    c·DᵀW1 drops out of the softmax: the familiar Q' ∝ exp((2c·DᵀW·DQ₀ − U)/T); the 2 because
    P counts every ordered pair). Alone this update can raise F and oscillate; but Q' − Q₀ is a
    descent direction of F (the linearised objective is strictly convex and Q' its minimiser, so
    ∇F(Q₀)·(Q' − Q₀) ≤ G(Q') − G(Q₀) < 0 unless Q' = Q₀), hence the step takes
    Q₀ + t(Q' − Q₀) for the first t = 1, ½, ¼, … (``max_halvings`` halvings) that lowers F, and
    counts as converged when none does or the decrease is below ``tolerance``. F is quadratic
    plus entropy along the line: W·D(Q' − Q₀) gives every trial's F without another filtering
    pass, so a step costs one pass over the kernel. Seeds stay one-hot, disallowed labels get no
    mass, padding pixels keep their start.

    On grids of at most ``max_kernel_pixels`` small-grid pixels the kernel is kept as an M × M
    matrix for the solve (8·M² bytes: 22 MB at M = 1680, a 96 × 70 image at scale 0.5) and
    dropped from the final state; larger grids are filtered in blocks every step.

    Parameters
    ----------
    max_sweeps : int
        Upper bound on steps (one parallel update each).
    temperature : float
        T > 0 of the energies built by :meth:`energies`.
    tolerance : float
        A step that lowers F by at most ``tolerance * max(1, |F|)`` counts as converged.
    max_halvings : int
        Halvings of t tried before a step gives up (F is then at a fixed point up to round-off).
    restrict_labels : bool
        :meth:`energies` allows only the classes present in the item's seeds (all when at most one
        is), the rule of :meth:`chainrule2.losses.ScribblePotts.allowed_labels`.
    max_kernel_pixels : int
        Largest small grid (M) whose kernel is kept as a matrix.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies import DenseMeanFieldEnergy
    >>> from chainrule2.energies.bilateral import BilateralKernel
    >>> from chainrule2.solvers import run
    >>> unary = np.zeros((1, 3, 2)); unary[0, 1] = [0.5, 0.0]   # the middle pixel alone prefers 1
    >>> seeds = np.array([[0, 255, 0]])
    >>> energy = DenseMeanFieldEnergy(unary, np.zeros((1, 3)), BilateralKernel(sigma_xy=2.0, scale=1.0), 2.0, seeds)
    >>> q = run(DenseMeanField(), energy).solution
    >>> bool(q[0, 1, 0] > 0.9)  # it follows the two seeds it is similar to
    True
    """

    max_sweeps: int = 50
    temperature: float = 1.0
    tolerance: float = 1e-6
    max_halvings: int = 12
    restrict_labels: bool = True
    max_kernel_pixels: int = 4096

    monotone: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int(self.max_sweeps, "max_sweeps", minimum=1)
        check_positive(self.temperature, "temperature")
        if isinstance(self.tolerance, bool) or not (
            isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 1
        ):
            raise ValueError(f"tolerance: expected a number in [0, 1), got {self.tolerance!r}")
        check_int(self.max_halvings, "max_halvings", minimum=0)
        if not isinstance(self.restrict_labels, bool):
            raise TypeError(f"restrict_labels: expected a bool, got {type(self.restrict_labels).__name__}")
        check_int(self.max_kernel_pixels, "max_kernel_pixels", minimum=0)

    def max_steps(self) -> int:
        return self.max_sweeps

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> list[DenseMeanFieldEnergy]:
        """One :class:`~chainrule2.energies.DenseMeanFieldEnergy` per item: U = β·label_costs(logits),
        λ and the kernel of the :class:`~chainrule2.losses.DenseCRFLoss` ``loss``, T = ``temperature``."""
        if not isinstance(loss, DenseCRFLoss):
            raise TypeError(
                f"loss: {type(self).__name__} solves the dense CRF of a chainrule2.losses.DenseCRFLoss, "
                f"got {type(loss).__name__}"
            )
        check_logits(logits)
        beta = check_positive(trust_weight, "trust_weight", allow_zero=True)
        logits = np.asarray(logits)
        if logits.ndim != 4:
            raise ValueError(f"logits: expected (N, H, W, L), got shape {logits.shape}")
        if batch.images is None:
            raise ValueError("batch.images: DenseMeanField needs host images (N, H, W, C), got None")
        images, seeds = np.asarray(batch.images), np.asarray(batch.seeds)
        if seeds.shape != logits.shape[:3]:
            raise ValueError(f"batch.seeds: expected shape {logits.shape[:3]} (the logits' grid), got {seeds.shape}")
        if images.shape[:3] != seeds.shape:
            raise ValueError(
                f"batch.images: expected (N, H, W[, C]) with (N, H, W) = {seeds.shape}, got {images.shape}"
            )
        unary = beta * np.asarray(trust_divergence.label_costs(logits), dtype=np.float64)
        num_labels = int(logits.shape[-1])
        rule = ScribblePotts(restrict_labels=self.restrict_labels)  # the paper's label restriction, one place
        return [
            DenseMeanFieldEnergy(
                unary[i],
                images[i],
                loss.bilateral,
                loss.weight,
                seeds[i],
                rule.allowed_labels(seeds[i], num_labels),
                self.temperature,
            )
            for i in range(unary.shape[0])
        ]

    # --- the solver ---------------------------------------------------------------------------------
    def init(self, energy: DenseMeanFieldEnergy, initial: Any = None) -> SolverState:
        """Start from ``initial`` (an ``(H, W, L)`` distribution or an ``(H, W)`` labelling, projected
        onto the constraints) or from Q ∝ exp(−U/T), the minimiser of F without the pairs."""
        energy = _check_energy(energy, type(self).__name__)
        if initial is None:
            q = energy.minimiser(energy.unary)
        elif isinstance(initial, np.ndarray) and initial.ndim == 2:
            labels = check_labelling(initial, energy.shape[:2], energy.num_labels, "initial")
            q = _project(energy, np.eye(energy.num_labels)[labels])
        else:
            q = _project(energy, energy.check_distribution(initial, "initial"))
        memo = self._memo(energy, q)
        return first_state(q, self._value(energy, q, memo.small, memo.filtered, memo.degree))._replace(memo=memo)

    def step(self, energy: DenseMeanFieldEnergy, state: SolverState) -> SolverState:
        energy = _check_energy(energy, type(self).__name__)
        q, start = state.solution, state.energy
        memo = state.memo if isinstance(state.memo, _Memo) else self._memo(energy, q)
        fixed = (energy.clamped | energy.padding)[..., None]
        target = np.where(
            fixed, q, energy.minimiser(energy.unary + energy.pairwise_gradient(memo.filtered, memo.degree))
        )
        delta = target - q
        best, value = (q, memo.small, memo.filtered), start
        if np.any(delta):
            d_small = energy.downscale(delta)
            d_filtered = energy.filter(d_small, memo.kernel)
            for halving in range(self.max_halvings + 1):
                t = 0.5**halving
                trial = target if halving == 0 else q + t * delta
                small, filtered = memo.small + t * d_small, memo.filtered + t * d_filtered
                trial_value = self._value(energy, trial, small, filtered, memo.degree)
                if trial_value < start:
                    best, value = (trial, small, filtered), trial_value
                    break
        converged = not (value < start - self.tolerance * max(1.0, abs(start)))
        last = converged or state.iteration + 1 >= self.max_sweeps
        # The final state drops the kernel (a batch's states are kept together); a further step rebuilds it.
        next_memo = None if last else _Memo(memo.kernel, memo.degree, best[1], best[2])
        return next_state(state, best[0], value, converged, next_memo)

    def _memo(self, energy: DenseMeanFieldEnergy, q: np.ndarray) -> _Memo:
        m = int(energy.items.mask.shape[-1])
        kernel = energy.kernel_matrix() if m <= self.max_kernel_pixels else None
        small = energy.downscale(q)
        both = energy.filter(np.concatenate([small, energy.items.mask], axis=0), kernel)  # W·DQ and W1 in one pass
        return _Memo(kernel, both[-1], small, both[:-1])

    @staticmethod
    def _value(
        energy: DenseMeanFieldEnergy, q: np.ndarray, small: np.ndarray, filtered: np.ndarray, degree: np.ndarray
    ) -> float:
        return energy.free_energy(q, energy.pairwise_from(small, filtered, degree))


def _project(energy: DenseMeanFieldEnergy, q: np.ndarray) -> np.ndarray:
    """A feasible copy of a distribution: mass on disallowed labels removed and the pixel
    renormalised (the unary's minimiser where nothing is left), seeds one-hot; a feasible Q is kept."""
    q = np.array(q, dtype=np.float64)
    allowed = energy.allowed_mask
    cut = np.any(q[..., ~allowed] > 0, axis=-1)
    if cut.any():
        q[..., ~allowed] = 0.0
        total = q.sum(axis=-1, keepdims=True)
        empty = (total[..., 0] == 0) & cut
        q = np.where(cut[..., None], q / np.where(total > 0, total, 1.0), q)
        q[empty] = energy.minimiser(energy.unary)[empty]
    clamped = energy.clamped
    if clamped.any():
        assert energy.seeds is not None  # clamped pixels exist only with seeds
        q[clamped] = np.eye(energy.num_labels)[energy.seeds[clamped]]
    return q
